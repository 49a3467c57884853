package main

import (
	"context"
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestClusterStatelessUpstream runs the Go SDK's legacy client through the
// load balancer in front of a server that speaks revision 2026-07-28: the
// client's answers to the input requests of a call reach the instance that
// made the call, whichever instance takes their POSTs; the log level it
// set on one instance holds for its calls on the others; and a resource it
// subscribed to on any instance sends its updates to its stream; and its
// cancellation of a call reaches the instance that runs it.
func TestClusterStatelessUpstream(t *testing.T) {
	up := startStatelessGoServer(t)
	c := startCluster(t, up.url, 3, "")

	tally := &instanceTally{}
	logs := make(chan string, 8)
	updated := make(chan struct{}, 1)
	cs := connect(t, c.url("/sse"), &mcp.ClientOptions{
		CreateMessageHandler: answerSampling,
		ElicitationHandler:   answerElicitation,
		ResourceUpdatedHandler: func(context.Context, *mcp.ResourceUpdatedNotificationRequest) {
			select {
			case updated <- struct{}{}:
			default:
			}
		},
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			logs <- req.Params.Data.(string)
		},
	}, &http.Client{Transport: tally})
	ctx := bounded(t)
	if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Fatalf("setting the log level: %v", err)
	}
	for i := range 3 {
		if got, err := callText(ctx, cs, "sample", map[string]any{}); err != nil || got != "sampled: sampled: Say hello" {
			t.Errorf("sample %d: %q, %v", i, got, err)
		}
		if got, err := callText(ctx, cs, "elicit", map[string]any{}); err != nil || got != `{"action":"accept","content":{"age":42,"name":"interop"}}` {
			t.Errorf("elicit %d: %q, %v", i, got, err)
		}
		if got, err := callText(ctx, cs, "log", map[string]any{}); err != nil || got != "logged" {
			t.Errorf("log %d: %q, %v", i, got, err)
		}
	}
	// Subscribed three times over, from whichever instances the POSTs
	// reach: each time the updates come to the stream.
	for i := range 3 {
		if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "interop://greeting"}); err != nil {
			t.Fatalf("subscribe %d: %v", i, err)
		}
		for len(updated) > 0 {
			<-updated // one that came before this subscription
		}
		select {
		case <-updated:
		case <-ctx.Done():
			t.Fatalf("subscribe %d: no notifications/resources/updated", i)
		}
		if err := cs.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: "interop://greeting"}); err != nil {
			t.Fatalf("unsubscribe %d: %v", i, err)
		}
	}
	// The balancer sends the cancellation to another instance than the
	// call's.
	checkCancel(t, ctx, cs, up)
	posts, _, _ := tally.tally()
	if len(posts) < 2 {
		t.Errorf("POSTs by instance %v: want them spread over the instances", posts)
	}
	// Log messages come on the client's stream after the calls' results.
	for i := range 3 {
		select {
		case got := <-logs:
			if got != "hello from the log tool" {
				t.Errorf("log message %d: %q", i, got)
			}
		case <-ctx.Done():
			t.Fatalf("%d log messages, want one for each of the 3 calls", i)
		}
	}
}
