#!/usr/bin/env bash
# Builds the release binaries and runs the standard workloads against an
# embedded broker, leaving every JSON and HTML report in one folder.
#
#   scripts/bench.sh [OUT_DIR] [extra rill-bench flags…]
#   scripts/bench.sh "" --broker-cpus 1 --generator-cpus 0 --threads 1   # the pinned layout of the README's table
#
# OUT_DIR defaults to bench-results/<date-time>. The embedded broker's data
# (and the disk probe) go under RILL_BENCH_DATA (default ./bench-data), which
# must be on the disk you want to measure (not tmpfs: O_DIRECT).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-}"
out="${out:-$root/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}"
shift || true
data="${RILL_BENCH_DATA:-$root/bench-data}"

cd "$root"
cargo build --release --bin rill --bin rill-bench
mkdir -p "$out" "$data"

workloads=(
  max-throughput-1kb-1p
  max-throughput-1kb-1p-acks1
  max-throughput-1kb-16p
  small-100b-1p
  small-100b-16p
  latency-1kb-fixed-rate
  unloaded-1kb
  catch-up-1kb-1p
  many-partitions-1000
  fanout-4-consumers
)
files=()
for w in "${workloads[@]}"; do
  files+=("bench-harness/workloads/$w.toml")
done

# One embedded broker per workload keeps runs independent (fresh data dir).
for f in "${files[@]}"; do
  ./target/release/rill-bench --embedded --data-dir "$data" --out "$out" "$@" "$f" \
    | tee -a "$out/summary.txt"
done
rmdir "$data" 2>/dev/null || true
echo "reports in $out"
