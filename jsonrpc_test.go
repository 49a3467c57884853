package mcpsse

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestParseMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		body  string
		kinds []messageKind
		code  int // JSON-RPC error code, 0 for success
	}{
		{"request", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, []messageKind{kindRequest}, 0},
		{"string id", `{"jsonrpc":"2.0","id":"x","method":"ping"}`, []messageKind{kindRequest}, 0},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, []messageKind{kindNotification}, 0},
		{"result", `{"jsonrpc":"2.0","id":1,"result":{}}`, []messageKind{kindResponse}, 0},
		{"error response", `{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}`, []messageKind{kindResponse}, 0},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]`, []messageKind{kindRequest, kindNotification}, 0},
		{"malformed", `{"jsonrpc":"2.0",`, nil, codeParseError},
		{"empty body", ``, nil, codeParseError},
		{"number", `42`, nil, codeInvalidRequest},
		{"empty object", `{}`, nil, codeInvalidRequest},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"a"}`, nil, codeInvalidRequest},
		{"empty batch", `[]`, nil, codeInvalidRequest},
		{"bad batch element", `[{"jsonrpc":"2.0","method":"a"},7]`, nil, codeInvalidRequest},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"a"}`, nil, codeInvalidRequest},
		{"result and error", `{"jsonrpc":"2.0","id":1,"result":1,"error":{}}`, nil, codeInvalidRequest},
		{"response without id", `{"jsonrpc":"2.0","result":1}`, nil, codeInvalidRequest},
		{"method not string", `{"jsonrpc":"2.0","method":5}`, nil, codeInvalidRequest},
		{"malformed batch", `[{"jsonrpc":"2.0","method":"a"}`, nil, codeParseError},
		{"malformed string", `"abc`, nil, codeParseError},
		{"trailing bytes", `{"jsonrpc":"2.0","method":"a"} x`, nil, codeParseError},
		{"two values", `{"jsonrpc":"2.0","method":"a"}{"jsonrpc":"2.0","method":"b"}`, nil, codeParseError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := parseMessages([]byte(tc.body))
			if tc.code != 0 {
				var rpcErr *rpcError
				if !errors.As(err, &rpcErr) || rpcErr.code != tc.code {
					t.Fatalf("error %v, want JSON-RPC code %d", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != len(tc.kinds) {
				t.Fatalf("%d messages, want %d", len(msgs), len(tc.kinds))
			}
			for i, m := range msgs {
				if m.kind != tc.kinds[i] {
					t.Errorf("message %d is a %v, want a %v", i, m.kind, tc.kinds[i])
				}
			}
		})
	}
}

// TestParsedIDs checks the id and JSON each message keeps: compact, as
// the upstream and the client get them, whatever space the body had.
func TestParsedIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body, raw, id string
	}{
		{`{"jsonrpc":"2.0","id":7,"method":"a"}`, `{"jsonrpc":"2.0","id":7,"method":"a"}`, `7`},
		{`{ "jsonrpc": "2.0", "id": "x y", "method": "a" }`, `{"jsonrpc":"2.0","id":"x y","method":"a"}`, `"x y"`},
		{"{\n\t\"jsonrpc\":\"2.0\",\"id\" : 1.5e3,\"result\":{}}", `{"jsonrpc":"2.0","id":1.5e3,"result":{}}`, `1.5e3`},
		{`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m"}}`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m"}}`, `null`},
		{`{"jsonrpc":"2.0","id":null,"method":"a"}`, `{"jsonrpc":"2.0","id":null,"method":"a"}`, ``},
		{`{"jsonrpc":"2.0","method":"a"}`, `{"jsonrpc":"2.0","method":"a"}`, ``},
	}
	for _, tc := range tests {
		msgs, err := parseMessages([]byte(tc.body))
		if err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		if m := msgs[0]; string(m.raw) != tc.raw || string(m.id) != tc.id {
			t.Errorf("%s: raw %s, id %q; want %s, %q", tc.body, m.raw, m.id, tc.raw, tc.id)
		}
	}
}

func TestSameID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		same bool
	}{
		{`1`, `1`, true},
		{`1.0`, `1`, true},
		{`1e2`, `100`, true},
		{`"\u0061"`, `"a"`, true},
		{`"1"`, `1`, false},
		{`1`, `2`, false},
		{`"a"`, `"b"`, false},
		{`12345678901234567890`, `12345678901234567891`, false},
	}
	for _, tt := range tests {
		if got := sameID([]byte(tt.a), []byte(tt.b)); got != tt.same {
			t.Errorf("sameID(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
}

// TestIsCompact agrees with json.Compact on what needs compacting.
func TestIsCompact(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`{"a":1}`,
		`{"a": 1}`,
		`{"text":"two words"}`,
		`{"text":"tab\tand\nnewline escaped"}`,
		"{\"a\":\n1}",
		`{"q":"a \"quoted\" word","n":[1,2]}`,
		`{"q":"ends in a backslash\\"} `,
		`["x" ,1]`,
	} {
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(raw)); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		want := compact.String() == raw
		if got := isCompact([]byte(raw)); got != want {
			t.Errorf("isCompact(%s) = %v, want %v", raw, got, want)
		}
	}
}
