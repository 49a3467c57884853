package mcpsse

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
)

// take waits for the queue's next event.
func (q *eventQueue) take() event {
	for {
		<-q.ready
		if ev, ok := q.pop(); ok {
			return ev
		}
	}
}

// len returns how many events are queued.
func (q *eventQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// waitedOn reports whether a push waits for room.
func (q *eventQueue) waitedOn() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.room != nil
}

// TestEventQueueOrder: events come out in the order they went in, and a
// drained queue keeps no large buffer.
func TestEventQueueOrder(t *testing.T) {
	q := newEventQueue()
	for i := range 5 {
		if err := q.push(t.Context(), event{data: fmt.Appendf(nil, "%d", i)}, 8); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if got, want := string(q.take().data), fmt.Sprint(i); got != want {
			t.Fatalf("event %d is %q, want %q", i, got, want)
		}
	}
	if cap(q.items) > keptEvents {
		t.Errorf("a drained queue holds a buffer of %d events", cap(q.items))
	}
}

// TestEventQueueFull: a push to a full queue waits until the stream takes
// an event, or until its context ends; nothing is dropped.
func TestEventQueueFull(t *testing.T) {
	q := newEventQueue()
	if err := q.push(t.Context(), event{data: []byte("first")}, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := q.push(ctx, event{data: []byte("refused")}, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("a push to a full queue under an ended context returned %v", err)
	}
	pushed := make(chan error, 2)
	for _, d := range []string{"second", "third"} {
		go func() { pushed <- q.push(t.Context(), event{data: []byte(d)}, 1) }()
	}
	got := map[string]bool{string(q.take().data): true}
	for range 2 {
		got[string(q.take().data)] = true
		if err := <-pushed; err != nil {
			t.Fatal(err)
		}
	}
	if !got["first"] || !got["second"] || !got["third"] || got["refused"] {
		t.Errorf("took %v, want first, second and third", got)
	}
}

// TestEventQueueClear: clearing drops the events and lets a waiting push
// in.
func TestEventQueueClear(t *testing.T) {
	q := newEventQueue()
	if err := q.push(t.Context(), event{data: []byte("old")}, 1); err != nil {
		t.Fatal(err)
	}
	pushed := make(chan error, 1)
	go func() { pushed <- q.push(t.Context(), event{data: []byte("new")}, 1) }()
	for !q.waitedOn() {
		runtime.Gosched()
	}
	q.clear()
	if err := <-pushed; err != nil {
		t.Fatal(err)
	}
	if got := string(q.take().data); got != "new" {
		t.Errorf("took %q after clearing, want the event pushed since", got)
	}
}
