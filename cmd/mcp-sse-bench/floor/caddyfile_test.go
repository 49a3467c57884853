package floor

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestUnmarshalCaddyfile: bench_hold takes a ping interval, once, and
// nothing else.
func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		input   string
		want    time.Duration
		wantErr bool
	}{
		{"bench_hold", 0, false},
		{"bench_hold {\n\tping_interval 2s\n}", 2 * time.Second, false},
		{"bench_hold {\n\tping_interval 2s\n\tping_interval 3s\n}", 0, true},
		{"bench_hold {\n\tping_interval\n}", 0, true},
		{"bench_hold {\n\tping_interval soon\n}", 0, true},
		{"bench_hold {\n\tping_interval 1s 2s\n}", 0, true},
		{"bench_hold {\n\tping_intervall 2s\n}", 0, true},
		{"bench_hold extra", 0, true},
	} {
		var h Hold
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: error %v, want error %v", tc.input, err, tc.wantErr)
			continue
		}
		if err == nil && h.PingInterval != caddy.Duration(tc.want) {
			t.Errorf("%q: ping_interval %v, want %v", tc.input, time.Duration(h.PingInterval), tc.want)
		}
	}
}
