package mcpsse

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestPrimingEventIsNoMessage relays an answer stream the way 2025-11-25
// servers with an event store write it (the TypeScript SDK's, the
// reference server's): a priming event with an id, a retry and empty data,
// then the response. The priming event is no message; the response is
// relayed.
func TestPrimingEventIsNoMessage(t *testing.T) {
	t.Parallel()
	store := newSessionStore("", &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, "", &settings{policy: policy{queueSize: 4}, logger: zap.NewNop()}, nil)
	defer store.upstream.close()
	sess := store.newSession("t", "", "", "")
	defer sess.ctx.end()
	ctx := sess.ctx
	const response = `{"jsonrpc":"2.0","id":7,"result":{}}`
	body := "id: 1_0\nretry: 3000\ndata: \n\nid: 1_1\nevent: message\ndata: " + response + "\n\n"
	if err := sess.relayAnswerEvents(ctx, strings.NewReader(body), answerTo{id: json.RawMessage("7")}, store.settings()); err != nil {
		t.Fatalf("relaying a primed answer: %v", err)
	}
	if n := sess.events.len(); n != 1 {
		t.Fatalf("%d messages queued, want the response alone", n)
	}
	if got := string(sess.events.take().data); got != response {
		t.Errorf("queued %s, want %s", got, response)
	}
}
