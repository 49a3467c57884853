package mcpsse

import (
	"math"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mcp_sse [<matcher>] {
//		name          <name>
//		upstream      <url>
//		prefix        <path>
//		ping_interval    <duration>
//		max_lifetime     <duration>
//		resume_window    <duration>|off
//		max_message_size <size>
//		max_sessions     <n>
//		max_in_flight    <n>
//		allowed_origins  <origin...>
//		send_timeout     <duration>
//		queue_size       <n>
//		upstream_timeout <duration>
//		upstream_stream  on|off
//		upstream_protocol auto|2026-07-28|2025-11-25
//		public_url       <url>
//		cluster redis {
//			url        <redis url>
//			key_prefix <prefix>
//		}
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
	durations := map[string]*caddy.Duration{
		"ping_interval":    &h.PingInterval,
		"max_lifetime":     &h.MaxLifetime,
		"send_timeout":     &h.SendTimeout,
		"upstream_timeout": &h.UpstreamTimeout,
	}
	seen := make(map[string]bool)
	for d.NextBlock(0) {
		name := d.Val()
		if seen[name] {
			return d.Errf("subdirective %s given more than once", name)
		}
		seen[name] = true
		switch name {
		case "name":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Name = d.Val()
		case "upstream":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if _, err := parseUpstream(d.Val()); err != nil {
				return d.Err(err.Error())
			}
			h.Upstream = d.Val()
		case "public_url":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if _, err := parseHTTPURL("public_url", d.Val()); err != nil {
				return d.Err(err.Error())
			}
			h.PublicURL = d.Val()
		case "prefix":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if err := checkPrefix(d.Val()); err != nil {
				return d.Err(err.Error())
			}
			h.Prefix = d.Val()
		case "ping_interval", "max_lifetime", "send_timeout", "upstream_timeout":
			// Only max_lifetime has a meaning for zero: no limit.
			dur, err := parseDuration(d, name == "max_lifetime")
			if err != nil {
				return err
			}
			*durations[name] = dur
		case "resume_window":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if d.Val() == "off" {
				h.ResumeWindow = -1
				break
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("resume_window: %q is neither off nor a positive duration", d.Val())
			}
			h.ResumeWindow = caddy.Duration(dur)
		case "upstream_stream":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch d.Val() {
			case "on":
				h.DisableUpstreamStream = false
			case "off":
				h.DisableUpstreamStream = true
			default:
				return d.Errf("upstream_stream: %q is neither on nor off", d.Val())
			}
		case "upstream_protocol":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch d.Val() {
			case upstreamProtocolAuto, upstreamProtocolStateless, upstreamProtocolSession:
				h.UpstreamProtocol = d.Val()
			default:
				return d.Errf("upstream_protocol: %q is none of %s, %s, %s",
					d.Val(), upstreamProtocolAuto, upstreamProtocolStateless, upstreamProtocolSession)
			}
		case "max_message_size":
			if !d.NextArg() {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(d.Val())
			if err != nil || size == 0 || size > math.MaxInt64 {
				return d.Errf("max_message_size: bad size %q", d.Val())
			}
			h.MaxMessageSize = int64(size)
		case "max_sessions":
			n, err := parseCount(d, true)
			if err != nil {
				return err
			}
			h.MaxSessions = n
		case "max_in_flight":
			n, err := parseCount(d, false)
			if err != nil {
				return err
			}
			h.MaxInFlight = n
		case "queue_size":
			n, err := parseCount(d, false)
			if err != nil {
				return err
			}
			h.QueueSize = n
		case "cluster":
			c, err := parseCluster(d)
			if err != nil {
				return err
			}
			h.Cluster = c
		case "allowed_origins":
			origins := d.RemainingArgs()
			if len(origins) == 0 {
				return d.ArgErr()
			}
			for _, o := range origins {
				if err := checkOrigin(o); err != nil {
					return d.Err(err.Error())
				}
			}
			h.AllowedOrigins = origins
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

// parseCluster reads the cluster subdirective: its backend, redis, and
// that backend's block.
func parseCluster(d *caddyfile.Dispenser) (*Cluster, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	if d.Val() != "redis" {
		return nil, d.Errf("cluster: unknown backend %q, want redis", d.Val())
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	r := new(RedisCluster)
	block := caddyfile.NewDispenser([]caddyfile.Token{d.Token()})
	block.Next()
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return nil, d.Errf("cluster redis: %s given more than once", name)
		}
		seen[name] = true
		if !d.NextArg() {
			return nil, d.ArgErr()
		}
		switch name {
		case "url":
			r.URL = d.Val()
		case "key_prefix":
			r.KeyPrefix = d.Val()
		default:
			return nil, d.Errf("cluster redis: unknown subdirective %q", name)
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	c := &Cluster{Redis: r}
	if _, err := c.spec(); err != nil {
		return nil, block.Err(err.Error())
	}
	return c, nil
}

// parseCount reads a subdirective's one whole-number argument, which must
// be positive, or zero where zeroOK.
func parseCount(d *caddyfile.Dispenser, zeroOK bool) (int, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(d.Val())
	if err != nil || n < 0 || (n == 0 && !zeroOK) {
		return 0, d.Errf("%s: %q is not a positive whole number", name, d.Val())
	}
	return n, nil
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
