#!/bin/bash
# Idle CPU of two builds side by side: ROUNDS rounds, each running
# docs/perf/idle-cpu-profiles.sh with N sessions (100,000 by default) over
# h2c for the systems SYSTEMS ("off" by default) on the BEFORE build, then
# on the AFTER build, so that the machine's drift from hour to hour falls
# on both alike. BEFORE and AFTER are directories holding caddy-bench and
# mcp-sse-bench; give both the same mcp-sse-bench, so that only Caddy
# differs. Usage, from the repository root (Linux only):
#
#	docs/perf/idle-cpu-ab.sh OUT BEFORE AFTER [ROUNDS] [N] [SYSTEMS]
#
# It writes OUT/ROUND-before/ and OUT/ROUND-after/ as idle-cpu-profiles.sh
# does, and OUT/summary.txt, a line per run.
set -eu
out=$1
before=$2
after=$3
rounds=${4:-2}
n=${5:-100000}
systems=${6:-off}
mkdir -p "$out"
for round in $(seq "$rounds"); do
	for build in before after; do
		dir=$before
		[ "$build" = after ] && dir=$after
		BIN=$(cd "$dir" && pwd) "$(dirname "$0")/idle-cpu-profiles.sh" "$out/$round-$build" "$n" "$systems"
		sed "s/^/round $round, $build, /" "$out/$round-$build/summary.txt" >>"$out/summary.txt"
	done
done
cat "$out/summary.txt"
