package mcpsse

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

// stores holds one sessionStore per handler identity across config
// reloads: the new config takes its reference before the old config
// releases its own, so sessions outlive a reload that keeps the handler,
// and end when one removes it. A store holds state only (sessions, the
// upstream's connections); every setting stays on its handler.
var stores = caddy.NewUsagePool()

// storeKey identifies a handler across configs: by its name, and by its
// upstream, where its upstream sessions live, its prefix, on which the
// endpoints announced to its clients depend, and the cluster it shares its
// sessions with, if any.
func storeKey(name string, upstream *url.URL, prefix string, shared *clusterSpec) string {
	key := fmt.Sprintf("%q %s %q", name, upstream, prefix)
	if shared != nil {
		key += " cluster " + shared.String()
	}
	return key
}

// claims records which identities the handlers of each config took, so
// that two handlers of one config share sessions only when both ask for
// it by name. Caddy provisions the handlers of one config under one
// context; a handler's Cleanup gives its claim back.
var claims = struct {
	sync.Mutex
	byConfig map[context.Context]map[string]*claim
}{byConfig: make(map[context.Context]map[string]*claim)}

// claim is the hold of one config's handlers on an identity.
type claim struct {
	config  context.Context
	key     string
	holders int
	cfg     *settings // the first holder's
}

// claimIdentity takes the identity key for h in the config of ctx. A
// second handler of the config may take it too only if both have the same
// explicit name and the same settings.
func claimIdentity(ctx caddy.Context, key string, h *Handler) (*claim, error) {
	claims.Lock()
	defer claims.Unlock()
	held := claims.byConfig[ctx.Context]
	if held == nil {
		held = make(map[string]*claim)
		claims.byConfig[ctx.Context] = held
	}
	c := held[key]
	switch {
	case c == nil:
		c = &claim{config: ctx.Context, key: key, cfg: h.cfg}
		held[key] = c
	case h.Name == "":
		return nil, fmt.Errorf("another mcp_sse handler of this config has upstream %s and prefix %q too: give each its own name, or both the same name to share their sessions",
			h.upstreamURL.Redacted(), h.Prefix)
	case c.cfg.policy != h.cfg.policy:
		return nil, fmt.Errorf("the mcp_sse handlers named %q share their sessions, so they need the same settings", h.Name)
	}
	c.holders++
	return c, nil
}

// release gives a handler's hold on its identity back. It is nil-safe.
func (c *claim) release() {
	if c == nil {
		return
	}
	claims.Lock()
	defer claims.Unlock()
	c.holders--
	if c.holders > 0 {
		return
	}
	held := claims.byConfig[c.config]
	delete(held, c.key)
	if len(held) == 0 {
		delete(claims.byConfig, c.config)
	}
}
