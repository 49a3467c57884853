package mcpsse

import (
	"context"
	"sync"
)

// eventQueue holds a session's events on their way to its stream, in
// order. At most the handler's queue_size of them wait: whoever adds to a
// full queue waits for room, and nothing is dropped. An empty queue keeps
// a buffer of keptEvents at most, so that an idle session pays little more
// than the queue's signal, and a session that gets one answer at a time
// allocates no buffer per answer.
type eventQueue struct {
	mu    sync.Mutex
	items []event
	// ready holds a token while items may hold an event, or once a
	// newer config went live (see goLive): the stream selects on it.
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
		added, room := q.add(ev, size, true)
		if added {
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
// and reports whether it did.
func (q *eventQueue) tryPush(ev event, size int) bool {
	added, _ := q.add(ev, size, false)
	return added
}

// add adds ev to a queue of at most size events unless it is full; then,
// if wait, it returns the channel that tells when there is room.
func (q *eventQueue) add(ev event, size int, wait bool) (added bool, room <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) < size {
		q.items = append(q.items, ev)
		signal(q.ready)
		return true, nil
	}
	if wait && q.room == nil {
		q.room = make(chan struct{})
	}
	return false, q.room
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
		q.drained()
	}
	q.wakeWaiters()
	return ev, true
}

// clear drops every queued event.
func (q *eventQueue) clear() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.drained()
	q.wakeWaiters()
}

// keptEvents is the largest buffer an empty queue keeps.
const keptEvents = 2

// drained empties the queue, keeping a small buffer. Callers hold q.mu.
func (q *eventQueue) drained() {
	if cap(q.items) > keptEvents {
		q.items = nil
		return
	}
	clear(q.items[:cap(q.items)])
	q.items = q.items[:0]
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
