package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// reframe makes the upstream answer as its MCP server does, but with every
// event's JSON pretty-printed over several data lines, CRLF line ends, and
// U+2028 and U+2029 unescaped: valid SSE and JSON that a relay which copies
// lines or bytes would pass on broken.
func (u *testUpstream) reframe() {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		u.handler.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") {
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		for block := range strings.SplitSeq(rec.Body.String(), "\n\n") {
			var data strings.Builder
			for line := range strings.Lines(block) {
				if d, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "data: "); ok {
					data.WriteString(d)
				}
			}
			if data.Len() == 0 {
				continue
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, []byte(data.String()), "", "  "); err != nil {
				panic(err)
			}
			text := strings.NewReplacer(`\u2028`, "\u2028", `\u2029`, "\u2029").Replace(pretty.String())
			_, _ = w.Write([]byte("event: message\r\n"))
			for line := range strings.Lines(text) {
				_, _ = w.Write([]byte("data: " + strings.TrimSuffix(line, "\n") + "\r\n"))
			}
			_, _ = w.Write([]byte("\r\n"))
		}
	})
	u.posts.Store(&h)
}

// awkwardText holds what breaks careless SSE framing.
const awkwardText = "cr\r lf\n crlf\r\n ls\u2028 ps\u2029 an event inside\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":9}\n\n: and a comment"

// TestFramingSurvivesAwkwardUpstreams relays what an upstream may send as
// valid SSE and JSON, awkward characters and 8 MiB results included: the
// client reads each message as the same message, in one event of one line.
func TestFramingSurvivesAwkwardUpstreams(t *testing.T) {
	up := newTestUpstream(t)
	up.reframe()
	type repeatArgs struct {
		Text  string `json:"text"`
		Times int    `json:"times"`
	}
	mcp.AddTool(up.server, &mcp.Tool{Name: "repeat", Description: "Returns text repeated."},
		func(_ context.Context, _ *mcp.CallToolRequest, in repeatArgs) (*mcp.CallToolResult, any, error) {
			text := strings.Repeat(in.Text, in.Times)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
		})
	loadCaddyfile(t, gatewaySite(up.URL, ""))

	t.Run("on the wire", func(t *testing.T) {
		stream := openRaw(t, nil, gatewayURL+"/sse", nil)
		if err := stream.initialize(http.DefaultClient, gatewayURL); err != nil {
			t.Fatal(err)
		}
		args, _ := json.Marshal(map[string]string{"text": awkwardText})
		stream.post(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":`+string(args)+`}}`)
		ev, err := stream.nextMessage()
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.lines) != 3 || !strings.HasPrefix(ev.lines[2], "data: {") {
			t.Errorf("event lines %q, want id, event and one data line", ev.lines)
		}
		if bytes.ContainsAny(ev.data, "\r\u2028\u2029") {
			t.Errorf("event data %q holds a raw line break", ev.data)
		}
		var m struct {
			ID     int `json:"id"`
			Result struct {
				Content []struct{ Text string } `json:"content"`
			} `json:"result"`
		}
		if err := json.Unmarshal(ev.data, &m); err != nil || m.ID != 2 || len(m.Result.Content) != 1 || m.Result.Content[0].Text != awkwardText {
			t.Errorf("event data %q (%v), want the echo of the awkward text as the response to 2", ev.data, err)
		}
	})

	t.Run("through the Go SDK", func(t *testing.T) {
		cs := connect(t, gatewayURL+"/sse", nil, nil)
		got, err := callText(bounded(t), cs, "echo", map[string]any{"text": awkwardText})
		if err != nil || got != awkwardText {
			t.Errorf("echo: got %q, %v; want %q", got, err, awkwardText)
		}
		times := 8<<20/len(awkwardText) + 1
		got, err = callText(bounded(t), cs, "repeat", map[string]any{"text": awkwardText, "times": times})
		if want := strings.Repeat(awkwardText, times); err != nil || got != want {
			t.Errorf("a result of %d bytes: got %d bytes, %v", len(want), len(got), err)
		}
	})
}

// TestResponseIDsMatchByValue sends a request whose id the Go SDK upstream
// writes back in another form (1.0 as 1): the client gets the response,
// and no error after it for a response that never came.
func TestResponseIDsMatchByValue(t *testing.T) {
	up := newTestUpstream(t)
	loadCaddyfile(t, gatewaySite(up.URL, "ping_interval 100ms"))
	stream := openRaw(t, nil, gatewayURL+"/sse", nil)
	if err := stream.initialize(http.DefaultClient, gatewayURL); err != nil {
		t.Fatal(err)
	}
	stream.post(t, `{"jsonrpc":"2.0","id":7.0,"method":"ping"}`)
	answer, before := stream.awaitAnswer(t, "7")
	if answer.Error != nil || len(before) != 0 {
		t.Errorf("answer %+v after %v, want the ping's result", answer, before)
	}
	ev, err := stream.next()
	if err != nil || ev.comment != "ping" {
		t.Errorf("after the answer came %q, %v; want only pings", ev.data, err)
	}
}
