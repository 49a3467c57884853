package mcpsse

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// sessionInfos returns every session of the cluster as the admin API
// shows it, with the instance that holds each one's stream, oldest first.
func (n *node) sessionInfos() ([]sessionInfo, error) {
	var ids []string
	var fields []*redis.SliceCmd
	var leases []*redis.StringCmd
	err := n.call("list", func(ctx context.Context) error {
		var err error
		if ids, err = n.rdb.ZRange(ctx, n.ns+":sessions", 0, -1).Result(); err != nil || len(ids) == 0 {
			return err
		}
		fields, leases = make([]*redis.SliceCmd, len(ids)), make([]*redis.StringCmd, len(ids))
		_, err = n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				fields[i] = p.HMGet(ctx, n.key("s", id), "created", "remote", "user", "seq", "up")
				leases[i] = p.Get(ctx, n.key("l", id))
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	infos := make([]sessionInfo, 0, len(ids))
	for i, id := range ids {
		vals := fields[i].Val()
		str := func(j int) string {
			if j >= len(vals) {
				return ""
			}
			v, _ := vals[j].(string)
			return v
		}
		if str(0) == "" {
			continue // ended since
		}
		ms, _ := strconv.ParseInt(str(0), 10, 64)
		created := time.UnixMilli(ms)
		sent, _ := strconv.ParseUint(str(3), 10, 64)
		holder, _, _ := strings.Cut(leases[i].Val(), " ")
		info := sessionInfo{
			ID:              id,
			Handler:         n.store.name,
			Upstream:        n.store.upstream.url.Redacted(),
			Prefix:          n.store.prefix,
			RemoteAddr:      str(1),
			User:            str(2),
			Created:         created,
			AgeSeconds:      time.Since(created).Seconds(),
			MessagesSent:    sent,
			StreamAttached:  holder != "",
			UpstreamSession: str(4) != "",
			Instance:        holder,
		}
		if s := n.store.get(id); s != nil {
			local := s.info()
			info.MessagesReceived, info.MessagesInFlight = local.MessagesReceived, local.MessagesInFlight
		}
		infos = append(infos, info)
	}
	return infos, nil
}
