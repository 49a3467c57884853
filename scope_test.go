package mcpsse

import (
	"context"
	"errors"
	"testing"
	"time"
)

// registered is how many contexts wait for l to end.
func registered(l *scope) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.afters)
}

// TestScopeChildren checks that contexts derived from a scope, the
// standard library's and scopes, end with it, and that one that ended
// first leaves nothing registered: an idle session keeps no record of
// its past exchanges.
func TestScopeChildren(t *testing.T) {
	t.Parallel()
	l := newScope(context.Background())
	std, cancel := context.WithCancel(l)
	child := newScope(l)
	if n := registered(l); n != 2 {
		t.Fatalf("%d contexts registered, want 2: the standard one watches with a goroutine instead", n)
	}
	cancel()
	child.end()
	if n := registered(l); n != 0 || l.afters != nil {
		t.Fatalf("%d registrations kept (%v) after both ended", n, l.afters)
	}
	if l.Err() != nil {
		t.Fatalf("a child's end ended its parent: %v", l.Err())
	}

	std, cancel = context.WithCancel(l)
	defer cancel()
	child = newScope(l)
	grandchild := newScope(child)
	l.end()
	for name, c := range map[string]context.Context{"standard": std, "scope": child, "grandchild": grandchild} {
		select {
		case <-c.Done():
		default:
			t.Fatalf("the %s child did not end with its parent", name)
		}
		if !errors.Is(c.Err(), context.Canceled) {
			t.Errorf("the %s child ended with %v, want context.Canceled", name, c.Err())
		}
	}
}

// TestScopeDoneOnDemand checks that a scope and the scopes under it make
// no channel until Done is asked for, and that Done is closed once the
// scope ended, asked for before its end or after.
func TestScopeDoneOnDemand(t *testing.T) {
	t.Parallel()
	l := newScope(context.Background())
	child := newScope(l)
	stop := l.AfterFunc(func() {})
	defer stop()
	if l.done != nil || child.done != nil {
		t.Fatal("a scope made a channel nobody asked for")
	}
	before := child.Done()
	l.end()
	for name, done := range map[string]<-chan struct{}{"asked before the end": before, "asked after": l.Done()} {
		select {
		case <-done:
		default:
			t.Errorf("Done %s is not closed once the scope ended", name)
		}
	}
}

// TestScopeOfEndedParent checks that a scope made under a context
// that ended is ended at once, with the parent's error and cause.
func TestScopeOfEndedParent(t *testing.T) {
	t.Parallel()
	why := errors.New("why")
	parent, cancel := context.WithCancelCause(context.Background())
	cancel(why)
	l := newScope(parent)
	<-l.Done()
	if !errors.Is(l.Err(), context.Canceled) || !errors.Is(l.Cause(), why) {
		t.Fatalf("ended with %v (cause %v), want context.Canceled (cause %v)", l.Err(), l.Cause(), why)
	}

	ended := newScope(context.Background())
	ended.end()
	if l := newScope(ended); l.Err() == nil {
		t.Fatal("a scope of an ended scope lives")
	}
}

// TestScopeUnderStandardContext checks that a scope takes the deadline of
// a standard context above it, ends with it, with its cause, and leaves it
// once it ended first.
func TestScopeUnderStandardContext(t *testing.T) {
	t.Parallel()
	why := errors.New("the call was cancelled")
	timed, stop := context.WithTimeout(context.Background(), time.Hour)
	defer stop()
	parent, cancelCause := context.WithCancelCause(timed)
	l := newScope(parent)
	if d, ok := l.Deadline(); !ok || time.Until(d) < time.Minute {
		t.Errorf("deadline %v, %v: want the parent's", d, ok)
	}
	cancelCause(why)
	<-l.Done()
	if !errors.Is(l.Err(), context.Canceled) || !errors.Is(l.Cause(), why) {
		t.Errorf("ended with %v (cause %v), want the parent's context.Canceled (cause %v)", l.Err(), l.Cause(), why)
	}

	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	l = newScope(parent)
	l.end()
	if l.leave != nil {
		t.Error("an ended scope keeps its registration with its parent")
	}
}

// TestScopeEndWith checks the error and cause of a scope, that the
// first end counts, and that contexts derived from it see its cause.
func TestScopeEndWith(t *testing.T) {
	t.Parallel()
	why := errors.New("header timeout")
	l := newScope(context.Background())
	std, cancel := context.WithCancelCause(l)
	defer cancel(nil)
	if l.Err() != nil || l.Cause() != nil {
		t.Fatalf("a running scope reports %v, cause %v", l.Err(), l.Cause())
	}
	l.endWith(context.Canceled, why)
	l.end()
	if !errors.Is(l.Err(), context.Canceled) || !errors.Is(l.Cause(), why) {
		t.Fatalf("ended with %v (cause %v), want context.Canceled (cause %v): the first end counts", l.Err(), l.Cause(), why)
	}
	<-std.Done()
	if !errors.Is(std.Err(), context.Canceled) {
		t.Errorf("the derived context ended with %v", std.Err())
	}
}

// TestScopeAfterFunc checks context.AfterFunc on a scope: f runs
// once it ends unless stopped, and at once if it has ended.
func TestScopeAfterFunc(t *testing.T) {
	t.Parallel()
	l := newScope(context.Background())
	ran := make(chan string, 3)
	stop := context.AfterFunc(l, func() { ran <- "kept" })
	stopped := context.AfterFunc(l, func() { ran <- "stopped" })
	if !stopped() {
		t.Fatal("stop before the end reported that f ran")
	}
	l.end()
	if got := <-ran; got != "kept" {
		t.Fatalf("%s ran", got)
	}
	if stop() {
		t.Error("stop after f ran reported that it kept f from running")
	}
	l.AfterFunc(func() { ran <- "late" })
	if got := <-ran; got != "late" {
		t.Fatalf("%s ran, want the func registered after the end", got)
	}
	select {
	case got := <-ran:
		t.Fatalf("%s ran too", got)
	default:
	}
}

// TestScopeValues checks that a scope carries its parent's values,
// or those set for it.
func TestScopeValues(t *testing.T) {
	t.Parallel()
	type key struct{}
	parent := context.WithValue(context.Background(), key{}, "parent's")
	l := newScope(parent)
	if got := l.Value(key{}); got != "parent's" {
		t.Errorf("value %v, want the parent's", got)
	}
	l.values = context.WithValue(parent, key{}, "own")
	if got := l.Value(key{}); got != "own" {
		t.Errorf("value %v, want its own", got)
	}
}
