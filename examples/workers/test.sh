#!/bin/bash
# Runs the workers example and checks its output.
#   test.sh MASTER WORKER     (the two programs' paths)
# 1. 3 workers, 12 tasks, worker 1 crashes once: exit 0, the crash and the
#    restart are logged, every sum is right, workers 2 and 3 keep their pids,
#    and no worker of the run is left.
# 2. Without a crash: no restart.
# 3. The master killed with SIGKILL mid-run: its workers exit on their own
#    (shutdown_on_hangup).
set -euo pipefail
master=$1
worker=$2
tmp=$(mktemp -d /tmp/prpc-workers-XXXXXX)
mpid=
trap '[ -n "$mpid" ] && kill -KILL "$mpid" 2>/dev/null; rm -rf "$tmp"' EXIT

fail() {
  printf 'examples.workers: %s\n' "$*" >&2
  [ -f "$tmp/out" ] && { echo "--- output:" >&2; cat "$tmp/out" >&2; }
  exit 1
}

# The pids of every worker the master started or restarted.
worker_pids() {
  sed -nE 's/^worker [0-9]+ (started|restarted) as pid ([0-9]+)$/\2/p' "$1"
}

# True while pid is a workers_worker that has not exited (a zombie has).
running_worker() {
  local state
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = workers_worker ] || return 1
  state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

# ---- 1. a crash and a restart ----
rc=0
"$master" --workers 3 --tasks 12 --crash-one --worker "$worker" \
  > "$tmp/out" 2> "$tmp/err" || rc=$?
cat "$tmp/err" >&2 # the workers' own log, for --output-on-failure
[ "$rc" -eq 0 ] || fail "exit status $rc, want 0"

grep -Eq '^worker 1 \(pid [0-9]+\) died: killed by signal 6 ' "$tmp/out" ||
  fail "no line saying that worker 1 died of SIGABRT"
grep -Eq '^worker 1 restarted as pid [0-9]+$' "$tmp/out" ||
  fail "no restart line"
[ "$(grep -c ' restarted as pid ' "$tmp/out")" -eq 1 ] ||
  fail "want exactly one restart"
grep -qx 'master: 12 tasks done, 1 restart, all workers stopped' "$tmp/out" ||
  fail "no summary line, or the wrong one"

# Every result is right, and each of tasks 1..12 has exactly one.
re='^task ([0-9]+): sum 1\.\.([0-9]+) = ([0-9]+) '
re+='by worker ([0-9]+) \(pid ([0-9]+)\)$'
declare -A seen
while IFS= read -r line; do
  [[ $line =~ $re ]] || continue
  t=${BASH_REMATCH[1]} n=${BASH_REMATCH[2]} v=${BASH_REMATCH[3]}
  w=${BASH_REMATCH[4]} p=${BASH_REMATCH[5]}
  [ "$v" -eq $((n * (n + 1) / 2)) ] || fail "wrong sum: $line"
  [ -z "${seen[$t]:-}" ] || fail "task $t has two results"
  seen[$t]=1
  # Round-robin over 3 workers.
  [ "$w" -eq $(((t - 1) % 3 + 1)) ] || fail "task $t ran on worker $w"
  # Workers 2 and 3 were never restarted: the pid they started with.
  if [ "$w" -ne 1 ]; then
    grep -qx "worker $w started as pid $p" "$tmp/out" ||
      fail "worker $w changed its pid: $line"
  fi
done < "$tmp/out"
for t in $(seq 1 12); do
  [ -n "${seen[$t]:-}" ] || fail "no result for task $t"
done

pids=$(worker_pids "$tmp/out")
[ "$(echo "$pids" | wc -l)" -eq 4 ] || fail "want 3 starts and 1 restart"
for p in $pids; do
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" != workers_worker ] ||
    fail "worker pid $p is still there (running or not reaped)"
done

# ---- 2. no crash ----
"$master" --workers 2 --tasks 4 --worker "$worker" > "$tmp/out" 2> "$tmp/err" ||
  fail "the run without a crash failed"
grep -qx 'master: 4 tasks done, 0 restarts, all workers stopped' "$tmp/out" ||
  fail "run without a crash: no summary line, or the wrong one"
! grep -q 'restarted' "$tmp/out" || fail "a restart without a crash"

# ---- 3. the master dies: the workers go too ----
# A fresh file: the background shell may truncate it only after the loop
# below has first looked, which would then find run 2's "task 1".
rm -f "$tmp/out"
"$master" --workers 2 --tasks 100000 --worker "$worker" \
  > "$tmp/out" 2> "$tmp/err" &
mpid=$!
for _ in $(seq 100); do
  grep -q '^task 1: ' "$tmp/out" 2> /dev/null && break
  sleep 0.1
done
grep -q '^task 1: ' "$tmp/out" || fail "the long run did not start its tasks"
kill -KILL "$mpid"
wait "$mpid" 2>/dev/null || true
mpid=
pids=$(worker_pids "$tmp/out")
[ "$(echo "$pids" | wc -l)" -eq 2 ] || fail "want 2 workers in the long run"
for _ in $(seq 100); do
  left=
  for p in $pids; do
    running_worker "$p" && left="$left $p"
  done
  [ -z "$left" ] && break
  sleep 0.1
done
[ -z "$left" ] || fail "workers$left still run after the master was killed"

echo "workers example: ok"
