package mcpsse

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the module's Prometheus collectors. They are made once per
// process and registered with the metrics registry of every config that
// has the handler, so their values carry across reloads as the sessions do.
// No label ever holds a session ID.
var metrics = struct {
	sessionsActive   prometheus.Gauge
	sessionsEnded    *prometheus.CounterVec
	messages         *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	upstreamErrors   *prometheus.CounterVec
	resumed          prometheus.Counter
	upstreamResumes  prometheus.Counter
	healed           *prometheus.CounterVec
	routed           prometheus.Counter
	takenOver        prometheus.Counter
	redisErrors      *prometheus.CounterVec
	redisDuration    *prometheus.HistogramVec
}{
	sessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "sessions_active",
		Help: "Sessions open now.",
	}),
	sessionsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "sessions_ended_total",
		Help: "Sessions ended, by why they ended.",
	}, []string{"reason"}),
	messages: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "messages_total",
		Help: "JSON-RPC messages relayed, by direction (to_upstream, to_client) and kind (request, response, notification).",
	}, []string{"direction", "kind"}),
	upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "upstream_request_duration_seconds",
		Help:    "Upstream requests from sending to the end of their answer, by HTTP method (POST, DELETE).",
		Buckets: prometheus.DefBuckets,
	}, []string{"method"}),
	upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "upstream_errors_total",
		Help: "Failed upstream requests, by cause.",
	}, []string{"reason"}),
	resumed: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "sessions_resumed_total",
		Help: "Streams that re-attached to a session the client had.",
	}),
	upstreamResumes: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "upstream_answers_resumed_total",
		Help: "Upstream answer streams that broke off, or ended before their response, and were resumed with Last-Event-ID.",
	}),
	healed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "sessions_healed_total",
		Help: "Upstream sessions the gateway initialized, or started over, for a client: for a session that began without initialize (new_session), after the upstream forgot one (upstream_forgot), or when the client of an initialized session initialized again (client_restarted).",
	}, []string{"cause"}),
	routed: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "cluster_messages_routed_total",
		Help: "Messages for a client that this instance relayed from the upstream to a stream another instance of the cluster holds.",
	}),
	takenOver: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "cluster_streams_taken_over_total",
		Help: "Streams that re-attached here to a session whose stream another instance of the cluster held last.",
	}),
	redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "cluster_redis_errors_total",
		Help: "Redis calls of a cluster that failed, by operation.",
	}, []string{"op"}),
	redisDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "mcp_sse", Name: "cluster_redis_duration_seconds",
		Help:    "Redis calls of a cluster, from sending to their answer, by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"op"}),
}

// Directions of messages_total.
const (
	toUpstream = "to_upstream"
	toClient   = "to_client"
)

// registerMetrics registers the module's collectors with a config's
// registry. Several handlers in one config register the same collectors;
// that is not an error.
func registerMetrics(registry *prometheus.Registry) error {
	if registry == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		metrics.sessionsActive,
		metrics.sessionsEnded,
		metrics.messages,
		metrics.upstreamDuration,
		metrics.upstreamErrors,
		metrics.resumed,
		metrics.upstreamResumes,
		metrics.healed,
		metrics.routed,
		metrics.takenOver,
		metrics.redisErrors,
		metrics.redisDuration,
	} {
		err := registry.Register(c)
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok && are.ExistingCollector == c {
			continue
		}
		if err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

// observeDuration records an upstream request of method that started at
// start and whose answer is done now.
func observeDuration(method string, start time.Time) {
	metrics.upstreamDuration.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

// countUpstreamError counts a failed upstream request by its cause and
// returns the cause's name and the message a client may read.
func countUpstreamError(err error) (reason, public string) {
	reason, public = failure(err)
	metrics.upstreamErrors.WithLabelValues(reason).Inc()
	return reason, public
}
