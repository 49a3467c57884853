#!/bin/sh
# Heap profiles of idle sessions beside the hold floor, with every
# allocation sampled (GODEBUG=memprofilerate=1): the target holds over h2c
# at N sessions (2,000 by default), each profile taken from Caddy's admin
# endpoint halfway through its hold, after a collection. Usage, from the
# repository root:
#
#	docs/perf/heap-profiles.sh OUT [N]
#
# writes OUT/heap-1-floor.pb.gz (the hold floor), heap-2-floor-posts.pb.gz
# (the floor with the setup POSTs), heap-3-on.pb.gz and heap-4-off.pb.gz
# (mcp_sse, upstream_stream on and off), beside the bench's own output.
# Read one with: go tool pprof -sample_index=inuse_space bin/caddy-bench F
set -eu
out=$1
n=${2:-2000}
go build -o bin/caddy-bench ./cmd/mcp-sse-bench/caddy
go build -o bin/mcp-sse-bench ./cmd/mcp-sse-bench
mkdir -p "$out"
GODEBUG=memprofilerate=1 bin/mcp-sse-bench -caddy bin/caddy-bench -calls=false -sweep "" \
	-sessions 0 -h2c-sessions "$n" -hold 40s -systems "hold floor,mcp_sse" -out "$out" >"$out/bench.log" 2>&1 &
bench=$!
for name in 1-floor 2-floor-posts 3-on 4-off; do
	# Each hold logs "N sessions opened" once its sessions are up.
	until [ "$(grep -c 'sessions opened' "$out/bench.log")" -ge "${name%%-*}" ]; do
		kill -0 $bench 2>/dev/null || { cat "$out/bench.log"; exit 1; }
		sleep 1
	done
	sleep 20
	admin=$(awk '/admin/ {print $2; exit}' "$(ls -t "$out"/Caddyfile.* | head -1)")
	curl -fsS "http://$admin/debug/pprof/heap?gc=1" -o "$out/heap-$name.pb.gz"
done
wait $bench
grep -A12 '^| '"$n"' idle' "$out/results.md"
