package mcpsse

import (
	"slices"
	"testing"
)

// TestReplayKeepsTheLastEvents checks what a session keeps for a replay:
// the last queue_size events, and no more than maxReplayBytes of them.
func TestReplayKeepsTheLastEvents(t *testing.T) {
	t.Parallel()
	s := &session{}
	const queueSize = 3
	for seq := uint64(1); seq <= 5; seq++ {
		s.recordSent(seq, []byte("{}"), queueSize)
	}
	var kept []uint64
	for _, ev := range s.sentAfter(3) {
		kept = append(kept, ev.seq)
	}
	if !slices.Equal(kept, []uint64{4, 5}) {
		t.Errorf("after 3 it keeps %v, want [4 5]", kept)
	}
	s.recordSent(6, make([]byte, maxReplayBytes-1), queueSize)
	s.recordSent(7, []byte("{}"), queueSize)
	if got := s.sentAfter(0); len(got) != 1 || got[0].seq != 7 {
		t.Errorf("over the byte bound it keeps %d events, want only the last", len(got))
	}
}
