package mcpsse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// The per-request _meta keys of revisionStateless.
const (
	metaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	metaClientInfo         = "io.modelcontextprotocol/clientInfo"
	metaLogLevel           = "io.modelcontextprotocol/logLevel"
)

// The request headers of revisionStateless besides the protocol version.
const (
	headerMethod      = "Mcp-Method"
	headerName        = "Mcp-Name"
	headerParamPrefix = "Mcp-Param-"
)

// outgoing is a request to an upstream that speaks revisionStateless:
// the client's, or one the gateway makes, before its _meta gets the
// protocol's fields.
type outgoing struct {
	id     json.RawMessage
	method string
	params map[string]json.RawMessage
}

// newOutgoing makes a request; params may be nil.
func newOutgoing(id json.RawMessage, method string, params map[string]json.RawMessage) outgoing {
	if params == nil {
		params = make(map[string]json.RawMessage)
	}
	return outgoing{id: id, method: method, params: params}
}

// outgoingOf is the client's request m as it goes to a stateless upstream.
func outgoingOf(m message) outgoing {
	var req struct {
		Params map[string]json.RawMessage `json:"params"`
	}
	_ = json.Unmarshal(m.raw, &req) // params that are no object are dropped: no method has such
	return newOutgoing(m.id, m.method, req.Params)
}

// requestMeta is what every request of a session tells a stateless
// upstream of its client: what it declared in its initialize, and the log
// level it set.
type requestMeta struct {
	capabilities json.RawMessage
	clientInfo   json.RawMessage
	logLevel     string
}

// metaOf reads a client's initialize params.
func metaOf(initParams []byte, logLevel string) requestMeta {
	var p struct {
		Capabilities json.RawMessage `json:"capabilities"`
		ClientInfo   json.RawMessage `json:"clientInfo"`
	}
	_ = json.Unmarshal(initParams, &p)
	meta := requestMeta{capabilities: p.Capabilities, clientInfo: p.ClientInfo, logLevel: logLevel}
	if len(meta.capabilities) == 0 || meta.capabilities[0] != '{' {
		meta.capabilities = json.RawMessage(`{}`)
	}
	meta.capabilities = formElicitation(meta.capabilities)
	if len(meta.clientInfo) == 0 || meta.clientInfo[0] != '{' {
		meta.clientInfo = nil
	}
	return meta
}

// body encodes the request with its _meta: the client's own _meta
// (a progressToken, say) with the protocol version, and the client's
// capabilities, info and log level where the client's _meta does not set
// them itself.
func (o outgoing) body(meta requestMeta) []byte {
	params := maps.Clone(o.params)
	fields := make(map[string]json.RawMessage)
	_ = json.Unmarshal(params["_meta"], &fields) // a _meta that is no object is replaced
	if fields == nil {
		fields = make(map[string]json.RawMessage)
	}
	fields[metaProtocolVersion] = json.RawMessage(`"` + revisionStateless + `"`)
	setDefault(fields, metaClientCapabilities, meta.capabilities)
	if meta.clientInfo != nil {
		setDefault(fields, metaClientInfo, meta.clientInfo)
	}
	if meta.logLevel != "" {
		level, _ := json.Marshal(meta.logLevel)
		setDefault(fields, metaLogLevel, level)
	}
	params["_meta"] = encodeRaw(fields)
	method, _ := json.Marshal(o.method)
	msg := map[string]json.RawMessage{"jsonrpc": json.RawMessage(`"2.0"`), "method": method, "params": encodeRaw(params)}
	if o.id != nil {
		msg["id"] = o.id
	}
	return encodeRaw(msg)
}

// formElicitation returns client capabilities with an empty elicitation
// capability spelled out as form mode, which is what it means (2025-11-25)
// and what later revisions' servers look for.
func formElicitation(caps json.RawMessage) json.RawMessage {
	var fields map[string]json.RawMessage
	if json.Unmarshal(caps, &fields) != nil || string(compactJSON(fields["elicitation"])) != "{}" {
		return caps
	}
	fields["elicitation"] = json.RawMessage(`{"form":{}}`)
	b, _ := json.Marshal(fields)
	return b
}

func setDefault(m map[string]json.RawMessage, key string, v json.RawMessage) {
	if _, ok := m[key]; !ok {
		m[key] = v
	}
}

// postStateless POSTs o upstream under ctx, with the client's header, the
// protocol's headers and meta; onWritten, if set, runs once it is written.
func (s *session) postStateless(ctx context.Context, o outgoing, meta requestMeta, header http.Header, cfg *settings, onWritten func()) (*http.Response, error) {
	header.Set("Content-Type", "application/json")
	header.Set("Accept", "application/json, text/event-stream")
	header.Del(headerSessionID)
	header.Set(headerProtocolVersion, revisionStateless)
	s.store.tools.setHeaders(header, o)
	up := s.store.upstream
	return up.send(ctx, http.MethodPost, o.body(meta), header, onWritten, cfg.upstreamTimeout)
}

// statelessAnswer is the response to a request to a stateless upstream.
type statelessAnswer struct {
	msg    message
	result json.RawMessage // nil for an error
	code   int             // the error's, if any
	text   string
}

// parseAnswer reads the response m.
func parseAnswer(m message) statelessAnswer {
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(m.raw, &r)
	a := statelessAnswer{msg: m, result: r.Result}
	if r.Error != nil {
		a.result, a.code, a.text = nil, r.Error.Code, r.Error.Message
	}
	return a
}

// readStatelessAnswer reads the upstream's answer to the request id, JSON
// or an event stream, and returns the response to it; every other message
// of the answer goes to other, in order, if other is set. An answer with a
// status other than 2xx returns the *statusError, and the JSON-RPC error
// response in its body, if it has one for id.
func (s *session) readStatelessAnswer(ctx context.Context, resp *http.Response, id json.RawMessage, other func(message) error) (statelessAnswer, error) {
	if err := checkStatus(resp); err != nil {
		if r, ok := errorBodyResponse(resp, id); ok {
			return parseAnswer(r), err
		}
		return statelessAnswer{}, err
	}
	var answer *statelessAnswer
	take := func(payload []byte) error {
		msgs, err := parseMessages(payload)
		if err != nil {
			return fmt.Errorf("%w: %v", errNotMCP, err)
		}
		for _, r := range msgs {
			switch {
			case r.kind == kindResponse && sameID(r.id, id):
				a := parseAnswer(r)
				answer = &a
			case other != nil:
				if err := other(r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	mt, _ := mediaType(resp.Header.Get("Content-Type"))
	switch mt {
	case "application/json":
		body, err := readJSONAnswer(resp.Body)
		if err != nil {
			return statelessAnswer{}, err
		}
		if err := take(body); err != nil {
			return statelessAnswer{}, err
		}
	case "text/event-stream":
		events := newSSEReader(resp.Body, maxUpstreamMessage)
		defer events.release()
		for answer == nil {
			ev, err := events.next()
			if err != nil {
				return statelessAnswer{}, eventsError(err)
			}
			if len(ev.data) == 0 {
				continue
			}
			if err := take(ev.data); err != nil {
				return statelessAnswer{}, err
			}
		}
	default:
		return statelessAnswer{}, fmt.Errorf("%w: %s with %q", errNotMCP, resp.Status, mt)
	}
	if answer == nil {
		return statelessAnswer{}, errNoResponse
	}
	return *answer, nil
}

// eventsError is the error of an upstream answer stream that ended with
// err before the response came: io.EOF is a clean end without it; a cut
// event, a cut connection or a read error is an answer that broke off.
func eventsError(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return errNoResponse
	case errors.Is(err, errEventTooLarge):
		return fmt.Errorf("%w: %w", errNotMCP, err)
	}
	return fmt.Errorf("%w: %w", errBrokenAnswer, err)
}

// withID returns the response raw with its id replaced by id: the
// upstream answered a request the gateway sent under an id of its own.
func withID(raw []byte, id json.RawMessage) []byte {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return raw
	}
	fields["id"] = id
	return encodeRaw(fields)
}

// revisionOnlyFields are the members of results that only
// revisionStateless defines; the gateway's clients speak earlier
// revisions, whose servers send none of them.
var revisionOnlyFields = []string{"resultType", "ttlMs", "cacheScope"}

// revisionMetaPrefix prefixes the _meta keys the revision reserves for its
// protocol fields (serverInfo, subscriptionId, …).
const revisionMetaPrefix = "io.modelcontextprotocol/"

// asLegacy returns an upstream message as a server of the client's
// revision would send it: a result without revisionOnlyFields, a result's
// or a notification's _meta without the revision's protocol keys (and
// with no _meta left if those were all it had). Anything else of the
// message stays as it is.
func asLegacy(raw []byte) []byte {
	if !bytes.Contains(raw, []byte(revisionMetaPrefix)) && !bytes.Contains(raw, []byte(`"resultType"`)) &&
		!bytes.Contains(raw, []byte(`"ttlMs"`)) && !bytes.Contains(raw, []byte(`"cacheScope"`)) {
		return raw
	}
	var msg map[string]json.RawMessage
	if json.Unmarshal(raw, &msg) != nil {
		return raw
	}
	changed := false
	for _, member := range []string{"result", "params"} {
		var fields map[string]json.RawMessage
		if json.Unmarshal(msg[member], &fields) != nil || fields == nil {
			continue
		}
		dropped := false
		if member == "result" {
			for _, k := range revisionOnlyFields {
				if _, ok := fields[k]; ok {
					delete(fields, k)
					dropped = true
				}
			}
		}
		var meta map[string]json.RawMessage
		if json.Unmarshal(fields["_meta"], &meta) == nil && meta != nil {
			for k := range meta {
				if strings.HasPrefix(k, revisionMetaPrefix) {
					delete(meta, k)
					dropped = true
				}
			}
			if len(meta) == 0 {
				delete(fields, "_meta")
			} else {
				fields["_meta"] = encodeRaw(meta)
			}
		}
		if dropped {
			msg[member] = encodeRaw(fields)
			changed = true
		}
	}
	if !changed {
		return raw
	}
	return encodeRaw(msg)
}

// encodeRaw encodes an object of JSON values, its members in key order.
// The values are written as they are: they are compact JSON from a parsed
// message, or the gateway's own, and neither needs json.Marshal's second
// validation, nor its escaping of <, > and &, which would change the
// upstream's text.
func encodeRaw(fields map[string]json.RawMessage) []byte {
	size := 2
	for k, v := range fields {
		size += len(k) + len(v) + 4
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, k := range slices.Sorted(maps.Keys(fields)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = append(b, fields[k]...)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, escaping what JSON requires
// and nothing else.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, fmt.Sprintf(`\u%04x`, c)...)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
