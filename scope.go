package mcpsse

import (
	"context"
	"slices"
	"sync"
	"time"
)

// scope is a context that ends when end is called or its parent ends,
// as context.WithCancelCause's does, made for the contexts a session keeps
// for its life (its own, its upstream session's, its GET stream's) and
// for each upstream request. A context made with context.WithCancel keeps
// a map of the contexts derived from it once the first one registers,
// about 250 B, for as long as it lives; a scope keeps them in a slice that
// it lets go once they have all ended, so a session that idles holds none.
// Those derived from it, context.WithCancel's included, register through
// its AfterFunc method, which the context package looks for. The slice
// holds what runs at once under the scope: a session's requests in flight
// (max_in_flight bounds them), its GET stream, its subscriptions.
type scope struct {
	// values is where its values and deadline come from: its parent's,
	// unless set before it is used.
	values context.Context

	mu sync.Mutex
	// done is made by the first Done. The context package asks for it
	// of every context it derives from or watches (context.WithCancel,
	// context.AfterFunc), so the gateway watches its scopes through
	// their AfterFunc method: the scopes of an idle session keep no
	// channel.
	done   chan struct{}
	err    error     // set once ended
	cause  error     // why it ended
	afters []*func() // run once it ends; nil when none waits
	leave  func() bool
}

// newScope returns a scope that ends when parent does, if not before.
func newScope(parent context.Context) *scope {
	sc := &scope{values: parent}
	if _, ok := parent.(*scope); !ok && parent.Done() == nil {
		return sc // its parent never ends
	}
	follow := func() { sc.endWith(parent.Err(), causeOf(parent)) }
	if parent.Err() != nil {
		follow()
		return sc
	}
	leave := afterFunc(parent, follow)
	sc.mu.Lock()
	if sc.err == nil {
		sc.leave, leave = leave, nil
	}
	sc.mu.Unlock()
	if leave != nil {
		leave() // ended already, with its parent
	}
	return sc
}

// afterFunc arranges for f to run once ctx ends, as context.AfterFunc
// does; a scope, through its own AfterFunc, since context.AfterFunc
// would ask it for the channel that it otherwise need not make.
func afterFunc(ctx context.Context, f func()) (stop func() bool) {
	if sc, ok := ctx.(*scope); ok {
		return sc.AfterFunc(f)
	}
	return context.AfterFunc(ctx, f)
}

func (sc *scope) Deadline() (time.Time, bool) { return sc.values.Deadline() }
func (sc *scope) Value(key any) any           { return sc.values.Value(key) }

func (sc *scope) Done() <-chan struct{} {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.done == nil {
		sc.done = make(chan struct{})
		if sc.err != nil {
			close(sc.done)
		}
	}
	return sc.done
}

func (sc *scope) Err() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.err
}

// Cause is why sc ended, as context.Cause gives it for a context made with
// context.WithCancelCause; nil while it lives.
func (sc *scope) Cause() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.cause
}

// causeOf is why ctx ended, as context.Cause tells it: that cannot see
// a scope's cause, since a scope passes the lookup it makes on to
// its parent.
func causeOf(ctx context.Context) error {
	if sc, ok := ctx.(*scope); ok {
		return sc.Cause()
	}
	return context.Cause(ctx)
}

// AfterFunc arranges for f to run once sc ends, as context.AfterFunc does;
// if sc has ended, f runs at once on a goroutine of its own. stop keeps f
// from running, and reports whether it did.
func (sc *scope) AfterFunc(f func()) (stop func() bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.err != nil {
		go f()
		return func() bool { return false }
	}
	p := &f
	sc.afters = append(sc.afters, p)
	return func() bool { return sc.forget(p) }
}

func (sc *scope) forget(p *func()) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	i := slices.Index(sc.afters, p)
	if i < 0 {
		return false
	}
	sc.afters = slices.Delete(sc.afters, i, i+1)
	if len(sc.afters) == 0 {
		sc.afters = nil
	}
	return true
}

// end ends sc and what derives from it, with context.Canceled. Only the
// first end of a scope counts.
func (sc *scope) end() { sc.endWith(context.Canceled, nil) }

// endWith ends sc with err, for cause (err if nil).
func (sc *scope) endWith(err, cause error) {
	if cause == nil {
		cause = err
	}
	sc.mu.Lock()
	if sc.err != nil {
		sc.mu.Unlock()
		return
	}
	sc.err, sc.cause = err, cause
	if sc.done != nil {
		close(sc.done)
	}
	afters, leave := sc.afters, sc.leave
	sc.afters, sc.leave = nil, nil
	sc.mu.Unlock()
	if leave != nil {
		leave()
	}
	for _, f := range afters {
		(*f)()
	}
}
