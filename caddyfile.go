package mcpsse

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mcp_sse [<matcher>] {
//		upstream      <url>
//		prefix        <path>
//		ping_interval <duration>
//		max_lifetime  <duration>
//	}
//
// Each subdirective may appear once. Unknown subdirectives are errors, not
// ignored: a misspelled setting would otherwise silently run with its
// default at the network edge.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	// Errors that concern the whole directive name its line.
	directive := caddyfile.NewDispenser([]caddyfile.Token{d.Token()})
	directive.Next()
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
		case "upstream":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if _, err := parseUpstream(d.Val()); err != nil {
				return d.Err(err.Error())
			}
			h.Upstream = d.Val()
		case "prefix":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if err := checkPrefix(d.Val()); err != nil {
				return d.Err(err.Error())
			}
			h.Prefix = d.Val()
		case "ping_interval":
			dur, err := parseDuration(d, false)
			if err != nil {
				return err
			}
			h.PingInterval = dur
		case "max_lifetime":
			dur, err := parseDuration(d, true)
			if err != nil {
				return err
			}
			h.MaxLifetime = dur
		default:
			return d.Errf("unknown subdirective %q", name)
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	if h.Upstream == "" {
		return directive.Err("mcp_sse: upstream is required")
	}
	return nil
}

// parseDuration reads a subdirective's one duration argument, which must be
// positive, or zero where zeroOK.
func parseDuration(d *caddyfile.Dispenser, zeroOK bool) (caddy.Duration, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil {
		return 0, d.Errf("%s: bad duration %q: %v", name, d.Val(), err)
	}
	if dur < 0 && zeroOK {
		return 0, d.Errf("%s: duration %q must not be negative", name, d.Val())
	}
	if dur <= 0 && !zeroOK {
		return 0, d.Errf("%s: duration %q must be positive", name, d.Val())
	}
	return caddy.Duration(dur), nil
}
