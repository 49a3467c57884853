package mcpsse

import (
	"bytes"
	"encoding/json"
	"strings"
)

// envelope holds the members that classify a JSON-RPC message.
type envelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
	Result  member          `json:"result"`
	Error   member          `json:"error"`
}

// member records that an object has a member, null included, without
// copying its value: a result can be megabytes.
type member bool

func (m *member) UnmarshalJSON([]byte) error {
	*m = true
	return nil
}

// envelopeNames are the member names envelope reads.
var envelopeNames = [...]string{"jsonrpc", "id", "method", "result", "error"}

// decodeEnvelope reads the envelope of the JSON object raw as
// json.Unmarshal reads it: at once for the messages peers send, whose
// member names and string values are plain ASCII, and through
// json.Unmarshal for the others. json.Unmarshal decodes every member it
// skips and was most of the gateway's parsing of a message (8 % of Caddy's
// CPU per relayed call).
func decodeEnvelope(raw []byte) (envelope, error) {
	var env envelope
	if json.Valid(raw) && readEnvelope(raw, &env) {
		return env, nil
	}
	env = envelope{}
	err := json.Unmarshal(raw, &env)
	return env, err
}

// readEnvelope reads into env the members of raw, a valid JSON object,
// and reports whether it read them as json.Unmarshal would. It does not
// where json.Unmarshal decodes rather than copies: a member name with an
// escape or a byte past ASCII, or one that matches a name of envelope's
// only without regard to case (json.Unmarshal takes those too), and a
// "jsonrpc" or "method" that is not a plain ASCII string ("method" may be
// null).
func readEnvelope(raw []byte, env *envelope) bool {
	i := skipSpace(raw, 0) + 1 // past the object's '{'
	for {
		i = skipSpace(raw, i)
		if raw[i] == '}' {
			return true
		}
		end := skipValue(raw, i)
		name, ok := plainString(raw[i:end])
		if !ok {
			return false
		}
		i = skipSpace(raw, skipSpace(raw, end)+1) // past the ':'
		end = skipValue(raw, i)
		value := raw[i:end]
		switch string(name) {
		case "jsonrpc":
			s, ok := plainString(value)
			if !ok {
				return false
			}
			env.JSONRPC = string(s)
		case "id":
			env.ID = append(env.ID[:0], value...)
		case "method":
			if string(value) == "null" {
				env.Method = nil
				break
			}
			s, ok := plainString(value)
			if !ok {
				return false
			}
			method := string(s)
			env.Method = &method
		case "result":
			env.Result = true
		case "error":
			env.Error = true
		default:
			for _, known := range envelopeNames {
				if bytes.EqualFold(name, []byte(known)) {
					return false
				}
			}
		}
		i = skipSpace(raw, end)
		if raw[i] == ',' {
			i++
		}
	}
}

// plainString returns the contents of the JSON value v if it is a string
// of ASCII without escapes, which decodes to its bytes as they are.
func plainString(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' {
		return nil, false
	}
	s := v[1 : len(v)-1]
	for _, c := range s {
		if c == '\\' || c >= 0x80 {
			return nil, false
		}
	}
	return s, true
}

// skipSpace returns the index of the first byte at or after i in raw that
// is not JSON whitespace, jsonSpace's bytes compared one by one: looking
// each byte up in jsonSpace parsed a batch 5 % slower.
func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\r' || raw[i] == '\n') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value that starts at i
// in raw, which is valid JSON.
func skipValue(raw []byte, i int) int {
	switch raw[i] {
	case '"':
		return skipString(raw, i)
	case '{', '[':
		for depth := 0; ; i++ {
			switch raw[i] {
			case '"':
				i = skipString(raw, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(raw) && strings.IndexByte(",}] \t\r\n", raw[i]) < 0 {
		i++ // a number or a literal
	}
	return i
}

// skipString returns the index just past the JSON string that starts at i
// in raw.
func skipString(raw []byte, i int) int {
	for i++; raw[i] != '"'; i++ {
		if raw[i] == '\\' {
			i++ // the escaped byte cannot end the string
		}
	}
	return i + 1
}
