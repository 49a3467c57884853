package mcpsse

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Refusals of the client's credential reach the client as HTTP statuses:
// a POST to a protected upstream waits for the upstream's response
// headers to its messages, and answers with the upstream's 401 or 403
// instead of 202, so that the client refreshes its token or steps up and
// sends the message again on the same session.

// refuse answers a request whose credential the upstream refused with
// se's status and a challenge that names the gateway's metadata.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, se *statusError) error {
	w.Header().Set("WWW-Authenticate", clientChallenge(se.challenge, metadataURL(h.resourceURL(r))))
	return caddyhttp.Error(se.code, fmt.Errorf("the upstream refused the client's credential: %s", se.status))
}

// postVerdicts collects, for a POST that waits, how the upstream answered
// each of its messages.
type postVerdicts struct {
	mu      sync.Mutex
	waiting bool
	left    int
	refusal *statusError
	done    chan struct{}
}

func newPostVerdicts(n int) *postVerdicts {
	return &postVerdicts{waiting: true, left: n, done: make(chan struct{})}
}

// wait waits until the upstream answered every message or ctx ends, and
// returns the first refusal of the credential, if any. Verdicts that come
// later are not taken: their messages' relays report them on the stream.
func (p *postVerdicts) wait(ctx context.Context) *statusError {
	select {
	case <-p.done:
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waiting = false
	return p.refusal
}

// verdict is the upstream's answer to one message of a POST that waits;
// a nil *verdict stands for a message nobody waits for.
type verdict struct {
	post  *postVerdicts
	once  sync.Once
	taken bool
}

func (p *postVerdicts) verdict() *verdict { return &verdict{post: p} }

// give tells the POST, once, how the upstream answered the message: se is
// its refusal of the credential, or nil.
func (v *verdict) give(se *statusError) {
	if v == nil {
		return
	}
	v.once.Do(func() {
		p := v.post
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.waiting {
			return
		}
		v.taken = true
		if se != nil && p.refusal == nil {
			p.refusal = se
		}
		if p.left--; p.left == 0 {
			close(p.done)
		}
	})
}

// answered reports whether the waiting POST took the verdict, and so
// answers the client itself. Only after give.
func (v *verdict) answered() bool { return v != nil && v.taken }
