package mcpsse

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

// defaultKeyPrefix starts every Redis key a cluster writes.
const defaultKeyPrefix = "mcp_sse"

// Cluster shares a handler's sessions among Caddy instances.
type Cluster struct {
	// Shares sessions through a Redis server (7.0 or newer). Required.
	Redis *RedisCluster `json:"redis,omitempty"`
}

// RedisCluster is where a cluster keeps its sessions.
type RedisCluster struct {
	// The Redis server's URL: redis://[user:password@]host:port/db, or
	// rediss:// for TLS. Placeholders such as {env.REDIS_URL} are
	// replaced when the config loads. Required.
	URL string `json:"url,omitempty"`

	// What every key the cluster writes starts with, so that several
	// clusters, or other programs, can share one Redis database. Within
	// it each handler keeps its sessions under its own keys (by its name,
	// upstream and prefix). Default: "mcp_sse".
	KeyPrefix string `json:"key_prefix,omitempty"`
}

// clusterSpec is a cluster config as it runs: the Redis client's options,
// placeholders replaced, and the key prefix.
type clusterSpec struct {
	options   *redis.Options
	url       string // as configured, placeholders replaced
	keyPrefix string
}

// spec checks the cluster config and resolves it.
func (c *Cluster) spec() (*clusterSpec, error) {
	if c.Redis == nil {
		return nil, errors.New("cluster: a backend (redis) is required")
	}
	raw := caddy.NewReplacer().ReplaceAll(c.Redis.URL, "")
	if raw == "" {
		return nil, errors.New("cluster redis: url is required")
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("cluster redis: url %s: %v", redactedRedisURL(raw), err)
	}
	prefix := c.Redis.KeyPrefix
	if prefix == "" {
		prefix = defaultKeyPrefix
	}
	if strings.ContainsAny(prefix, " \t\r\n") {
		return nil, fmt.Errorf("cluster redis: key_prefix %q must not hold spaces", prefix)
	}
	return &clusterSpec{options: opts, url: raw, keyPrefix: prefix}, nil
}

// String names the cluster without its credentials, yet tells apart two
// that differ only in them.
func (c *clusterSpec) String() string {
	sum := sha256.Sum256([]byte(c.url))
	return fmt.Sprintf("redis %s %q %s", redactedRedisURL(c.url), c.keyPrefix, hex.EncodeToString(sum[:4]))
}

// redactedRedisURL is a Redis URL without its password, for messages.
func redactedRedisURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
