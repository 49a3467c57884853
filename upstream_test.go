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

func TestKeptHeader(t *testing.T) {
	in := http.Header{
		"Connection":     {"keep-alive, x-hop", "X-Other"},
		"X-Hop":          {"named by Connection"},
		"X-Other":        {"named by Connection"},
		"Content-Type":   {"application/json"},
		"Authorization":  {"Bearer a"},
		"X-Custom":       {"one", "two"},
		"Mcp-Session-Id": {"the client's"},
	}
	h := keptHeader(in)
	want := http.Header{"Authorization": {"Bearer a"}, "X-Custom": {"one", "two"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("kept %v, want %v", h, want)
	}
	// Each name's values end where the next name's begin, whatever the
	// order the map gave them in: an Add to one touches no other.
	for range 20 {
		h := keptHeader(in)
		h.Add("X-Custom", "three")
		h.Add("Authorization", "Bearer b")
		want := http.Header{"Authorization": {"Bearer a", "Bearer b"}, "X-Custom": {"one", "two", "three"}}
		if !reflect.DeepEqual(h, want) {
			t.Fatalf("after two Adds, %v, want %v", h, want)
		}
	}
	if got := in["X-Custom"]; len(got) != 2 || len(in["Authorization"]) != 1 {
		t.Errorf("a change to the copy reached the request's headers: %v", in)
	}
}
