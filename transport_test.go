package mcpsse

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestProbeH2C tells servers that take h2c from those that do not.
func TestProbeH2C(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	h2c := httptest.NewUnstartedServer(ok)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	defer h2c.Close()
	h1 := httptest.NewServer(ok)
	defer h1.Close()
	// A server that takes the connection and closes it unread.
	closer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	go func() {
		for {
			conn, err := closer.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()

	for _, tc := range []struct {
		name string
		addr string
		want bool
	}{
		{"h2c", h2c.Listener.Addr().String(), true},
		{"HTTP/1.1", h1.Listener.Addr().String(), false},
		{"closes", closer.Addr().String(), false},
	} {
		got, err := probeH2C(context.Background(), tc.addr)
		if err != nil || got != tc.want {
			t.Errorf("%s: probeH2C = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := probeH2C(context.Background(), h1.Listener.Addr().String()+"0"); err == nil {
		t.Error("probing an address that cannot be reached: no error")
	}
}

// TestStalledProbeHoldsOnlyItsWaiters probes an upstream that takes the
// connection and never answers: a request that waits for the probe gives
// up when its own context ends, not when the probe does, and the probe
// goes on for the others.
func TestStalledProbeHoldsOnlyItsWaiters(t *testing.T) {
	t.Parallel()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			accepted <- conn
		}
	}()
	defer func() {
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	}()

	tr := newUpstreamTransport()
	defer tr.shutdown()
	probed := make(chan struct{})
	tr.onChoose = func(bool) { close(probed) }
	url := "http://" + silent.Addr().String() + "/mcp"

	first := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, nil)
		_, err := tr.RoundTrip(req, nil)
		first <- err
	}()
	conn := <-accepted // the probe's connection
	accepted <- conn

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if _, err := tr.RoundTrip(req, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a request whose context ended while the probe ran: %v, want its deadline", err)
	}
	select {
	case <-probed:
		t.Error("the request waited for the probe to end, not for its own context")
	case err := <-first:
		t.Errorf("the request that started the probe returned before it ended: %v", err)
	default:
	}
}
