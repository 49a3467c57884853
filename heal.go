package mcpsse

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
)

// defaultInitializeParams are what the gateway initializes an upstream
// session with for a client it knows nothing of: the revision whose
// transport the client speaks, no capabilities.
const defaultInitializeParams = `{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"caddy-mcp-sse","version":"1"}}`

// healID is the id of the initialize requests the gateway sends itself.
const healID = `"caddy-mcp-sse-initialize"`

// maxRememberedClients bounds the initialize params kept per identity.
const maxRememberedClients = 4096

// initializeMessage is an initialize request the gateway sends for a client.
func initializeMessage(params []byte) message {
	if params == nil {
		params = []byte(defaultInitializeParams)
	}
	raw := `{"jsonrpc":"2.0","id":` + healID + `,"method":"initialize","params":` + string(params) + `}`
	return message{raw: []byte(raw), id: json.RawMessage(healID), method: "initialize", kind: kindRequest, quiet: true}
}

// initializedMessage is the notification that completes an initialize the
// gateway sent for a client.
var initializedMessage = message{
	raw:    []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`),
	method: "notifications/initialized",
	kind:   kindNotification,
	quiet:  true,
}

// initializeParams returns the params of an initialize request.
func initializeParams(m message) []byte {
	var req struct {
		Params json.RawMessage `json:"params"`
	}
	if json.Unmarshal(m.raw, &req) != nil || len(req.Params) == 0 {
		return nil
	}
	return req.Params
}

// heal returns the messages to send for msgs, posted by the session's
// client. A session whose client carries on without initialize (a client
// that lost its stream, reconnected, and goes on as if its session were
// still there) gets an upstream session initialized for it first: with the
// params its client initialized with before, if the client's identity
// tells, else defaultInitializeParams. A server/discover probe, which newer
// clients send before they initialize, decides nothing. Callers hold s.mu.
func (s *session) heal(msgs []message) []message {
	if s.initSeen {
		return msgs
	}
	for i, m := range msgs {
		switch {
		case m.kind == kindRequest && m.method == "server/discover":
			continue
		case m.kind == kindRequest && m.method == "initialize":
			s.initSeen = true
			s.initParams = initializeParams(m)
			s.store.rememberInitialize(s.identity, s.initParams)
			return msgs
		}
		s.initSeen = true
		s.initParams = s.store.rememberedInitialize(s.identity)
		metrics.healed.WithLabelValues("new_session").Inc()
		return slices.Concat(msgs[:i], []message{initializeMessage(s.initParams), initializedMessage}, msgs[i:])
	}
	return msgs
}

// retryHeal lets the next message of the client heal the upstream session
// of ctx again, after the upstream refused the initialize the gateway made
// for it: the client will send its message again with a credential the
// upstream takes.
func (s *session) retryHeal(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.upstream == ctx && s.upstreamID == "" {
		s.initSeen = false
	}
}

// reinitialize initializes a new upstream session under ctx, with the
// params the session was initialized with and the client's header, after
// the upstream answered 404 for the session stale. Of the exchanges that
// see the same 404, the first does it and the others wait for it.
func (s *session) reinitialize(ctx context.Context, stale string, header http.Header, cfg *settings) error {
	s.initMu.Lock()
	defer s.initMu.Unlock()
	s.mu.Lock()
	current, params := s.upstreamID, s.initParams
	if current == stale {
		s.upstreamID, s.protocol = "", ""
	}
	s.mu.Unlock()
	if current != stale {
		return nil
	}
	metrics.healed.WithLabelValues("upstream_forgot").Inc()
	noop := func() {}
	if err := s.exchange(ctx, initializeMessage(params), header.Clone(), noop, cfg, nil); err != nil {
		return err
	}
	return s.exchange(ctx, initializedMessage, header.Clone(), noop, cfg, nil)
}

// rememberInitialize keeps the initialize params of a client with an
// identity, for a later session of the same client that has to heal.
func (s *sessionStore) rememberInitialize(identity string, params []byte) {
	if identity == "" || params == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.initialized) >= maxRememberedClients {
		for k := range s.initialized {
			delete(s.initialized, k) // any one: this bounds memory, no more
			break
		}
	}
	s.initialized[identity] = params
}

func (s *sessionStore) rememberedInitialize(identity string) []byte {
	if identity == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.initialized[identity]
}
