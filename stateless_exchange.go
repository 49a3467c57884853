package mcpsse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// codeMethodNotFound answers a method the gateway does not relay.
const codeMethodNotFound = -32601

// logLevels are the levels of logging/setLevel (those of RFC 5424).
var logLevels = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

// errCancelled ends a call the client cancelled.
var errCancelled = errors.New("the client cancelled the request")

// statelessState is what a session keeps for an upstream that speaks
// revisionStateless and keeps nothing itself: its calls in flight, the
// input requests the client has yet to answer, its subscriptions/listen
// stream.
type statelessState struct {
	// Under the session's mu, shared in a cluster: the log level the
	// client set, the resources it subscribed to, and the upstream's
	// capabilities as its server/discover said, which tell which list
	// changes to listen for.
	logLevel     string
	subscribed   []string
	capabilities json.RawMessage

	mu        sync.Mutex
	calls     map[string]context.CancelCauseFunc // by the client's compact request id
	inputs    map[string]chan message            // by the compact id of the input request
	lastID    uint64
	listening *subscription
}

// stateless returns the session's stateless state, made if it has none
// yet: a cluster's copy of a session, say. Callers do not hold s.mu.
func (s *session) stateless() *statelessState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statelessLocked()
}

// statelessLocked is stateless for callers that hold s.mu.
func (s *session) statelessLocked() *statelessState {
	if s.statelessState == nil {
		s.statelessState = &statelessState{
			calls:  make(map[string]context.CancelCauseFunc),
			inputs: make(map[string]chan message),
		}
	}
	return s.statelessState
}

// isStateless reports whether the session's upstream speaks
// revisionStateless.
func (s *session) isStateless() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.protocol == revisionStateless
}

// newID returns a request id of the gateway's, unique in the session.
func (st *statelessState) newID() json.RawMessage {
	st.mu.Lock()
	st.lastID++
	n := st.lastID
	st.mu.Unlock()
	return json.RawMessage(`"caddy-mcp-sse-` + strconv.FormatUint(n, 10) + `"`)
}

// requestMeta returns what the session's requests tell the upstream.
func (s *session) requestMeta() requestMeta {
	s.mu.Lock()
	defer s.mu.Unlock()
	return metaOf(s.initParams, s.statelessLocked().logLevel)
}

// initializeStateless answers the client's initialize itself if the
// upstream speaks revisionStateless, from what server/discover says, and
// reports whether it did; if not, the initialize goes upstream.
func (s *session) initializeStateless(ctx context.Context, m message, header http.Header, written func(), cfg *settings, v *verdict) (bool, error) {
	d, err := s.store.discovery.discover(ctx, s, m, header, cfg)
	if err != nil {
		se, refused := errors.AsType[*statusError](err)
		if refused = refused && se.refusesCredential(); refused {
			v.give(se)
		}
		if !refused && cfg.upstreamProtocol == upstreamProtocolAuto {
			// No answer on the revision (unreachable, failing, cut
			// off): the initialize goes upstream as it did before there
			// was discovery, and meets the same trouble or not (a server
			// of an earlier revision that fails on the unknown method);
			// the next one asks again.
			return false, nil
		}
		return true, err
	}
	if !d.stateless {
		if cfg.upstreamProtocol == upstreamProtocolStateless {
			return true, errNotStateless
		}
		return false, nil
	}
	v.give(nil)
	s.mu.Lock()
	s.statelessLocked().capabilities = d.capabilities
	s.mu.Unlock()
	s.setProtocol(ctx, revisionStateless)
	if !m.quiet {
		s.answer(ctx, initializeAnswer(m.id, initializeParams(m), d))
	}
	written()
	return true, nil
}

// errNotStateless fails an initialize with upstream_protocol 2026-07-28 for
// an upstream that does not offer that revision.
var errNotStateless = errors.New("upstream does not offer protocol revision " + revisionStateless)

// answer queues the gateway's own answer to a client request.
func (s *session) answer(ctx context.Context, data []byte) {
	_ = s.relayToClient(ctx, data, kindResponse, answerTo{})
}

// exchangeStateless handles the client's message m for an upstream that
// speaks revisionStateless: the gateway answers what that revision
// dropped (ping, logging/setLevel, the initialized and roots
// notifications), takes the client's answers to the input requests it
// made, maps subscriptions to subscriptions/listen, and sends every other
// request upstream with the revision's _meta and headers.
func (s *session) exchangeStateless(ctx context.Context, m message, header http.Header, written func(), cfg *settings, v *verdict) error {
	st := s.stateless()
	if m.kind == kindRequest {
		switch m.method {
		case "resources/subscribe", "resources/unsubscribe":
			v.give(nil)
			written()
			return s.changeSubscription(ctx, m, cfg)
		case "ping", "logging/setLevel":
		default:
			return s.call(ctx, m, header, written, cfg, v)
		}
	}
	v.give(nil)
	defer written()
	switch {
	case m.kind == kindResponse:
		s.takeInput(m)
	case m.method == "ping":
		s.answer(ctx, resultResponse(m.id, struct{}{}))
	case m.method == "logging/setLevel":
		var p struct {
			Params struct {
				Level string `json:"level"`
			} `json:"params"`
		}
		_ = json.Unmarshal(m.raw, &p)
		if !slices.Contains(logLevels, p.Params.Level) {
			// Sent on, it would make the upstream refuse every request.
			s.answer(ctx, errorResponse(m.id, codeInvalidParams, fmt.Sprintf("params.level %q is none of %s", p.Params.Level, strings.Join(logLevels, ", "))))
			break
		}
		s.mu.Lock()
		s.statelessLocked().logLevel = p.Params.Level
		s.mu.Unlock()
		s.share()
		s.answer(ctx, resultResponse(m.id, struct{}{}))
	case m.method == "notifications/initialized":
		s.markInitialized(ctx)
		s.listenStateless(ctx)
	case m.method == "notifications/cancelled":
		if !st.cancelCall(m) && s.store.node != nil {
			s.store.node.tellAll("x", s.id, m.raw) // the call may run on another instance
		}
	case m.method == "notifications/roots/list_changed":
		// The revision has no such notification: every request that may
		// need the roots asks for them again.
	default:
		return s.notifyStateless(ctx, m, header, cfg)
	}
	return nil
}

// notifyStateless sends a client notification the revision does not
// define upstream as it is: an extension's, say.
func (s *session) notifyStateless(ctx context.Context, m message, header http.Header, cfg *settings) error {
	o := outgoingOf(m)
	o.id = nil
	resp, err := s.postStateless(ctx, o, s.requestMeta(), header, cfg, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return checkStatus(resp)
}

// track records the cancel function of the client's call id.
func (st *statelessState) track(id json.RawMessage, cancel context.CancelCauseFunc) {
	st.mu.Lock()
	st.calls[string(id)] = cancel
	st.mu.Unlock()
}

func (st *statelessState) untrack(id json.RawMessage) {
	st.mu.Lock()
	delete(st.calls, string(id))
	st.mu.Unlock()
}

// cancelCall ends the call that the client's notifications/cancelled
// names, if it is in flight here, and reports whether it was: its
// upstream request is closed, which is the revision's cancellation, and
// the client gets no answer to it.
func (st *statelessState) cancelCall(m message) bool {
	var n struct {
		Params struct {
			RequestID json.RawMessage `json:"requestId"`
		} `json:"params"`
	}
	if json.Unmarshal(m.raw, &n) != nil || len(n.Params.RequestID) == 0 {
		return false
	}
	id := string(compactJSON(n.Params.RequestID))
	st.mu.Lock()
	cancel := st.calls[id]
	st.mu.Unlock()
	if cancel != nil {
		cancel(errCancelled)
	}
	return cancel != nil
}

// takeInput hands the client's answer m to the input request it answers.
// In a cluster, an answer to none made here goes to every instance, one
// of which may have made it. An answer to none (late, after its call
// ended) is dropped.
func (s *session) takeInput(m message) {
	if s.stateless().handInput(m) {
		return
	}
	if n := s.store.node; n != nil {
		n.tellAll("a", s.id, m.raw)
		return
	}
	if c := s.store.logger().Check(zapcore.DebugLevel, "client answered no pending input request"); c != nil {
		c.Write(zap.String("session", s.tag), zap.ByteString("id", m.id))
	}
}

// handInput hands m to the input request it answers, if one waits here.
func (st *statelessState) handInput(m message) bool {
	st.mu.Lock()
	ch := st.inputs[string(m.id)]
	delete(st.inputs, string(m.id))
	st.mu.Unlock()
	if ch != nil {
		ch <- m // buffered for one
	}
	return ch != nil
}
