package mcpsse

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"
)

// How long the gateway trusts what it learned of the upstream's
// authorization, and how many accepted credentials it remembers.
const (
	// protectionTTL: whether the upstream requires a credential, learned
	// from one GET without any.
	protectionTTL = 5 * time.Minute
	// probeRetry: after a probe that got no answer, the next may run.
	probeRetry = 10 * time.Second
	// credentialTTL: that the upstream accepted a credential.
	credentialTTL = 30 * time.Second
	// maxAcceptedCredentials bounds the credentials remembered.
	maxAcceptedCredentials = 10_000
)

// guard knows whether a store's upstream requires authorization, and which
// credentials it accepted lately, so that a client without a valid one
// learns it by HTTP status, where clients look for it: on its stream
// request, and on the POST whose message the upstream refused.
//
// It learns both by asking the upstream: a GET to its endpoint, without
// session, with the client's headers (or without any credential), whose
// 401 or 403 is the upstream's refusal and any other answer its consent.
// An upstream that requires nothing costs one such GET every
// protectionTTL; a protected one, one per client credential every
// credentialTTL, on the client's stream request.
type guard struct {
	up *upstreamClient

	mu        sync.Mutex
	protected bool
	challenge string    // the upstream's challenge to a request without credential
	until     time.Time // protected and challenge hold until then
	probing   chan struct{}
	accepted  map[[sha256.Size]byte]time.Time

	metadataDoc   map[string]json.RawMessage // the upstream's protected-resource metadata
	metadataUntil time.Time
}

func newGuard(up *upstreamClient) *guard {
	return &guard{up: up, accepted: make(map[[sha256.Size]byte]time.Time)}
}

// isProtected reports whether the upstream is known to require a credential.
func (g *guard) isProtected() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.protected
}

// check returns the upstream's refusal of the stream request r, or nil if
// the upstream takes it or nothing is known.
func (g *guard) check(r *http.Request, timeout time.Duration) *statusError {
	ctx := r.Context()
	protected, challenge := g.protection(ctx, timeout)
	if !protected {
		return nil
	}
	cred := credential(r.Header)
	if cred == "" {
		return &statusError{code: http.StatusUnauthorized, status: "401 Unauthorized", challenge: challenge}
	}
	key := sha256.Sum256([]byte(cred))
	now := time.Now()
	g.mu.Lock()
	until, ok := g.accepted[key]
	g.mu.Unlock()
	if ok && now.Before(until) {
		return nil
	}
	se, err := g.probe(ctx, forwardedHeader(r), timeout)
	if err != nil {
		return nil // the upstream's answers to the client's messages will tell
	}
	if se != nil {
		return se
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.accepted) >= maxAcceptedCredentials {
		for k, until := range g.accepted {
			if !now.Before(until) {
				delete(g.accepted, k)
			}
		}
		if len(g.accepted) >= maxAcceptedCredentials {
			clear(g.accepted)
		}
	}
	g.accepted[key] = now.Add(credentialTTL)
	return nil
}

// refused records that the upstream refused a client's credential with
// se: it is protected.
func (g *guard) refused(se *statusError) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.protected = true
	if g.challenge == "" && se.code == http.StatusUnauthorized {
		g.challenge = se.challenge
	}
	g.until = time.Now().Add(protectionTTL)
}

// protection returns whether the upstream requires a credential, and its
// challenge to a request without one, asking it if what was learned is
// old: one GET without credential at a time, which other callers wait for
// as long as their ctx allows.
func (g *guard) protection(ctx context.Context, timeout time.Duration) (bool, string) {
	for {
		g.mu.Lock()
		if time.Now().Before(g.until) {
			defer g.mu.Unlock()
			return g.protected, g.challenge
		}
		if wait := g.probing; wait != nil {
			g.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return g.isProtected(), ""
			}
		}
		done := make(chan struct{})
		g.probing = done
		g.mu.Unlock()

		se, err := g.probe(ctx, http.Header{}, timeout)
		g.mu.Lock()
		switch {
		case err != nil:
			g.until = time.Now().Add(probeRetry) // keep what was known
		case se != nil:
			g.protected, g.challenge, g.until = true, se.challenge, time.Now().Add(protectionTTL)
		default:
			g.protected, g.challenge, g.until = false, "", time.Now().Add(protectionTTL)
		}
		g.probing = nil
		close(done)
		g.mu.Unlock()
	}
}

// probe asks the upstream whether it takes a request with header: a GET
// to its endpoint without session. It returns the upstream's refusal of
// the credential (401 or 403), nil for any other answer, or the error of
// a probe that got none.
func (g *guard) probe(ctx context.Context, header http.Header, timeout time.Duration) (*statusError, error) {
	header = header.Clone()
	header.Del(headerSessionID)
	header.Set("Accept", "text/event-stream")
	resp, err := g.up.send(ctx, http.MethodGet, nil, header, nil, timeout)
	if err != nil {
		return nil, err
	}
	resp.Body.Close() // an upstream that opened a stream: nothing is read from it
	if se, ok := errors.AsType[*statusError](checkStatus(resp)); ok && se.refusesCredential() {
		return se, nil
	}
	return nil, nil
}
