package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestWhatFollowsTheResponseIsRelayed: a message the upstream sends on a
// call's answer stream after the response reaches the client too.
func TestWhatFollowsTheResponseIsRelayed(t *testing.T) {
	up := newTestUpstream(t)
	up.answerCalls("and_then", func(w http.ResponseWriter, r *http.Request) {
		var id string
		if _, rest, ok := strings.Cut(string(peekBody(r)), `"id":`); ok {
			id, _, _ = strings.Cut(rest, ",")
		}
		w.Header().Set("Content-Type", "text/event-stream")
		// One write: the response and what follows come in one read.
		fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[]}}\n\n"+
			"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"after\"}}\n\n", id)
	})
	loadCaddyfile(t, gatewaySite(up.URL, ""))
	s := openInitializedStream(t)

	s.post(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"and_then","arguments":{}}}`)
	if m := nextJSON(t, s); m["id"] != 2.0 {
		t.Fatalf("want the call's response, got %v", m)
	}
	// The notification comes next; if it was dropped, the stream is cut
	// at the test's bound. (A ping posted now as a barrier could have its
	// answer relayed first: its relay runs beside the one that has the
	// notification still to push, and a busy machine may pause that one
	// for the ping's whole round trip.)
	stop := context.AfterFunc(bounded(t), func() { s.resp.Body.Close() })
	defer stop()
	if m := nextJSON(t, s); m["method"] != "notifications/message" {
		t.Fatalf("want the notification that followed the response, got %v", m)
	}
	s.post(t, `{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	if m := nextJSON(t, s); m["id"] != 3.0 {
		t.Fatalf("want the ping's response, got %v", m)
	}
}
