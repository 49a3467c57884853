package mcpsse

import (
	"context"
	"sync"
)

// eventQueue holds a session's events on their way to its stream, in
// order. At most the handler's queue_size of them wait: whoever adds to a
// full queue waits for room, and nothing is dropped. An empty queue holds
// no buffer, so that an idle session pays only for the queue's signal.
type eventQueue struct {
	mu    sync.Mutex
	items []event
	// ready holds a token while items may hold an event: the stream
	// selects on it.
	ready chan struct{}
	// room, made by the first to wait for room, is closed as the stream
	// takes an event, waking every waiter; nil while none waits.
	room chan struct{}
}

func newEventQueue() eventQueue {
	return eventQueue{ready: make(chan struct{}, 1)}
}

// push adds ev to a queue of at most size events, waiting while it is
// full until ctx ends.
func (q *eventQueue) push(ctx context.Context, ev event, size int) error {
	for {
		room := q.tryPush(ev, size)
		if room == nil {
			return nil
		}
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// tryPush adds ev to a queue of at most size events unless it is full,
// and then returns the channel that tells when there is room.
func (q *eventQueue) tryPush(ev event, size int) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) >= size {
		if q.room == nil {
			q.room = make(chan struct{})
		}
		return q.room
	}
	q.items = append(q.items, ev)
	signal(q.ready)
	return nil
}

// pop takes the first event, if there is one.
func (q *eventQueue) pop() (event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return event{}, false
	}
	ev := q.items[0]
	if n := copy(q.items, q.items[1:]); n > 0 {
		q.items[n] = event{}
		q.items = q.items[:n]
		signal(q.ready)
	} else {
		q.items = nil
	}
	q.wakeWaiters()
	return ev, true
}

// clear drops every queued event.
func (q *eventQueue) clear() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = nil
	q.wakeWaiters()
}

// len returns how many events are queued.
func (q *eventQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// wakeWaiters wakes those waiting for room. Callers hold q.mu.
func (q *eventQueue) wakeWaiters() {
	if q.room != nil {
		close(q.room)
		q.room = nil
	}
}

// signal leaves a token in c, a channel of one, unless one is there.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
