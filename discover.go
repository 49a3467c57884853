package mcpsse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The values of upstream_protocol.
const (
	upstreamProtocolAuto      = "auto"
	upstreamProtocolStateless = revisionStateless
	upstreamProtocolSession   = "2025-11-25"
)

// revisionStateless is the protocol revision without sessions, which the
// gateway speaks to an upstream that offers it: no initialize, server/discover
// instead, every request with its own _meta and headers.
const revisionStateless = "2026-07-28"

// Discovery results are kept this long when the upstream says nothing of
// it (a server of an earlier revision says nothing at all), and at most
// maxDiscoveryTTL whatever it says.
const (
	defaultDiscoveryTTL = 5 * time.Minute
	maxDiscoveryTTL     = time.Hour
)

// discoverID is the id of the server/discover requests the gateway sends.
const discoverID = `"caddy-mcp-sse-discover"`

// discovery is what an upstream's answer to server/discover says of it.
type discovery struct {
	// stateless: the upstream speaks revisionStateless. Otherwise the
	// rest is empty and sessions are initialized upstream as the client
	// initializes them.
	stateless    bool
	capabilities json.RawMessage
	serverInfo   json.RawMessage
	instructions string
	public       bool      // the answer may be shared by every client (cacheScope "public")
	expires      time.Time // when to ask again
}

// discoverer asks a store's upstream which revisions it speaks, and keeps
// the answer for every session of the store while it is fresh.
type discoverer struct {
	mu   sync.Mutex
	last *discovery
}

// discoverResult is the result of server/discover, as the revision has it.
type discoverResult struct {
	SupportedVersions []string        `json:"supportedVersions"`
	Capabilities      json.RawMessage `json:"capabilities"`
	Instructions      string          `json:"instructions"`
	Meta              struct {
		ServerInfo json.RawMessage `json:"io.modelcontextprotocol/serverInfo"`
	} `json:"_meta"`
	TTLMs      *int64 `json:"ttlMs"`
	CacheScope string `json:"cacheScope"`
}

// discover returns what the upstream speaks, for a client that initializes
// with init, under ctx and with the client's header. A fresh answer
// that holds for every client is reused; any other is asked for again. An
// upstream that cannot be reached, or that refuses the client's credential,
// is an error and is asked again next time.
func (d *discoverer) discover(ctx context.Context, s *session, init message, header http.Header, cfg *settings) (*discovery, error) {
	d.mu.Lock()
	last := d.last
	d.mu.Unlock()
	now := time.Now()
	if last != nil && now.Before(last.expires) && (last.public || !last.stateless) {
		return last, nil
	}
	found, err := s.askDiscover(ctx, initializeParams(init), header.Clone(), cfg)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	changed := d.last == nil || d.last.stateless != found.stateless
	d.last = found
	d.mu.Unlock()
	if changed {
		revision := "initialize-based (2024-11-05 to 2025-11-25, as the client asks)"
		if found.stateless {
			revision = revisionStateless
		}
		cfg.logger.Info("upstream protocol revision chosen",
			zap.String("upstream", s.store.upstream.url.Redacted()), zap.String("revision", revision))
	}
	return found, nil
}

// askDiscover sends server/discover upstream and reads what the answer
// says, within the upstream timeout: the client's initialize waits for it.
func (s *session) askDiscover(ctx context.Context, params []byte, header http.Header, cfg *settings) (*discovery, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.upstreamTimeout, errHeaderTimeout)
	defer cancel()
	req := newOutgoing(json.RawMessage(discoverID), "server/discover", nil)
	resp, err := s.postStateless(ctx, req, metaOf(params, ""), header, cfg, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, err := s.readStatelessAnswer(ctx, resp, req.id, nil)
	var se *statusError
	switch {
	case errors.As(err, &se) && (se.refusesCredential() || se.code/100 == 5):
		return nil, err
	case err != nil && se == nil:
		return nil, err
	}
	// An earlier revision's server refuses the request without a session,
	// or does not know the method: it initializes sessions.
	found := &discovery{expires: time.Now().Add(defaultDiscoveryTTL)}
	if err != nil || answer.result == nil {
		return found, nil
	}
	var res discoverResult
	if json.Unmarshal(answer.result, &res) != nil || !slices.Contains(res.SupportedVersions, revisionStateless) {
		return found, nil
	}
	found.stateless = true
	found.capabilities = res.Capabilities
	if len(found.capabilities) == 0 || found.capabilities[0] != '{' {
		found.capabilities = json.RawMessage(`{}`)
	}
	found.serverInfo = res.Meta.ServerInfo
	if len(found.serverInfo) == 0 || found.serverInfo[0] != '{' {
		found.serverInfo = s.store.fallbackServerInfo()
	}
	found.instructions = res.Instructions
	found.public = res.CacheScope == "public"
	if res.TTLMs != nil {
		found.expires = time.Now().Add(min(max(time.Duration(*res.TTLMs)*time.Millisecond, 0), maxDiscoveryTTL))
	}
	return found, nil
}

// fallbackServerInfo names the upstream for clients when its answer to
// server/discover does not: its host, version "unknown".
func (s *sessionStore) fallbackServerInfo() json.RawMessage {
	b, _ := json.Marshal(map[string]string{"name": s.upstream.url.Host, "version": "unknown"})
	return b
}

// legacyRevisions are the revisions a client may initialize with over
// HTTP+SSE; the gateway answers the version a client asks for if it is one
// of them, and the newest otherwise.
var legacyRevisions = []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"}

// initializeAnswer is the gateway's answer to a client's initialize with
// params, for an upstream that speaks revisionStateless, from what it said
// of itself in d.
func initializeAnswer(id json.RawMessage, params []byte, d *discovery) []byte {
	var p struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	_ = json.Unmarshal(params, &p)
	version := legacyRevisions[len(legacyRevisions)-1]
	if slices.Contains(legacyRevisions, p.ProtocolVersion) {
		version = p.ProtocolVersion
	}
	result := struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		ServerInfo      json.RawMessage `json:"serverInfo"`
		Instructions    string          `json:"instructions,omitempty"`
	}{version, d.capabilities, d.serverInfo, d.instructions}
	return resultResponse(id, result)
}

// resultResponse encodes a JSON-RPC response with result.
func resultResponse(id json.RawMessage, result any) []byte {
	b, err := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  any             `json:"result"`
	}{"2.0", id, result})
	if err != nil {
		panic(fmt.Sprintf("encoding a response: %v", err)) // every result here encodes
	}
	return b
}
