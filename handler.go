package mcpsse

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// What a client refused for too many sessions, or for too many messages
// in flight, is told to wait, in seconds.
const (
	retryAfterSessions = "5"
	retryAfterInFlight = "1"
	retryAfterRedis    = "2"
)

// errUnknownSession answers a POST for a session that is not (or no
// longer) there.
var errUnknownSession = errors.New("unknown or ended session")

// ServeHTTP serves the stream and message endpoints and passes every other
// request to next.
//
// A stream's goroutine parks for the stream's whole life under this frame
// and serveStream's, and writes the stream's events and pings from there:
// the frames stay small and the setup's deep calls (logging, the upstream,
// Redis) run on a goroutine of their own, so that the stack stays within
// the 8 KiB of the goroutine of a handler that merely holds a stream.
// Above that it doubles, and Go halves a stack again only while under a
// quarter of it is used, which a parked stream's never is.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	serve, err := h.route(w, r, next)
	if serve == nil {
		return err
	}
	return serve(w, r)
}

// route answers a request that is not for an endpoint, or that the
// endpoint refuses, and returns the endpoint that serves any other.
func (h *Handler) route(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (func(http.ResponseWriter, *http.Request) error, error) {
	path := r.URL.Path
	if h.isMetadataPath(path) {
		return nil, h.serveMetadata(w, r, next)
	}
	if path != h.streamPath && path != h.messagePath {
		return nil, next.ServeHTTP(w, r)
	}
	// Every answer of the endpoints varies by Origin, refusals included,
	// so that no cache hands one origin's answer to another.
	w.Header().Add("Vary", "Origin")
	if !h.originAllowed(r) {
		return nil, caddyhttp.Error(http.StatusForbidden, fmt.Errorf("origin %q not allowed", r.Header.Get("Origin")))
	}
	endpoint, method, serve := "message", http.MethodPost, h.serveMessage
	if path == h.streamPath {
		endpoint, method, serve = "stream", http.MethodGet, h.serveStream
	}
	allowOrigin(w, r)
	switch {
	case isPreflight(r):
		return nil, answerPreflight(w, r, method)
	case r.Method != method:
		w.Header().Set("Allow", method)
		return nil, caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("%s not allowed on the %s endpoint", r.Method, endpoint))
	}
	return serve, nil
}

// serveStream opens a session, or re-attaches to one the client had, and
// serves its event stream until the client leaves, the stream's lifetime is
// up, another stream takes the session over, or the session is ended.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request) error {
	// The setup's goroutine hands its result over by value: variables it
	// set in this frame would each be a heap object for the stream's life.
	started := make(chan streamStart, 1)
	go func() { started <- h.startStream(w, r) }()
	s := <-started
	if s.sess == nil {
		return s.err
	}
	reason := reasonClientGone
	if s.err == nil {
		reason = s.sess.serve(s.st, s.a, s.after)
	}
	s.sess.release(s.a, reason, s.st.cfg)
	return nil
}

// streamStart is what startStream sets up for a stream: its session, its
// writer, its hold on the session and the last event its client had; or no
// session, if it answered the request itself with err. With a session, err
// is the error of writing the endpoint event, if the client left meanwhile.
type streamStart struct {
	sess  *session
	st    *stream
	a     *attachment
	after uint64
	err   error
}

// startStream opens or finds the stream's session, answers the stream's
// headers, attaches the stream and writes the endpoint event.
func (h *Handler) startStream(w http.ResponseWriter, r *http.Request) streamStart {
	// A client without a credential the upstream takes learns it here,
	// where clients start their authorization.
	if se := h.store.guard.check(r, h.cfg.upstreamTimeout); se != nil {
		return streamStart{err: h.refuse(w, r, se)}
	}
	sess, after, byEventID := h.store.resumable(r)
	if sess == nil {
		var err error
		if sess, err = h.store.open(r, h.cfg); err != nil {
			w.Header().Set("Retry-After", retryAfterSessions)
			return streamStart{err: caddyhttp.Error(http.StatusServiceUnavailable, err)}
		}
	} else {
		h.logger.Info("session resumed", zap.String("session", sess.tag), zap.Bool("last_event_id", byEventID))
		metrics.resumed.Inc()
		sess.setHeader(forwardedHeader(r))
		sess.share()
	}
	setSessionPlaceholder(r, sess.id)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	// no-transform keeps encode (and any proxy that honors it) from
	// compressing the stream: it would hold a compressor, window and
	// tables, per stream for the stream's whole life, to save little on
	// small events.
	hdr.Set("Cache-Control", "no-cache, no-transform")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	a := sess.attach(r.Context())
	st := newStream(w, r, h.cfg)
	err := st.write(appendEndpointEvent(nil, endpointPath(r, h.Prefix)+"?sessionId="+sess.id))
	return streamStart{sess: sess, st: st, a: a, after: after, err: err}
}

// endpointPath returns the path clients POST their messages to. It is built
// from the path the client requested, before any rewrite such as
// handle_path or uri strip_prefix, and never names scheme or host: clients
// resolve it against the stream's URL and refuse another origin.
func endpointPath(r *http.Request, prefix string) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		if p := orig.URL.EscapedPath(); strings.HasSuffix(p, "/sse") {
			return strings.TrimSuffix(p, "sse") + "message"
		}
	}
	return prefix + "/message"
}

// serveMessage takes a JSON-RPC message or batch for a session and answers
// 202 once it is queued for the upstream; answers reach the session's
// stream. For an upstream that requires authorization it answers once the
// upstream's response headers to every message are in: with the upstream's
// 401 or 403 if it refused the client's credential.
func (h *Handler) serveMessage(w http.ResponseWriter, r *http.Request) error {
	id := queryValue(r.URL.RawQuery, "sessionId")
	if id == "" {
		return writeRPCError(w, http.StatusBadRequest, codeInvalidRequest, "missing sessionId query parameter", nil)
	}
	// Another user's session is as unknown as one that never was.
	sess, err := h.store.lookup(id)
	if err != nil {
		w.Header().Set("Retry-After", retryAfterRedis)
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	if sess == nil {
		return caddyhttp.Error(http.StatusNotFound, errUnknownSession)
	}
	if h.store.node != nil {
		defer func() {
			if sess != nil {
				h.store.dropIfIdle(sess) // a copy made for this POST
			}
		}()
	}
	if !sess.ownedBy(authUser(r)) {
		return caddyhttp.Error(http.StatusNotFound, errUnknownSession)
	}
	setSessionPlaceholder(r, sess.id)
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, err := mediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return caddyhttp.Error(http.StatusUnsupportedMediaType, fmt.Errorf("content type %q is not JSON", ct))
		}
	}
	body, err := readMessage(w, r, h.cfg.maxMessageSize)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return caddyhttp.Error(http.StatusRequestEntityTooLarge, fmt.Errorf("message over %d bytes", h.cfg.maxMessageSize))
		}
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading message: %w", err))
	}
	msgs, err := parseMessages(body)
	if err != nil {
		rpcErr := err.(*rpcError)
		return writeRPCError(w, http.StatusBadRequest, rpcErr.code, rpcErr.msg, nil)
	}
	if c := h.logger.Check(zapcore.DebugLevel, "message from client"); c != nil {
		c.Write(zap.String("session", sess.tag), zap.Int("messages", len(msgs)))
	}
	var verdicts *postVerdicts
	if h.store.guard.isProtected() {
		verdicts = newPostVerdicts(len(msgs))
	}
	err = sess.forward(msgs, forwardedHeader(r), h.cfg, verdicts)
	if errors.Is(err, errCopyDropped) {
		// The copy found left the store as this POST came: take the new.
		switch sess, err = h.store.lookup(id); {
		case err != nil:
			w.Header().Set("Retry-After", retryAfterRedis)
			return caddyhttp.Error(http.StatusServiceUnavailable, err)
		case sess == nil:
			return caddyhttp.Error(http.StatusNotFound, errUnknownSession)
		}
		err = sess.forward(msgs, forwardedHeader(r), h.cfg, verdicts)
	}
	switch {
	case errors.Is(err, errTooManyInFlight):
		w.Header().Set("Retry-After", retryAfterInFlight)
		return writeRPCError(w, http.StatusTooManyRequests, codeServerBusy, err.Error(), soleRequestID(msgs))
	case err != nil:
		return caddyhttp.Error(http.StatusNotFound, err)
	}
	if verdicts != nil {
		if se := verdicts.wait(r.Context()); se != nil {
			return h.refuse(w, r, se)
		}
	}
	if h.store.node != nil {
		// The client's next POST may reach another instance: answering
		// once these messages went upstream keeps them in order.
		select {
		case <-sess.written():
		case <-r.Context().Done():
		}
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// readMessage reads the body of a POST, of at most limit bytes: into a
// buffer of its Content-Length if it has one, as most clients send it,
// rather than one grown as it is read.
func readMessage(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= limit {
		body := make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

// queryValue returns the first value of the parameter name in the query
// rawQuery, as url.ParseQuery reads it, or "": without the map of every
// parameter that URL.Query makes, on every POST.
func queryValue(rawQuery, name string) string {
	for q := rawQuery; q != ""; {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if strings.Contains(pair, ";") {
			continue // ParseQuery rejects it
		}
		k, v, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(k); err != nil || k != name {
			continue
		}
		if v, err := url.QueryUnescape(v); err == nil {
			return v
		}
	}
	return ""
}

// sessionPlaceholder names the session of a request to either endpoint, for
// access logs and the handlers after this one.
const sessionPlaceholder = "http.mcp_sse.session_id"

// setSessionPlaceholder sets the session placeholder of r to id. It adds a
// provider to the request's replacer rather than Set it: Set would give
// the replacer's map its first entry, a few hundred bytes a stream holds
// for its whole life.
func setSessionPlaceholder(r *http.Request, id string) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(func(key string) (any, bool) {
			return id, key == sessionPlaceholder
		})
	}
}

// writeRPCError answers with status and a JSON-RPC error body for the
// request id (null when none can be named): a client whose message was
// refused learns why from the body.
func writeRPCError(w http.ResponseWriter, status, code int, msg string, id json.RawMessage) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err := w.Write(errorResponse(id, code, msg))
	return err
}

// soleRequestID returns the id of msgs if they are one request, else nil.
func soleRequestID(msgs []message) json.RawMessage {
	if len(msgs) == 1 && msgs[0].kind == kindRequest {
		return msgs[0].id
	}
	return nil
}
