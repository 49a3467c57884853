#!/usr/bin/env bash
# Caddy's own CPU per relayed call, two builds of mcp_sse and reverse_proxy
# side by side: one bench upstream process (the Go SDK's Streamable HTTP
# server over h2c, and its HTTP+SSE server for reverse_proxy), a Caddy for
# each, and `mcp-sse-bench loop` (200 sessions, 15 s) through each in turn,
# ROUNDS times. Run from the repository root after bench.sh built bin/:
#   docs/perf/calls-ab-loop.sh BEFORE_CADDY AFTER_CADDY [ROUNDS]
# Each line: round, system, calls/s, Caddy's cores, µs of Caddy's CPU a call.
set -euo pipefail
before=$1 after=$2 rounds=${3:-4}
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT

bin/mcp-sse-bench upstream > "$tmp/up.addr" 2> "$tmp/up.log" &
pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/up.addr" ] && break; sleep 0.1; done
read -r streamable sse < "$tmp/up.addr"

# start NAME BINARY PORT HANDLER: a Caddy on 127.0.0.1:PORT, admin on PORT+1.
start() {
	cat > "$tmp/$1.Caddyfile" <<EOC
{
	admin 127.0.0.1:$(($3 + 1))
	persist_config off
}
http://127.0.0.1:$3 {
	bind 127.0.0.1
	$4
}
EOC
	"$2" run --config "$tmp/$1.Caddyfile" > "$tmp/$1.log" 2>&1 &
	pids+=($!)
	eval "pid_$1=$!"
	for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$(($3 + 1))/config/" && return; sleep 0.1; done
	echo "$1 did not start" >&2
	exit 1
}
gateway=$'mcp_sse {\n\t\tupstream http://'"$streamable"$'/mcp\n\t}'
start before "$before" 18090 "$gateway"
start after "$after" 18092 "$gateway"
start proxy "$before" 18094 "reverse_proxy $sse"

for round in $(seq "$rounds"); do
	for sys in before:18090 after:18092 proxy:18094; do
		name=${sys%%:*} port=${sys##*:}
		pid_var=pid_$name
		line=$(bin/mcp-sse-bench loop -url "http://127.0.0.1:$port/sse" -n 200 -time 15s -pid "${!pid_var}" 2>&1 | tail -1)
		rate=$(sed -E 's/.* ([0-9.]+) calls\/s.*/\1/' <<< "$line")
		cores=$(sed -E 's/.*server CPU ([0-9.]+) cores.*/\1/' <<< "$line")
		errors=$(sed -E 's/.* ([0-9]+) errors.*/\1/' <<< "$line")
		printf '%s %s %s calls/s %s cores %s µs/call %s errors\n' "$round" "$name" "$rate" "$cores" \
			"$(awk -v c="$cores" -v r="$rate" 'BEGIN { printf "%.0f", c * 1e6 / r }')" "$errors"
	done
done
