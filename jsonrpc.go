package mcpsse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// JSON-RPC 2.0 error codes used in answers to clients.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeInternalError  = -32603
	// codeServerBusy is in JSON-RPC's range for implementation-defined
	// server errors.
	codeServerBusy = -32000
)

// messageKind tells requests, notifications and responses apart.
type messageKind int

const (
	kindRequest messageKind = iota
	kindNotification
	kindResponse
)

func (k messageKind) String() string {
	switch k {
	case kindRequest:
		return "request"
	case kindNotification:
		return "notification"
	default:
		return "response"
	}
}

// message is one JSON-RPC message, compacted.
type message struct {
	raw    []byte
	id     json.RawMessage // compact; nil for notifications
	method string
	kind   messageKind
	// quiet marks a message the gateway sends for the client: nothing
	// the upstream answers to it reaches the client.
	quiet bool
	// pended marks, in a cluster, a request recorded as relayed by this
	// instance (see pend): what its answer brings is written only while
	// the record stands.
	pended bool
}

// rpcError is a JSON-RPC error code with its message.
type rpcError struct {
	code int
	msg  string
}

func (e *rpcError) Error() string { return e.msg }

// jsonSpace is the whitespace JSON allows around a value. bytes.TrimSpace
// would also take Unicode spaces such as U+00A0, which JSON does not allow.
const jsonSpace = " \t\r\n"

// parseMessages parses a POST body: one JSON-RPC message, or a batch of
// them as a JSON array. Malformed JSON is a parse error; JSON that is not a
// JSON-RPC message or batch is an invalid request.
//
// The JSON is checked as it is decoded, and once more only if that fails:
// json.Unmarshal checks a whole value before decoding any of it.
func parseMessages(body []byte) ([]message, error) {
	body = bytes.Trim(body, jsonSpace)
	if len(body) > 0 && body[0] == '[' {
		var batch []json.RawMessage
		if err := json.Unmarshal(body, &batch); err != nil {
			return nil, invalidMessage(body, "invalid request: "+err.Error())
		}
		if len(batch) == 0 {
			return nil, &rpcError{codeInvalidRequest, "invalid request: empty batch"}
		}
		msgs := make([]message, 0, len(batch))
		for i, raw := range batch {
			m, err := parseMessage(raw)
			if err != nil {
				return nil, &rpcError{codeInvalidRequest, fmt.Sprintf("invalid request: batch element %d: %v", i, err)}
			}
			msgs = append(msgs, m)
		}
		return msgs, nil
	}
	m, err := parseMessage(body)
	if err != nil {
		return nil, invalidMessage(body, "invalid request: "+err.Error())
	}
	return []message{m}, nil
}

// invalidMessage is the error for a body that parses as no message or
// batch: a parse error if it is not JSON, else an invalid request with msg.
func invalidMessage(body []byte, msg string) *rpcError {
	if !json.Valid(body) {
		return &rpcError{codeParseError, "parse error: body is not valid JSON"}
	}
	return &rpcError{codeInvalidRequest, msg}
}

// parseMessage classifies one JSON value as a JSON-RPC message; JSON that
// is not valid fails as json.Unmarshal fails on it.
func parseMessage(raw []byte) (message, error) {
	raw = bytes.Trim(raw, jsonSpace)
	if len(raw) == 0 || raw[0] != '{' {
		return message{}, errors.New("not a JSON object")
	}
	env, err := decodeEnvelope(raw)
	if err != nil {
		return message{}, err
	}
	if env.JSONRPC != "2.0" {
		return message{}, errors.New(`"jsonrpc" must be "2.0"`)
	}
	// The id is a copy already; in compact JSON it is compact too.
	m, id := message{raw: raw}, env.ID
	if !isCompact(raw) {
		var compact bytes.Buffer
		compact.Grow(len(raw))
		if err := json.Compact(&compact, raw); err != nil {
			return message{}, err
		}
		m.raw, id = compact.Bytes(), compactJSON(env.ID)
	}
	hasID := len(env.ID) > 0 && !bytes.Equal(env.ID, []byte("null"))
	if hasID {
		if !validID(env.ID) {
			return message{}, errors.New(`"id" must be a string or a number`)
		}
		m.id = id
	}
	switch {
	case env.Method != nil:
		if *env.Method == "" {
			return message{}, errors.New(`"method" must not be empty`)
		}
		if env.Result || env.Error {
			return message{}, errors.New(`a request has no "result" or "error"`)
		}
		m.method = *env.Method
		m.kind = kindNotification
		if hasID {
			m.kind = kindRequest
		}
	case bool(env.Result || env.Error):
		if env.Result && env.Error {
			return message{}, errors.New(`a response has "result" or "error", not both`)
		}
		if len(env.ID) == 0 {
			return message{}, errors.New(`a response needs an "id"`)
		}
		m.id, m.kind = id, kindResponse
	default:
		return message{}, errors.New(`neither "method" nor "result" nor "error"`)
	}
	return m, nil
}

// isCompact reports whether the valid JSON raw has no space outside its
// strings, as json.Compact leaves it: most peers send compact JSON, which
// then needs no copy.
func isCompact(raw []byte) bool {
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString && c == '\\':
			i++ // the escaped byte cannot end the string
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\r' || c == '\n'):
			return false
		}
	}
	return true
}

// validID reports whether id is a JSON string or number.
func validID(id json.RawMessage) bool {
	switch id[0] {
	case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// sameID reports whether two ids are the same JSON value: an upstream may
// write the id of its response in another form than the request had it
// (1.0 as 1, "\u0061" as "a").
func sameID(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if len(a) == 0 || len(b) == 0 || (a[0] == '"') != (b[0] == '"') {
		return false
	}
	if a[0] == '"' {
		var x, y string
		return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && x == y
	}
	x, _, errX := big.ParseFloat(string(a), 10, 256, big.ToNearestEven)
	y, _, errY := big.ParseFloat(string(b), 10, 256, big.ToNearestEven)
	return errX == nil && errY == nil && x.Cmp(y) == 0
}

func compactJSON(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// errorMessage is a JSON-RPC error response.
type errorMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   errorObject     `json:"error"`
}

type errorObject struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// errorResponse encodes a JSON-RPC error response. A nil id encodes as null.
func errorResponse(id json.RawMessage, code int, msg string) []byte {
	if id == nil {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(errorMessage{JSONRPC: "2.0", ID: id, Error: errorObject{code, msg}})
	return b
}
