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
		{"bench_hold {\n\tping_phase stream\n}", 0, false},
		{"bench_hold {\n\tping_phase connection\n}", 0, false},
		{"bench_hold {\n\tping_phase sometimes\n}", 0, true},
		{"bench_hold {\n\tping_phase\n}", 0, true},
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

// TestPingPhase: ping_phase sets what a stream's ping phase follows, and
// Validate refuses a phase it does not know, as a JSON config could give.
func TestPingPhase(t *testing.T) {
	var h Hold
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("bench_hold {\n\tping_phase stream\n}")); err != nil {
		t.Fatal(err)
	}
	if h.PingPhase != phaseStream {
		t.Errorf("ping_phase %q, want %q", h.PingPhase, phaseStream)
	}
	for phase, valid := range map[string]bool{phaseConnection: true, phaseStream: true, "sometimes": false} {
		h := Hold{PingInterval: caddy.Duration(time.Second), PingPhase: phase}
		if err := h.Validate(); (err == nil) != valid {
			t.Errorf("ping_phase %q: Validate gave %v", phase, err)
		}
	}
}
