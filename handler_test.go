package mcpsse

import (
	"net/url"
	"testing"
)

// TestQueryValue: the session ID is read from a query as URL.Query reads
// it, whatever else the query holds.
func TestQueryValue(t *testing.T) {
	for _, q := range []string{
		"sessionId=abc",
		"x=1&sessionId=abc&sessionId=def",
		"sessionId=a%2Fb+c",
		"session%49d=escaped-key",
		"sessionId=bad%zz&sessionId=good",
		"sessionId;x=1&sessionId=after-semicolon",
		"sessionId",
		"sessionId=",
		"&&sessionId=empty-pairs-around&&",
		"other=1",
		"",
	} {
		want := ""
		if v, _ := url.ParseQuery(q); v != nil {
			want = v.Get("sessionId")
		}
		if got := queryValue(q, "sessionId"); got != want {
			t.Errorf("queryValue(%q) = %q, want %q as URL.Query has it", q, got, want)
		}
	}
}
