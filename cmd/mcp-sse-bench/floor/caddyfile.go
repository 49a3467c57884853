package floor

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Hold)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	bench_hold [<matcher>] {
//		ping_interval <duration>
//		ping_phase connection|stream
//	}
//
// A repeated or unknown subdirective is an error: a benchmark that ran
// with a misspelled setting's default would measure something else.
func (h *Hold) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for d.NextBlock(0) {
		name := d.Val()
		if seen[name] {
			return d.Errf("subdirective %s given more than once", name)
		}
		seen[name] = true
		switch name {
		case "ping_interval":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("ping_interval: %v", err)
			}
			h.PingInterval = caddy.Duration(dur)
			if d.NextArg() {
				return d.ArgErr()
			}
		case "ping_phase":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.PingPhase = d.Val()
			if err := checkPingPhase(h.PingPhase); err != nil {
				return d.Errf("%v", err)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown subdirective %s", name)
		}
	}
	return nil
}
