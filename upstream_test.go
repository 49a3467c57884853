package mcpsse

import (
	"net/http"
	"reflect"
	"testing"
)

// TestHeaderList checks that a session's kept headers give back the fields
// they were made of, several values of a name in their order, and the
// client's credential.
func TestHeaderList(t *testing.T) {
	t.Parallel()
	h := http.Header{
		"Authorization":   {"Bearer t0ken"},
		"X-Forwarded-For": {"192.0.2.1"},
		"X-Custom":        {"one", "two", "three"},
	}
	l := listHeader(h)
	if got := l.header(); !reflect.DeepEqual(got, h) {
		t.Errorf("header() = %v, want %v", got, h)
	}
	if got := l.credential(); got != "Bearer t0ken" {
		t.Errorf("credential() = %q, want the Authorization value", got)
	}

	none := listHeader(http.Header{})
	if none != nil || none.credential() != "" {
		t.Errorf("headers of no fields = %v, credential %q", none, none.credential())
	}
	// A request's header is set on: it must be a map even with no fields.
	none.header().Set("Mcp-Session-Id", "s")
}
