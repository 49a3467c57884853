package mcpsse

import (
	"net/url"
	"slices"
	"testing"
)

func TestClientChallenge(t *testing.T) {
	t.Parallel()
	const ours = "https://gw.example/.well-known/oauth-protected-resource/sse"
	tests := []struct {
		name, upstream, want string
	}{
		{"the Go SDK's, metadata replaced",
			`Bearer resource_metadata="http://10.0.0.5:3000/.well-known/oauth-protected-resource/mcp", scope="read write"`,
			`Bearer resource_metadata="` + ours + `", scope="read write"`},
		{"step-up parameters kept, tokens quoted",
			`Bearer error=insufficient_scope, scope="files:write", error_description="needs \"files:write\""`,
			`Bearer resource_metadata="` + ours + `", error="insufficient_scope", scope="files:write", error_description="needs \"files:write\""`},
		{"Bearer after another scheme",
			`Basic realm="x", Bearer realm="mcp", error="invalid_token"`,
			`Bearer resource_metadata="` + ours + `", realm="mcp", error="invalid_token"`},
		{"no challenge at all", ``, `Bearer resource_metadata="` + ours + `"`},
		{"a scheme after Bearer is not its parameter",
			`Bearer scope="a", DPoP algs="ES256"`,
			`Bearer resource_metadata="` + ours + `", scope="a"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := clientChallenge(tc.upstream, ours); got != tc.want {
				t.Errorf("for %s\ngot  %s\nwant %s", tc.upstream, got, tc.want)
			}
		})
	}
}

func TestMetadataLocations(t *testing.T) {
	t.Parallel()
	up, _ := url.Parse("http://10.0.0.5:3000/mcp")
	got := metadataLocations(up, `Bearer resource_metadata="http://10.0.0.5:3000/meta", scope="x"`)
	want := []string{
		"http://10.0.0.5:3000/meta",
		"http://10.0.0.5:3000/.well-known/oauth-protected-resource/mcp",
		"http://10.0.0.5:3000/.well-known/oauth-protected-resource",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// Metadata named on another origin is not fetched: it may be the
	// gateway's own URL, or anyone's.
	got = metadataLocations(up, `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"`)
	if slices.Contains(got, "https://mcp.example.com/.well-known/oauth-protected-resource") {
		t.Errorf("got %q, which fetches from another origin", got)
	}
}

func TestMetadataURL(t *testing.T) {
	t.Parallel()
	if got, want := metadataURL("https://gw.example/tenant/api/sse"), "https://gw.example/.well-known/oauth-protected-resource/tenant/api/sse"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
