#!/usr/bin/env bash
# Runs Keelson's benchmarks and prints each figure with its target beside it.
# Raw `go test -bench` output is kept in bench.out for benchstat.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=${BENCH_PKGS:-./...}
count=${BENCH_COUNT:-1}
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1x}" -count "$count" -timeout 30m $pkgs | tee bench.out

echo
echo "== Keelson benchmarks vs targets (DESIGN.md, issues) =="
awk -F'\t' 'NR==FNR { if ($0 !~ /^#/ && NF >= 3) { target[$1 "|" $2] = $3 }; next }
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	n = split($0, f, /[ \t]+/)
	for (i = 3; i < n; i += 2) {
		unit = f[i+1]; key = name "|" unit
		if (key in target) printf "%-60s %12s %-8s target %s\n", name, f[i], unit, target[key]
	}
}' hack/bench-targets.tsv bench.out
