package mcpsse

import (
	"flag"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestUnmarshalCaddyfile(t *testing.T) {
	t.Setenv("MCP_SSE_TEST_REDIS", "redis://127.0.0.1:6379/0")
	tests := []struct {
		name  string
		input string
		want  Handler
		err   string // substring of the error
		line  int    // the line the error names
	}{
		{
			name:  "resume_window off",
			input: "mcp_sse {\n\tupstream http://127.0.0.1:8081/mcp\n\tresume_window off\n}",
			want:  Handler{Upstream: "http://127.0.0.1:8081/mcp", ResumeWindow: -1},
		},
		{
			name:  "resume_window zero",
			input: "mcp_sse {\n\tupstream http://127.0.0.1:8081/mcp\n\tresume_window 0s\n}",
			err:   "neither off nor a positive duration",
			line:  3,
		},
		{
			name:  "upstream only",
			input: "mcp_sse {\n\tupstream http://127.0.0.1:8081/mcp\n}",
			want:  Handler{Upstream: "http://127.0.0.1:8081/mcp"},
		},
		{
			name: "every subdirective",
			input: `mcp_sse {
				name          tenant-a
				upstream      https://mcp.example.com/mcp
				prefix        /api
				ping_interval 5s
				max_lifetime  1h
				resume_window 30s
				max_message_size 1MiB
				max_sessions 100
				max_in_flight 8
				allowed_origins https://app.example.com http://localhost:3000
				send_timeout 3s
				queue_size 8
				upstream_timeout 1m
				upstream_stream off
				upstream_protocol 2026-07-28
				public_url https://mcp.example.com/api/sse
			}`,
			want: Handler{
				Name:            "tenant-a",
				Upstream:        "https://mcp.example.com/mcp",
				Prefix:          "/api",
				PingInterval:    caddy.Duration(5 * time.Second),
				MaxLifetime:     caddy.Duration(time.Hour),
				ResumeWindow:    caddy.Duration(30 * time.Second),
				MaxMessageSize:  1 << 20,
				MaxSessions:     100,
				MaxInFlight:     8,
				AllowedOrigins:  []string{"https://app.example.com", "http://localhost:3000"},
				SendTimeout:     caddy.Duration(3 * time.Second),
				QueueSize:       8,
				UpstreamTimeout: caddy.Duration(time.Minute),

				DisableUpstreamStream: true,
				UpstreamProtocol:      "2026-07-28",
				PublicURL:             "https://mcp.example.com/api/sse",
			},
		},
		{
			name:  "cluster",
			input: "mcp_sse {\n upstream http://a/mcp\n cluster redis {\n  url rediss://gw:secret@redis.internal:6380/2\n  key_prefix edge\n }\n}",
			want: Handler{Upstream: "http://a/mcp", Cluster: &Cluster{Redis: &RedisCluster{
				URL: "rediss://gw:secret@redis.internal:6380/2", KeyPrefix: "edge",
			}}},
		},
		{
			name:  "cluster url from the environment",
			input: "mcp_sse {\n upstream http://a/mcp\n cluster redis {\n  url {env.MCP_SSE_TEST_REDIS}\n }\n}",
			want:  Handler{Upstream: "http://a/mcp", Cluster: &Cluster{Redis: &RedisCluster{URL: "{env.MCP_SSE_TEST_REDIS}"}}},
		},
		{
			name:  "max_lifetime zero means no limit",
			input: "mcp_sse {\n upstream http://a/mcp\n max_lifetime 0\n}",
			want:  Handler{Upstream: "http://a/mcp"},
		},
		{name: "no upstream", input: "mcp_sse {\n prefix /x\n}", err: "upstream is required", line: 1},
		{name: "empty block", input: "\nmcp_sse", err: "upstream is required", line: 2},
		{name: "argument on directive", input: "mcp_sse http://a {\n upstream http://a\n}", err: "wrong argument count", line: 1},
		{name: "unknown subdirective", input: "mcp_sse {\n upstream http://a\n ping 5s\n}", err: `unknown subdirective "ping"`, line: 3},
		{name: "repeated subdirective", input: "mcp_sse {\n upstream http://a\n upstream http://b\n}", err: "subdirective upstream given more than once", line: 3},
		{name: "upstream not http", input: "mcp_sse {\n upstream ftp://a/mcp\n}", err: "upstream \"ftp://a/mcp\": scheme must be http or https", line: 2},
		{name: "upstream relative", input: "mcp_sse {\n upstream /mcp\n}", err: "upstream \"/mcp\": scheme must be http or https", line: 2},
		{name: "upstream without host", input: "mcp_sse {\n upstream http:///mcp\n}", err: "upstream \"http:///mcp\": missing host", line: 2},
		{name: "public_url relative", input: "mcp_sse {\n upstream http://a\n public_url /sse\n}", err: "public_url \"/sse\": scheme must be http or https", line: 3},
		{name: "upstream missing value", input: "mcp_sse {\n upstream\n}", err: "wrong argument count", line: 2},
		{name: "upstream two values", input: "mcp_sse {\n upstream http://a http://b\n}", err: "wrong argument count", line: 2},
		{name: "prefix without slash", input: "mcp_sse {\n upstream http://a\n prefix api\n}", err: "prefix \"api\" must start with a slash", line: 3},
		{name: "prefix with trailing slash", input: "mcp_sse {\n upstream http://a\n prefix /api/\n}", err: "must start with a slash and not end with one", line: 3},
		{name: "bad duration", input: "mcp_sse {\n upstream http://a\n ping_interval soon\n}", err: `ping_interval: bad duration "soon"`, line: 3},
		{name: "zero ping interval", input: "mcp_sse {\n upstream http://a\n ping_interval 0s\n}", err: `ping_interval: duration "0s" must be positive`, line: 3},
		{name: "negative lifetime", input: "mcp_sse {\n upstream http://a\n max_lifetime -1s\n}", err: `max_lifetime: duration "-1s" must not be negative`, line: 3},
		{name: "bad size", input: "mcp_sse {\n upstream http://a\n max_message_size lots\n}", err: `max_message_size: bad size "lots"`, line: 3},
		{name: "zero queue", input: "mcp_sse {\n upstream http://a\n queue_size 0\n}", err: `queue_size: "0" is not a positive whole number`, line: 3},
		{name: "zero in flight", input: "mcp_sse {\n upstream http://a\n max_in_flight 0\n}", err: `max_in_flight: "0" is not a positive whole number`, line: 3},
		{name: "name missing", input: "mcp_sse {\n name\n upstream http://a\n}", err: "wrong argument count", line: 2},
		{name: "negative sessions", input: "mcp_sse {\n upstream http://a\n max_sessions -1\n}", err: `max_sessions: "-1" is not a positive whole number`, line: 3},
		{name: "origin with path", input: "mcp_sse {\n upstream http://a\n allowed_origins https://a.example/x\n}", err: `allowed origin "https://a.example/x" must be scheme://host[:port]`, line: 3},
		{name: "no origins", input: "mcp_sse {\n upstream http://a\n allowed_origins\n}", err: "wrong argument count", line: 3},
		{name: "zero upstream timeout", input: "mcp_sse {\n upstream http://a\n upstream_timeout 0\n}", err: `upstream_timeout: duration "0" must be positive`, line: 3},
		{name: "upstream_protocol unknown", input: "mcp_sse {\n upstream http://a\n upstream_protocol 2025-06-18\n}", err: `upstream_protocol: "2025-06-18" is none of auto, 2026-07-28, 2025-11-25`, line: 3},
		{name: "upstream_stream neither", input: "mcp_sse {\n upstream http://a\n upstream_stream maybe\n}", err: `upstream_stream: "maybe" is neither on nor off`, line: 3},
		{name: "cluster without backend", input: "mcp_sse {\n upstream http://a\n cluster\n}", err: "wrong argument count", line: 3},
		{name: "cluster unknown backend", input: "mcp_sse {\n upstream http://a\n cluster etcd {\n }\n}", err: `cluster: unknown backend "etcd", want redis`, line: 3},
		{name: "cluster without url", input: "mcp_sse {\n upstream http://a\n cluster redis {\n  key_prefix x\n }\n}", err: "cluster redis: url is required", line: 3},
		{name: "cluster bad url", input: "mcp_sse {\n upstream http://a\n cluster redis {\n  url http://r:secret@redis\n }\n}", err: "cluster redis: url http://r:xxxxx@redis", line: 3},
		{name: "cluster unknown setting", input: "mcp_sse {\n upstream http://a\n cluster redis {\n  url redis://r\n  pool 5\n }\n}", err: `cluster redis: unknown subdirective "pool"`, line: 5},
		{name: "cluster repeated setting", input: "mcp_sse {\n upstream http://a\n cluster redis {\n  url redis://r\n  url redis://s\n }\n}", err: "cluster redis: url given more than once", line: 5},
		{name: "duration missing", input: "mcp_sse {\n upstream http://a\n max_lifetime\n}", err: "wrong argument count", line: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				where := fmt.Sprintf("Testfile:%d", tc.line)
				if err == nil || !strings.Contains(err.Error(), tc.err) || (tc.line > 0 && !strings.Contains(err.Error(), where)) {
					t.Fatalf("error %v, want one containing %q at %s", err, tc.err, where)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h, tc.want) {
				t.Errorf("got %+v, want %+v", h, tc.want)
			}
		})
	}
}

// TestAdaptErrorNamesLine checks that a bad subdirective fails `caddy adapt`
// with the file and line, not at the first request.
func TestAdaptErrorNamesLine(t *testing.T) {
	t.Parallel()
	input := "http://127.0.0.1:9080 {\n\tmcp_sse {\n\t\tupstream http://127.0.0.1:1/mcp\n\t\tping_interval often\n\t}\n}\n"
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:4") {
		t.Errorf("adapt error %v, want one naming Caddyfile:4", err)
	}
}
