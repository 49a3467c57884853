package mcpsse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// Input requests: an upstream that speaks revisionStateless sends no
// requests of its own. It answers a call that needs the client (sampling,
// elicitation, the roots) with an input_required result, and the client
// calls again with the answers. The gateway asks its client each of them
// as a request of its own on the client's stream, as a server of the
// client's revision would, and calls again with the answers, under a new
// request id, until the upstream gives the result or an error; the client
// gets that under its own id.

// maxInputRounds bounds the times one call asks for input.
const maxInputRounds = 16

// codeHeaderMismatch is the revision's error for request headers that do
// not match the body, Mcp-Param-* headers among them.
const codeHeaderMismatch = -32020

// inputRequired is an input_required result.
type inputRequired struct {
	ResultType    string                     `json:"resultType"`
	InputRequests map[string]json.RawMessage `json:"inputRequests"`
	RequestState  json.RawMessage            `json:"requestState"`
}

// asksInput reads result as an input_required result, if it is one.
func asksInput(result json.RawMessage) (inputRequired, bool) {
	var ir inputRequired
	if !bytes.Contains(result, []byte(`"input_required"`)) || json.Unmarshal(result, &ir) != nil || ir.ResultType != "input_required" {
		return ir, false
	}
	return ir, true
}

// call sends the client's request m upstream and relays what the answer
// brings, in order; written runs once the first request is written. The
// client's notifications/cancelled for m ends it, with no answer.
func (s *session) call(ctx context.Context, m message, header http.Header, written func(), cfg *settings, v *verdict) error {
	st := s.stateless()
	callCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	st.track(m.id, cancel)
	defer st.untrack(m.id)

	to := answerTo{id: m.id, pending: m.pended}
	relay := func(r message) error { return s.relayToClient(callCtx, asLegacy(r.raw), r.kind, to) }
	o := outgoingOf(m)
	onWritten := written
	refreshed := false
	for round := 1; ; round++ {
		resp, err := s.postStateless(callCtx, o, s.requestMeta(), header.Clone(), cfg, onWritten)
		onWritten = nil
		if err != nil {
			return cancelled(callCtx, err)
		}
		a, err := s.readStatelessAnswer(callCtx, resp, o.id, relay)
		resp.Body.Close()
		if se, ok := errors.AsType[*statusError](err); ok && se.refusesCredential() {
			if round == 1 {
				v.give(se) // the client's POST may answer with the refusal
				return err
			}
			// The POST that brought the call was answered long ago.
			s.store.guard.refused(se)
			return cancelled(callCtx, relay(message{raw: errorResponse(m.id, codeInternalError, se.Error()), kind: kindResponse}))
		}
		v.give(nil)
		if a.msg.raw == nil {
			return cancelled(callCtx, err)
		}
		if a.code == codeHeaderMismatch && m.method == "tools/call" && !refreshed {
			// The tool's Mcp-Param-* headers changed, or were never
			// learned: learn them, and call once more. If that fails, the
			// client gets the mismatch.
			refreshed = true
			if s.learnTools(callCtx, header, cfg) == nil {
				o.id = st.newID()
				continue
			}
		}
		ir, more := asksInput(a.result)
		if !more {
			if m.method == "tools/list" && a.result != nil {
				a.msg.raw = s.store.tools.learn(a.msg.raw, a.result, s.store.logger())
			}
			if !sameID(o.id, m.id) {
				a.msg.raw = withID(a.msg.raw, m.id)
			}
			return cancelled(callCtx, relay(a.msg))
		}
		if round >= maxInputRounds {
			msg := fmt.Sprintf("the upstream asked for input more than %d times", maxInputRounds)
			return cancelled(callCtx, relay(message{raw: errorResponse(m.id, codeInternalError, msg), kind: kindResponse}))
		}
		answers, refusal, err := s.askClient(callCtx, st, ir.InputRequests)
		if err != nil {
			return cancelled(callCtx, err)
		}
		if refusal != nil {
			return cancelled(callCtx, relay(message{raw: errorResponse(m.id, refusal.code, refusal.text), kind: kindResponse}))
		}
		delete(o.params, "inputResponses")
		if len(answers) > 0 {
			o.params["inputResponses"] = encodeRaw(answers)
		}
		delete(o.params, "requestState")
		if ir.RequestState != nil {
			o.params["requestState"] = ir.RequestState // byte for byte
		}
		o.id = st.newID()
	}
}

// cancelled returns nil for a call the client cancelled, err otherwise.
func cancelled(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errCancelled) {
		return nil
	}
	return err
}

// askClient sends the client each of requests as a request on its stream,
// and returns its answers by the upstream's keys; or the client's error,
// if it refused one. The requests not yet answered when one fails, or
// when ctx ends, are cancelled with notifications/cancelled.
func (s *session) askClient(ctx context.Context, st *statelessState, requests map[string]json.RawMessage) (map[string]json.RawMessage, *statelessAnswer, error) {
	type asked struct {
		key string
		id  json.RawMessage
		ch  chan message
	}
	var pending []asked
	defer func() {
		for _, p := range pending {
			if st.forgetInput(p.id) {
				_ = s.deliver(s.currentUpstream(), cancelledNotification(p.id, "the request that asked for it ended"))
			}
		}
	}()
	for _, key := range slices.Sorted(maps.Keys(requests)) {
		var r struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if json.Unmarshal(requests[key], &r) != nil || r.Method == "" || strings.HasPrefix(r.Method, "notifications/") {
			return nil, nil, fmt.Errorf("%w: input request %q is no request", errNotMCP, key)
		}
		p := asked{key: key, id: st.newID(), ch: make(chan message, 1)}
		st.expectInput(p.id, p.ch)
		pending = append(pending, p)
		raw, _ := json.Marshal(struct {
			JSONRPC string          `json:"jsonrpc"`
			ID      json.RawMessage `json:"id"`
			Method  string          `json:"method"`
			Params  json.RawMessage `json:"params,omitempty"`
		}{"2.0", p.id, r.Method, r.Params})
		if err := s.relayToClient(ctx, raw, kindRequest, answerTo{}); err != nil {
			return nil, nil, err
		}
	}
	answers := make(map[string]json.RawMessage, len(pending))
	for len(pending) > 0 {
		p := pending[0]
		select {
		case r := <-p.ch:
			pending = pending[1:]
			a := parseAnswer(r)
			if a.result == nil {
				return nil, &a, nil
			}
			answers[p.key] = a.result
		case <-ctx.Done():
			return nil, nil, causeOf(ctx)
		}
	}
	return answers, nil, nil
}

// expectInput registers ch for the client's answer to the request id.
func (st *statelessState) expectInput(id json.RawMessage, ch chan message) {
	st.mu.Lock()
	st.inputs[string(id)] = ch
	st.mu.Unlock()
}

// forgetInput drops the wait for an answer to id, and reports whether it
// was still waited for.
func (st *statelessState) forgetInput(id json.RawMessage) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.inputs[string(id)]
	delete(st.inputs, string(id))
	return ok
}

// cancelledNotification tells the client that the gateway no longer waits
// for its answer to the request id.
func cancelledNotification(id json.RawMessage, reason string) []byte {
	b, _ := json.Marshal(struct {
		JSONRPC string `json:"jsonrpc"`
		Method  string `json:"method"`
		Params  any    `json:"params"`
	}{"2.0", "notifications/cancelled", struct {
		RequestID json.RawMessage `json:"requestId"`
		Reason    string          `json:"reason"`
	}{id, reason}})
	return b
}
