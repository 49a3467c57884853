package mcpsse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// Resuming upstream event streams: a 2025-11-25 server gives the events of
// its streams IDs and expects a client whose stream broke off, or that the
// server closed on purpose before the answer was complete, to resume it
// with GET and Last-Event-ID after the wait the stream's retry field set.

const (
	// maxResumesWithoutProgress bounds the resumptions in a row that
	// bring no new event: an upstream that keeps closing a stream
	// without sending anything more fails the call at last.
	maxResumesWithoutProgress = 5
	// defaultResumeDelay is the wait before resuming a stream whose
	// upstream set no retry.
	defaultResumeDelay = time.Second
)

// relayAnswerEvents relays an upstream event stream that answers the
// request or notification to, resuming it as long as the upstream gave it
// event IDs, until the response to the request came through (or, for a
// notification, the stream ends).
func (s *session) relayAnswerEvents(ctx context.Context, body io.Reader, to answerTo, cfg *settings) error {
	events := newSSEReader(body, maxUpstreamMessage)
	defer events.release()
	var resumed io.Closer
	defer func() {
		if resumed != nil {
			resumed.Close()
		}
	}()
	progress, stalls := "", 0
	for {
		err := s.relayEvents(ctx, events, &to)
		if err == nil && to.id != nil {
			s.relayAnswerRest(ctx, events, to)
			return nil
		}
		if to.id == nil || events.lastID == "" || ctx.Err() != nil || !(errors.Is(err, errBrokenAnswer) || errors.Is(err, errNoResponse)) {
			return err
		}
		if events.lastID != progress {
			progress, stalls = events.lastID, 0
		}
		for {
			if stalls++; stalls > maxResumesWithoutProgress {
				return fmt.Errorf("%w; resumed %d times without a new event", err, maxResumesWithoutProgress)
			}
			if !sleepCtx(ctx, resumeDelay(events.retry)) {
				return ctx.Err()
			}
			body, rerr := s.resumeStream(ctx, events.lastID, cfg.upstreamTimeout)
			if rerr == nil {
				if resumed != nil {
					resumed.Close()
				}
				resumed = body
				events.resumeWith(body)
				metrics.upstreamResumes.Inc()
				break
			}
			if se, ok := errors.AsType[*statusError](rerr); ok && se.code/100 == 4 {
				// 405: the upstream resumes no streams; 404: it forgot
				// the session; 400: it knows no such event.
				return fmt.Errorf("%w; resuming it: %w", err, rerr)
			}
			s.store.logger().Debug("resuming upstream answer failed", zap.String("session", s.tag), zap.Error(rerr))
		}
	}
}

// resumeStream asks the upstream for the events of a stream after lastID
// and returns the answer's body, an event stream.
func (s *session) resumeStream(ctx context.Context, lastID string, headerTimeout time.Duration) (io.ReadCloser, error) {
	resp, err := s.getEventStream(ctx, s.eventStreamHeader(lastID), headerTimeout)
	if err != nil {
		return nil, err
	}
	if err := checkStatus(resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	if mt, _ := mediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s with %q resuming a stream", errNotMCP, resp.Status, mt)
	}
	return resp.Body, nil
}

// eventStreamHeader is the header of a GET that opens the upstream
// session's stream, or resumes a stream after lastID if set: the session's
// latest headers.
func (s *session) eventStreamHeader(lastID string) http.Header {
	header := s.currentHeader()
	header.Set("Accept", "text/event-stream")
	if lastID != "" {
		header.Set("Last-Event-ID", lastID)
	}
	return header
}

// getEventStream sends a GET for an upstream event stream with header.
func (s *session) getEventStream(ctx context.Context, header http.Header, headerTimeout time.Duration) (*http.Response, error) {
	return s.store.upstream.send(ctx, http.MethodGet, nil, header, nil, headerTimeout)
}

// resumeDelay is the wait before resuming a stream whose latest retry
// field said retry, bounded as the GET stream's backoff is.
func resumeDelay(retry time.Duration) time.Duration {
	if retry < 0 {
		return defaultResumeDelay
	}
	return min(retry, listenBackoffMax)
}

// sleepCtx waits d, and reports false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
