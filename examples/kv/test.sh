#!/bin/bash
# Runs kvd and checks it through kvctl.
#   test.sh KVD KVCTL [PRPC]   (KVD_WRAPPER="valgrind ..." runs kvd under it)
# 1. put/get; a missing key is NOT_FOUND. With PRPC (the command-line
#    client): health says SERVING, and a Put through reflection (kv.proto's
#    descriptors, with the google/protobuf/empty.proto it imports) works.
# 2. Two watchers (kvctl watch, other processes) get the current entry, then
#    20 puts, in order, with rising versions.
# 3. A bulk load of 10,000 entries through one client-streaming call.
# 4. A watcher killed (SIGKILL): kvd takes it off its list at once (its
#    "watchers:" line says "cancelled"), before any Put could find out.
# 5. A watcher that does not read (SIGSTOP) while 10 MB of changes come: kvd
#    ends that watch with RESOURCE_EXHAUSTED, and the others go on.
# 6. SIGTERM with two watchers open: each ends with kvd's own status,
#    "UNAVAILABLE: kvd is shutting down", and kvd exits 0 well within its
#    grace period (5 s): in under 1 s.
# Readiness comes from kvd's own lines ("ready", "watchers: N (KEY:
# started)") read from a fifo; nothing sleeps to wait for it.
set -euo pipefail
kvd=$1
kvctl=$2
prpc=${3:-}
wrap=${KVD_WRAPPER:-}
limit=1000 # ms, for "at once" and "promptly"
[ -z "$wrap" ] || limit=4000 # valgrind is slow; still under the 5 s grace
tmp=$(mktemp -d /tmp/prpc-kv-XXXXXX)
dpid= pids=()
trap 'kill -KILL $dpid "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT

fail() {
  printf 'examples.kv: %s\n' "$*" >&2
  [ -s "$tmp/kvd.log" ] && { echo "--- kvd stdout:" >&2; cat "$tmp/kvd.log" >&2; }
  [ -s "$tmp/kvd.err" ] && { echo "--- kvd stderr:" >&2; cat "$tmp/kvd.err" >&2; }
  exit 1
}

# Reads kvd's lines until one is exactly $1; fails after $2 s (default 30)
# without one, or at EOF (kvd died).
expect() {
  local line
  while IFS= read -r -t "${2:-30}" -u 3 line; do
    echo "$line" >> "$tmp/kvd.log"
    [ "$line" = "$1" ] && return 0
  done
  return 1
}

ms_since() { echo $(((${EPOCHREALTIME/./} - ${1/./}) / 1000)); }

# Starts `kvctl watch KEY` with its stdout on fd $2 (through a fifo) and
# waits for kvd to count it: "watchers: $3 (KEY: started)".
start_watch() {
  local key=$1 fd=$2 count=$3
  mkfifo "$tmp/watch$fd"
  "$kvctl" "$target" watch "$key" > "$tmp/watch$fd" 2> "$tmp/watch$fd.err" &
  pids+=($!)
  eval "exec $fd< \"$tmp/watch$fd\""
  expect "kvd: watchers: $count ($key: started)" ||
    fail "kvd did not count watcher $fd of $key"
}

target="unix:$tmp/kv.sock"
kv() { "$kvctl" "$target" "$@"; }

mkfifo "$tmp/kvd.out"
$wrap "$kvd" "$target" > "$tmp/kvd.out" 2> "$tmp/kvd.err" &
dpid=$!
exec 3< "$tmp/kvd.out"
expect "kvd: serving kv.Store on $target: ready" 60 || fail "kvd did not start"

# ---- 1. put, get ----
kv put a 1 || fail "put failed"
kv put a "one more" || fail "put failed"
[ "$(kv get a)" = "one more" ] || fail "get a: want 'one more'"
rc=0
err=$(kv get nope 2>&1) || rc=$?
[ "$rc" -eq 1 ] && [[ $err == *"NOT_FOUND: no such key"* ]] ||
  fail "get of a missing key: exit $rc: $err"

if [ -n "$prpc" ]; then
  out=$("$prpc" health "$target" kv.Store) && [ "$out" = SERVING ] ||
    fail "prpc health kv.Store: $out"
  out=$("$prpc" call "$target" kv.Store/Put '{"key":"j","value":"by prpc"}') &&
    [ "$out" = '{}' ] || fail "prpc call kv.Store/Put printed: $out"
  [ "$(kv get j)" = "by prpc" ] || fail "get j after the Put by prpc"
fi

# ---- 2. two watchers get every put, in order ----
kv put w start
start_watch w 4 1
start_watch w 5 2
for i in $(seq 1 20); do
  kv put w "v$i" || fail "put w v$i failed"
done
for fd in 4 5; do
  IFS= read -r -t 10 -u "$fd" line || fail "watcher $fd: no first line"
  [[ $line =~ ^"w = start (version "([0-9]+)")"$ ]] ||
    fail "watcher $fd: first line: $line"
  last=${BASH_REMATCH[1]}
  for i in $(seq 1 20); do
    IFS= read -r -t 10 -u "$fd" line || fail "watcher $fd: no event $i"
    [[ $line =~ ^"w = v$i (version "([0-9]+)")"$ ]] ||
      fail "watcher $fd: event $i: want v$i, got: $line"
    [ "${BASH_REMATCH[1]}" -gt "$last" ] || fail "watcher $fd: version went back"
    last=${BASH_REMATCH[1]}
  done
done

# ---- 3. a bulk load ----
out=$(kv load 10000) || fail "load failed: $out"
[[ $out =~ ^"loaded 10000 entries in "([0-9]+)" ms"$ ]] ||
  fail "load printed: $out"
load_ms=${BASH_REMATCH[1]}
[ "$(kv get key-000001)" = "value-1........." ] || fail "key-000001 after load"
[ "$(kv get key-010000)" = "value-10000....." ] || fail "key-010000 after load"

# ---- 4. a watcher killed is noticed at once ----
disown "${pids[0]}" # no "Killed" notice from bash
t0=$EPOCHREALTIME
kill -KILL "${pids[0]}"
expect "kvd: watchers: 1 (w: cancelled)" 5 ||
  fail "kvd did not notice the killed watcher within 5 s"
cancel_ms=$(ms_since "$t0")
[ "$cancel_ms" -lt "$limit" ] || fail "the killed watcher was noticed after $cancel_ms ms"
exec 4<&-
kv put w after-kill
IFS= read -r -t 10 -u 5 line && [[ $line == "w = after-kill "* ]] ||
  fail "the remaining watcher missed a put after the kill: $line"

# ---- 5. a watcher that does not read ----
"$kvctl" "$target" watch big > "$tmp/big.out" 2> "$tmp/big.err" &
big=$!
pids+=($big)
expect "kvd: watchers: 2 (big: started)" || fail "the big watch did not start"
kill -STOP "$big"
out=$(kv load 100 100000 big) || fail "load of 100 x 100 KB failed: $out"
expect "kvd: watchers: 1 (big: fell behind)" 10 ||
  fail "kvd did not end the watcher that does not read"
kill -CONT "$big"
rc=0
wait "$big" || rc=$?
[ "$rc" -eq 0 ] || fail "the stalled watcher exited $rc"
grep -q "ended: RESOURCE_EXHAUSTED: kvd: this watcher fell behind" "$tmp/big.err" ||
  fail "the stalled watcher's status: $(cat "$tmp/big.err")"
kv put w still-here
IFS= read -r -t 10 -u 5 line && [[ $line == "w = still-here "* ]] ||
  fail "the other watcher missed a put: $line"

# ---- 6. SIGTERM with watchers open ----
start_watch fresh 6 2 # a key with no value: "(none)" first
IFS= read -r -t 10 -u 6 line && [ "$line" = "fresh: (none)" ] ||
  fail "watch of a key without a value: $line"
running() { # true while pid has not exited (a zombie has)
  local state
  state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null) &&
    [ "$state" != Z ]
}
t0=$EPOCHREALTIME
kill -TERM "$dpid"
for _ in $(seq 1000); do
  running "$dpid" || break
  sleep 0.01
done
stop_ms=$(ms_since "$t0")
! running "$dpid" || fail "kvd still running $stop_ms ms after SIGTERM"
rc=0
wait "$dpid" || rc=$?
dpid=
while IFS= read -r -t 5 -u 3 line; do echo "$line" >> "$tmp/kvd.log"; done
[ "$rc" -eq 0 ] || fail "kvd exited $rc after SIGTERM, want 0"
[ "$stop_ms" -lt "$limit" ] ||
  fail "kvd took $stop_ms ms to stop (grace period 5000 ms), want < $limit"
grep -qx "kvd: stopped" "$tmp/kvd.log" || fail "no 'kvd: stopped' line"
for i in 1 3; do
  rc=0
  wait "${pids[$i]}" || rc=$?
  [ "$rc" -eq 0 ] || fail "watcher $i exited $rc"
done
grep -qx "kvctl: watch w ended: UNAVAILABLE: kvd is shutting down" \
  "$tmp/watch5.err" || fail "watcher of w ended with: $(cat "$tmp/watch5.err")"
grep -qx "kvctl: watch fresh ended: UNAVAILABLE: kvd is shutting down" \
  "$tmp/watch6.err" || fail "watcher of fresh ended with: $(cat "$tmp/watch6.err")"
[ ! -e "$tmp/kv.sock" ] || fail "the socket file is still there"
if [ -z "$wrap" ]; then
  [ ! -s "$tmp/kvd.err" ] || fail "unexpected output on kvd's stderr"
else
  cat "$tmp/kvd.err" >&2
fi
pids=()
echo "examples.kv: ok (load of 10000 entries: $load_ms ms; killed watcher" \
     "noticed in $cancel_ms ms; stopped $stop_ms ms after SIGTERM)"
