#!/bin/bash
# CPU profiles of idle sessions at scale, beside the hold floor: for each
# system, N sessions (100,000 by default) opened over h2c, left 30 s to
# settle, then a 150 s CPU profile from Caddy's admin endpoint and Caddy's
# CPU over the same 150 s from /proc. Caddy runs with GODEBUG=gctrace=1, so
# its log has every collection with its CPU time. Usage, from the
# repository root (Linux only; it binds 127.0.0.1:37701, :37702, :37710 and
# :37711):
#
#	docs/perf/idle-cpu-profiles.sh OUT [N] [SYSTEMS]
#
# SYSTEMS is a list of floor (the bench_hold handler), spread (bench_hold
# with ping_phase stream: each stream pings at a moment of its own, not
# with its connection's other streams), off (mcp_sse with upstream_stream
# off) and on (mcp_sse, default); floor, off and on by default. It
# writes OUT/cpu-SYSTEM.pb.gz, OUT/caddy-SYSTEM.log and a line per system to
# OUT/summary.txt. Read a profile with: go tool pprof bin/caddy-bench F
#
# With BIN set to a directory holding caddy-bench and mcp-sse-bench, it
# runs those instead of building bin/: how docs/perf/idle-cpu-ab.sh sets
# two builds side by side.
set -eu
out=$1
n=${2:-100000}
systems=${3:-floor off on}
bin=${BIN:-}
if [ -z "$bin" ]; then
	go build -o bin/caddy-bench ./cmd/mcp-sse-bench/caddy
	go build -o bin/mcp-sse-bench ./cmd/mcp-sse-bench
	bin=$PWD/bin
fi
mkdir -p "$out"
cd "$out"
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
for sys in $systems; do
	up=""
	open=""
	if [ "$sys" = floor ] || [ "$sys" = spread ]; then
		phase=connection
		[ "$sys" = spread ] && phase=stream
		handler="bench_hold {
		ping_interval 15s
		ping_phase $phase
	}"
		open=-endpoint-only # the floor has no session to initialize
	else
		"$bin/mcp-sse-bench" upstream -streamable 127.0.0.1:37701 -sse 127.0.0.1:37702 >"up-$sys.out" 2>"up-$sys.log" &
		up=$!
		until [ -s "up-$sys.out" ]; do sleep 0.2; done
		stream=""
		[ "$sys" = off ] && stream="upstream_stream off"
		handler="mcp_sse {
		upstream http://127.0.0.1:37701/mcp
		ping_interval 15s
		$stream
	}"
	fi
	cat >"Caddyfile.$sys" <<CF
{
	admin 127.0.0.1:37710
	persist_config off
	servers {
		protocols h1 h2 h2c
	}
}

http://127.0.0.1:37711 {
	bind 127.0.0.1
	$handler
}
CF
	GODEBUG=gctrace=1 "$bin/caddy-bench" run --config "Caddyfile.$sys" --adapter caddyfile >"caddy-$sys.log" 2>&1 &
	caddy=$!
	until curl -s -o /dev/null 127.0.0.1:37710/config/; do sleep 0.2; done
	"$bin/mcp-sse-bench" hold $open -h2c -n "$n" -url http://127.0.0.1:37711/sse >"hold-$sys.log" 2>&1 &
	hold=$!
	until grep -q 'holding them' "hold-$sys.log"; do sleep 1; done
	sleep 30
	t0=$(ticks $caddy)
	s0=$(date +%s.%N)
	curl -s -o "cpu-$sys.pb.gz" '127.0.0.1:37710/debug/pprof/profile?seconds=150'
	t1=$(ticks $caddy)
	s1=$(date +%s.%N)
	rss=$(awk '/VmRSS/ {print $2}' "/proc/$caddy/status")
	echo "$sys: $(echo "($t1 - $t0) / ($s1 - $s0)" | bc -l | cut -c1-5)% of a core over 150 s; RSS $rss kB" >>summary.txt
	kill -INT $hold
	wait $hold || true
	kill $caddy
	wait $caddy || true
	if [ -n "$up" ]; then
		kill $up
		wait $up || true
	fi
done
