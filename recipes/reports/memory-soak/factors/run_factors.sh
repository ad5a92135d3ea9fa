#!/bin/bash
# The per-factor runs of recipes/reports/memory-soak (issue 40): one factor at a time, waves of 24, seed 0.
# Each run starts its own `parawave serve` whose sitecustomize (probe/) logs glibc's heap every 2 s.
#   OUT=/tmp/factors N=384 recipes/reports/memory-soak/factors/run_factors.sh "mixed" "aac --formats aac --malformed-fraction 0"
# Run from the repository root. Extra soak options follow each run's name.
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-python}
OUT=${OUT:-/tmp/soak-factors}
N=${N:-384}
run() {  # name, extra args...
  name=$1; shift
  mkdir -p "$OUT/$name"
  nice -n 5 $PY -m service.cli soak --serve --requests "$N" --concurrency 24 --seed 0 --out "$OUT/$name" \
    --server-env PYTHONPATH="$HERE/probe" --server-env MALLOC_PROBE_OUT="$OUT/$name/malloc.tsv" "$@" \
    > "$OUT/$name/stdout.txt" 2> "$OUT/$name/stderr.txt"
  echo "$name rc=$? $(date -u +%T)" >> "$OUT/done.txt"
}
for spec in "$@"; do
  eval "run $spec"
done
