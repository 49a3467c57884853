package mcpsse

import (
	"sync"
	"time"
)

// workerIdle is how long a worker waits for its next function before it
// ends.
const workerIdle = 5 * time.Second

// workers runs functions on goroutines that, once one returns, wait up to
// workerIdle for the next instead of ending. A message's relay grows its
// goroutine's stack to about 16 KiB on its way through the upstream
// exchange, and a goroutine started for each message paid for that growth
// each time (copying stacks was 4-6 % of Caddy's CPU per relayed call); a
// worker has grown already. Idle sessions keep none: the workers of a
// quiet store have ended.
type workers struct {
	tasks chan func() // unbuffered: a send goes only to a waiting worker
	quit  chan struct{}
	once  sync.Once
}

func newWorkers() *workers {
	return &workers{tasks: make(chan func()), quit: make(chan struct{})}
}

// run runs f on a waiting worker, or on a new one if none is waiting.
func (w *workers) run(f func()) {
	select {
	case w.tasks <- f:
	default:
		go w.work(f)
	}
}

func (w *workers) work(f func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(workerIdle)
		select {
		case f = <-w.tasks:
		case <-idle.C:
			return
		case <-w.quit:
			return
		}
	}
}

// stop ends the waiting workers, and the others once their functions
// return.
func (w *workers) stop() {
	w.once.Do(func() { close(w.quit) })
}
