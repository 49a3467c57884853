#!/usr/bin/env bash
# One closed loop (200 sessions, 15 s) through mcp_sse in front of the
# bench upstream, stateful ("") or stateless ("-stateless", which offers
# revision 2026-07-28, so the gateway speaks it): run from the repository
# root after bench.sh built bin/. It prints the loop's figures (CPU: Caddy's)
# and the revision the gateway chose, and writes a CPU profile of Caddy.
set -euo pipefail
mode=$1 # "" or -stateless
cd "$(dirname "$0")/../.."
bin/mcp-sse-bench upstream $mode > /tmp/up.addr 2>/tmp/up.log &
UP=$!
for i in $(seq 50); do [ -s /tmp/up.addr ] && break; sleep 0.1; done
addr=$(cut -d' ' -f1 /tmp/up.addr)
cat > /tmp/sb.Caddyfile <<EOC
{
	admin 127.0.0.1:18091
	persist_config off
}
http://127.0.0.1:18090 {
	bind 127.0.0.1
	mcp_sse {
		upstream http://$addr/mcp
	}
}
EOC
bin/caddy-bench run --config /tmp/sb.Caddyfile > /tmp/sb-caddy.log 2>&1 &
C=$!
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18090/x && break; sleep 0.1; done
(sleep 4; curl -s -o /tmp/sb-$$.pprof "http://127.0.0.1:18091/debug/pprof/profile?seconds=8") &
bin/mcp-sse-bench loop -url http://127.0.0.1:18090/sse -n 200 -time 15s -pid $C 2>&1 | tail -1
wait %3 2>/dev/null || true; ls -la /tmp/sb-$$.pprof; cp /tmp/sb-$$.pprof /tmp/sb-last${mode}.pprof
grep -o '"upstream protocol revision chosen"[^}]*' /tmp/sb-caddy.log | head -1
kill $C $UP; wait $C $UP 2>/dev/null || true
