package mcpsse

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// An upstream that speaks revisionStateless sends what is not tied to a
// request (list changes, resource updates) only on the stream of a
// subscriptions/listen request, and only what that request asked for. A
// session holds one such stream while there is something to listen for:
// the list changes the upstream's capabilities announce, unless the
// handler's upstream stream is off, and the resources the client
// subscribed to. A change of the resources opens a new stream, and the
// old one ends once the new one is acknowledged.

// codeInvalidParams answers a request whose params are wrong.
const codeInvalidParams = -32602

// listenFilter is what a subscriptions/listen request asks for, and what
// the upstream's acknowledgment grants.
type listenFilter struct {
	ToolsListChanged      bool     `json:"toolsListChanged,omitempty"`
	PromptsListChanged    bool     `json:"promptsListChanged,omitempty"`
	ResourcesListChanged  bool     `json:"resourcesListChanged,omitempty"`
	ResourceSubscriptions []string `json:"resourceSubscriptions,omitempty"`
}

func (f listenFilter) empty() bool {
	return !f.ToolsListChanged && !f.PromptsListChanged && !f.ResourcesListChanged && len(f.ResourceSubscriptions) == 0
}

func (f listenFilter) equal(g listenFilter) bool {
	return f.ToolsListChanged == g.ToolsListChanged && f.PromptsListChanged == g.PromptsListChanged &&
		f.ResourcesListChanged == g.ResourcesListChanged && slices.Equal(f.ResourceSubscriptions, g.ResourceSubscriptions)
}

// subscription is one subscriptions/listen stream of a session, opened
// again after it breaks until its ctx ends.
type subscription struct {
	filter listenFilter
	ctx    context.Context
	cancel context.CancelFunc
	// acked is closed once the upstream first acknowledged the stream;
	// granted is what it granted then.
	acked   chan struct{}
	ackOnce sync.Once
	granted listenFilter
	// prev are the streams this one replaces, ended once it is acknowledged.
	mu   sync.Mutex
	prev []*subscription
}

// upstreamCapabilities are what the session needs of the upstream's
// capabilities.
type upstreamCapabilities map[string]struct {
	ListChanged bool `json:"listChanged"`
	Subscribe   bool `json:"subscribe"`
}

// listenFor returns what the session listens for: the list changes the
// upstream announces (if the handler holds upstream streams) and the
// client's resources.
func (s *session) listenFor(upstreamStream bool) listenFilter {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.statelessLocked()
	f := listenFilter{ResourceSubscriptions: slices.Clone(st.subscribed)}
	if upstreamStream {
		caps := upstreamCapabilitiesOf(st.capabilities)
		f.ToolsListChanged = caps["tools"].ListChanged
		f.PromptsListChanged = caps["prompts"].ListChanged
		f.ResourcesListChanged = caps["resources"].ListChanged
	}
	return f
}

// upstreamCapabilitiesOf reads an upstream's capabilities.
func upstreamCapabilitiesOf(raw json.RawMessage) upstreamCapabilities {
	var caps upstreamCapabilities
	_ = json.Unmarshal(raw, &caps)
	return caps
}

// listenStateless opens the session's subscriptions/listen stream, if it
// has something to listen for, and waits a little for it to be
// acknowledged, so that a change right after the client's next request is
// not missed.
func (s *session) listenStateless(ctx context.Context) {
	if sub := s.relisten(ctx); sub != nil {
		t := time.NewTimer(maxListenOpenWait)
		defer t.Stop()
		select {
		case <-sub.acked:
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// relisten opens a subscriptions/listen stream for what the session
// listens for now, unless the one open asks for just that, and returns the
// stream that serves it, or nil if there is nothing to listen for. In a
// cluster only the instance that holds the client's stream listens.
func (s *session) relisten(ctx context.Context) *subscription {
	if s.store.node != nil && !s.hasStream() {
		return nil
	}
	f := s.listenFor(s.store.settings().upstreamStream)
	st := s.stateless()
	st.mu.Lock()
	defer st.mu.Unlock()
	old := st.listening
	if old != nil && old.ctx.Err() == nil && old.filter.equal(f) {
		return old
	}
	if f.empty() {
		st.listening = nil
		if old != nil {
			old.cancel()
		}
		return nil
	}
	sub := &subscription{filter: f, acked: make(chan struct{})}
	sub.ctx, sub.cancel = context.WithCancel(ctx)
	if old != nil {
		sub.prev = []*subscription{old}
	}
	st.listening = sub
	go s.runSubscription(sub)
	return sub
}

// stopSubscriptions ends the session's subscriptions/listen stream, if it
// has one: in a cluster, the client's stream left this instance, and the
// instance that holds it next listens.
func (s *session) stopSubscriptions() {
	s.mu.Lock()
	st := s.statelessState
	s.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	sub := st.listening
	st.listening = nil
	st.mu.Unlock()
	if sub != nil {
		sub.cancel()
		sub.endReplaced()
	}
}

// runSubscription holds the stream of sub, opening it again after it
// breaks or the upstream ends it, until sub's ctx ends, the upstream
// refuses it, or grants none of it. It waits 1s before it opens the
// stream again, and twice as long each time up to 30s while the stream
// does not last that long (an upstream that ends it at once is not asked
// again every second).
func (s *session) runSubscription(sub *subscription) {
	defer sub.cancel()
	backoff := time.Second
	for {
		began := time.Now()
		acked, retry, err := s.listenOnceStateless(sub)
		if sub.ctx.Err() != nil {
			return
		}
		if acked && sub.granted.empty() {
			return // the upstream takes none of it: nothing to listen for
		}
		if acked && time.Since(began) >= listenBackoffMax {
			backoff = time.Second
		}
		if err != nil {
			countUpstreamError(err)
			s.store.logger().Warn("upstream subscriptions/listen stream failed",
				zap.String("session", s.tag), zap.Bool("retrying", retry), zap.Error(err))
		}
		if !retry || !sleepCtx(sub.ctx, backoff) {
			return
		}
		backoff = min(2*backoff, listenBackoffMax)
	}
}

// listenOnceStateless holds one subscriptions/listen request of sub and
// relays the notifications on its stream; it reports whether the upstream
// acknowledged it, and whether to open it again.
func (s *session) listenOnceStateless(sub *subscription) (acked, retry bool, err error) {
	st := s.stateless()
	params := map[string]json.RawMessage{}
	params["notifications"], _ = json.Marshal(sub.filter)
	o := newOutgoing(st.newID(), "subscriptions/listen", params)
	cfg := s.store.settings()
	resp, err := s.postStateless(sub.ctx, o, s.requestMeta(), s.currentHeader(), cfg, nil)
	if err != nil {
		return false, true, err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return false, resp.StatusCode/100 == 5, err
	}
	_, err = s.readStatelessAnswer(sub.ctx, resp, o.id, func(m message) error {
		if m.kind != kindNotification {
			return nil // the revision has the upstream send no requests
		}
		if m.method == "notifications/subscriptions/acknowledged" {
			acked = true
			sub.acknowledge(m)
			return nil
		}
		return s.relayToClient(sub.ctx, asLegacy(m.raw), m.kind, answerTo{})
	})
	return acked, true, err // a response ends the stream cleanly: open it again
}

// acknowledge records the upstream's acknowledgment m of sub, and ends
// the streams it replaces.
func (sub *subscription) acknowledge(m message) {
	sub.ackOnce.Do(func() {
		var ack struct {
			Params struct {
				Notifications listenFilter `json:"notifications"`
			} `json:"params"`
		}
		_ = json.Unmarshal(m.raw, &ack)
		sub.granted = ack.Params.Notifications
		close(sub.acked)
	})
	sub.endReplaced()
}

// endReplaced ends the streams sub replaces, and those they were still to
// replace.
func (sub *subscription) endReplaced() {
	sub.mu.Lock()
	prev := sub.prev
	sub.prev = nil
	sub.mu.Unlock()
	for _, p := range prev {
		p.cancel()
		p.endReplaced()
	}
}

// changeSubscription takes the client's resources/subscribe or
// unsubscribe m: the session's subscriptions/listen stream is opened
// again for its resources, and a subscribe is answered once the upstream
// acknowledged it, or with an error if it did not take the resource.
func (s *session) changeSubscription(ctx context.Context, m message, cfg *settings) error {
	var p struct {
		Params struct {
			URI string `json:"uri"`
		} `json:"params"`
	}
	if json.Unmarshal(m.raw, &p) != nil || p.Params.URI == "" {
		s.answer(ctx, errorResponse(m.id, codeInvalidParams, "params.uri is required"))
		return nil
	}
	uri := p.Params.URI
	subscribe := m.method == "resources/subscribe"
	s.mu.Lock()
	st := s.statelessLocked()
	takes := upstreamCapabilitiesOf(st.capabilities)["resources"].Subscribe
	s.mu.Unlock()
	if subscribe && !takes {
		s.answer(ctx, errorResponse(m.id, codeMethodNotFound, "the upstream takes no resource subscriptions"))
		return nil
	}
	s.mu.Lock()
	i := slices.Index(st.subscribed, uri)
	switch {
	case subscribe && i < 0:
		st.subscribed = append(st.subscribed, uri)
	case !subscribe && i >= 0:
		st.subscribed = slices.Delete(st.subscribed, i, i+1)
	}
	s.mu.Unlock()
	s.share()
	sub := s.relisten(ctx)
	if s.store.node != nil && !s.hasStream() {
		// The instance that holds the client's stream listens: it
		// learns of the change, and the client's answer comes from here.
		s.announceInitialized()
		s.answer(ctx, resultResponse(m.id, struct{}{}))
		return nil
	}
	if !subscribe || sub == nil {
		s.answer(ctx, resultResponse(m.id, struct{}{}))
		return nil
	}
	t := time.NewTimer(cfg.upstreamTimeout)
	defer t.Stop()
	select {
	case <-sub.acked:
	case <-t.C:
	case <-sub.ctx.Done():
	case <-ctx.Done():
		return nil
	}
	select {
	case <-sub.acked:
	default:
		s.answer(ctx, errorResponse(m.id, codeInternalError, "the upstream did not acknowledge the subscription"))
		return nil
	}
	if !slices.Contains(sub.granted.ResourceSubscriptions, uri) {
		// Not asked for again with the session's next stream.
		s.mu.Lock()
		st.subscribed = slices.DeleteFunc(st.subscribed, func(u string) bool { return u == uri })
		s.mu.Unlock()
		s.share()
		s.answer(ctx, errorResponse(m.id, codeMethodNotFound, fmt.Sprintf("the upstream takes no subscription to %s", uri)))
		return nil
	}
	s.answer(ctx, resultResponse(m.id, struct{}{}))
	return nil
}
