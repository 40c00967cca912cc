#!/bin/bash
# run_fuzzer.sh FUZZER SEEDS WORK SECONDS [libFuzzer flags...]
# Runs a fuzzer for SECONDS from the committed seeds (read only) with a
# fresh working corpus in WORK/corpus, and prints one line with the
# executions and the corpus size. A crash, leak, timeout or failed check
# fails with the end of the log; the input is kept in WORK/artifacts/.
set -euo pipefail
fuzzer=$1 seeds=$2 work=$3 secs=$4
shift 4
name=$(basename "$fuzzer")
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
log=$work/fuzz.log
if ! "$fuzzer" -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$@" \
    "$work/corpus" "$seeds" > "$log" 2>&1; then
  tail -n 80 "$log"
  echo "$name: FAILED; the input is in $work/artifacts/:" >&2
  ls -l "$work/artifacts/" >&2
  exit 1
fi
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
corp=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
echo "$name: $execs executions in $secs s, corpus $corp inputs" \
  "($(ls "$seeds" | wc -l) seeds, $(ls "$work/corpus" | wc -l) new)," \
  "coverage $cov edges; no crash, leak or failed check" |
  tee "$work/summary.txt"
