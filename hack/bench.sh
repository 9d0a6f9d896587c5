#!/usr/bin/env bash
# Runs Keelson's benchmarks and prints each figure with its target beside it.
# Raw `go test -bench` output is kept in bench.out (for benchstat).
#
# Benchmarks that measure latency run a fixed number of samples inside one
# iteration and report percentiles, so one iteration (-benchtime 1x) is what
# is asked of them; the gitsync ones sample once per iteration.
set -euo pipefail
cd "$(dirname "$0")/.."

: > bench.out
bench() { # packages benchtime
	go test -run '^$' -bench "${BENCH:-.}" -benchtime "$2" -timeout 30m $1 | tee -a bench.out
}
bench "./cmd/keelson ./ebpf ./manifest ./nodeagent ./nodeagent/ingress ./nodeagent/runtime ./reconciler/scheduler" 1x
bench ./gitsync 20x
bench ./nodeagent/network 50x

echo
echo "== Keelson benchmarks vs targets =="
awk -F'\t' 'NR==FNR { if ($0 !~ /^#/ && NF >= 3) { target[$1 "|" $2] = $3 }; next }
/^Benchmark/ {
	n = split($0, f, /[ \t]+/)
	name = f[1]; sub(/-[0-9]+$/, "", name)
	for (i = 3; i < n; i += 2) {
		unit = f[i+1]; key = name "|" unit
		if (key in target) printf "%-45s %10s %-16s %s\n", name, f[i], unit, target[key]
	}
}' hack/bench-targets.tsv bench.out
