package main

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestReadEvents: the generator reads events as MCP clients do, whatever
// their line ends, with data over several lines, comments and a line
// longer than its buffer.
func TestReadEvents(t *testing.T) {
	long := strings.Repeat("x", 3000)
	stream := "event: endpoint\r\ndata: /message?sessionId=1\r\n\r\n" +
		": ping\n\n" +
		"data: {\"a\":\ndata: 1}\n\n" +
		"event: message\ndata: " + long + "\n\n"
	type event struct{ name, data string }
	var got []event
	err := readEvents(bufio.NewReaderSize(strings.NewReader(stream), 1024), func(name string, data []byte) {
		got = append(got, event{name, string(data)})
	})
	if !errors.Is(err, io.EOF) {
		t.Errorf("readEvents ended with %v, want EOF", err)
	}
	want := []event{{"endpoint", "/message?sessionId=1"}, {"message", "{\"a\":\n1}"}, {"message", long}}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %.40q, want %.40q", i, got[i], want[i])
		}
	}
}

// TestParseAnswer tells responses, with or without an error, from the
// server's own requests and notifications.
func TestParseAnswer(t *testing.T) {
	for _, tc := range []struct {
		data   string
		want   answer
		answer bool
	}{
		{`{"jsonrpc":"2.0","id":7,"result":{}}`, answer{id: 7}, true},
		{`{"jsonrpc":"2.0","id":8,"error":{"code":-32603,"message":"upstream down"}}`, answer{id: 8, error: "upstream down"}, true},
		{`{"jsonrpc":"2.0","id":9,"error":{"code":-32603}}`, answer{id: 9, error: "error without a message"}, true},
		{`{"jsonrpc":"2.0","id":1,"method":"roots/list"}`, answer{}, false},
		{`{"jsonrpc":"2.0","method":"notifications/progress","params":{}}`, answer{}, false},
		{`not json`, answer{}, false},
	} {
		got, ok := parseAnswer([]byte(tc.data))
		if ok != tc.answer || got != tc.want {
			t.Errorf("parseAnswer(%s) = %+v, %v; want %+v, %v", tc.data, got, ok, tc.want, tc.answer)
		}
	}
}
