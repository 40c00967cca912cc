#!/bin/bash
# Runs an event-loop daemon (epoll_daemon or uv_daemon) in front of the demo
# greeter_server and checks that it relays calls from its one thread.
#   test.sh BIN_DIR DAEMON   (BIN_DIR holds greeter_server and greeter_client)
# 1. One call: the backend's greeting, relayed.
# 2. 2000 calls one after another, then 4 clients of 500 calls at once.
# 3. The backend killed: a call fails with the backend's UNAVAILABLE, relayed
#    by the daemon, which keeps running; the backend restarted: calls work.
# 4. SIGTERM: the daemon exits 0 within 5 s and removes its socket file.
# The daemon exits non-zero if a handler or callback ran off its main thread.
set -euo pipefail
bin=$1
daemon=$2
name=$(basename "$daemon")
tmp=$(mktemp -d /tmp/prpc-eventloop-XXXXXX)
bpid= dpid=
trap 'kill -KILL $bpid $dpid 2>/dev/null || true; rm -rf "$tmp"' EXIT

fail() {
  printf 'examples.%s: %s\n' "$name" "$*" >&2
  [ -s "$tmp/daemon.err" ] && { echo "--- $name stderr:" >&2; cat "$tmp/daemon.err" >&2; }
  exit 1
}

# Reads lines from fd $1 until one ends in "ready" (fails at EOF: the
# program died).
wait_ready() {
  local line
  while IFS= read -r -t 30 -u "$1" line; do
    [[ $line == *ready ]] && return 0
  done
  return 1
}

# The backend, its output through a fifo on fd 3 (kept open: it writes more).
start_backend() {
  rm -f "$tmp/backend.out"
  mkfifo "$tmp/backend.out"
  "$bin/greeter_server" --listen "unix:$tmp/backend.sock" > "$tmp/backend.out" &
  bpid=$!
  exec 3< "$tmp/backend.out"
  wait_ready 3 || fail "greeter_server did not start"
}

front="unix:$tmp/daemon.sock"
call() { "$bin/greeter_client" --target "$front" "$@"; }

start_backend
mkfifo "$tmp/daemon.out"
"$daemon" --listen "$front" --backend "unix:$tmp/backend.sock" \
  > "$tmp/daemon.out" 2> "$tmp/daemon.err" &
dpid=$!
exec 4< "$tmp/daemon.out"
wait_ready 4 || fail "$name did not start"

# ---- 1. one call ----
out=$(call --name x) || fail "a call failed"
[ "$out" = "relayed: Hello x" ] || fail "unexpected reply: $out"

# ---- 2. many calls, one after another and at once ----
out=$(call --count 2000) || fail "2000 calls: one failed"
[[ $out == *": 2000 calls in "* ]] || fail "2000 calls: unexpected output: $out"
pids=()
for i in 1 2 3 4; do
  call --count 500 --name "c$i" > "$tmp/client$i.out" 2>&1 &
  pids+=($!)
done
for i in 1 2 3 4; do
  wait "${pids[$((i - 1))]}" || fail "client $i of 4: $(cat "$tmp/client$i.out")"
  grep -qx "relayed: Hello c$i" "$tmp/client$i.out" &&
    grep -q ': 500 calls in ' "$tmp/client$i.out" ||
    fail "client $i of 4: unexpected output: $(cat "$tmp/client$i.out")"
done

# ---- 3. the backend goes away, and comes back ----
kill -TERM "$bpid"
wait "$bpid" || fail "greeter_server exited with status $?"
bpid=
exec 3<&-
rc=0
out=$(call --name x 2>&1) || rc=$?
[ "$rc" -ne 0 ] || fail "a call succeeded without a backend: $out"
[[ $out == *"failed: UNAVAILABLE: backend: "* ]] ||
  fail "want the backend's UNAVAILABLE, relayed: $out"
kill -0 "$dpid" 2>/dev/null || fail "$name died with its backend"
start_backend
# The daemon's channel reconnects after gRPC's backoff (about 1 s): until
# then its calls fail fast with UNAVAILABLE.
for _ in $(seq 100); do
  out=$(call --name again 2>&1) && break
  [[ $out == *"failed: UNAVAILABLE: backend: "* ]] || fail "unexpected: $out"
  sleep 0.1
done
[ "$out" = "relayed: Hello again" ] || fail "after the backend's restart: $out"

# ---- 4. SIGTERM: a prompt, clean exit ----
# True while pid has not exited (a zombie has).
running() {
  local state
  state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null) &&
    [ "$state" != Z ]
}
t0=$EPOCHREALTIME
kill -TERM "$dpid"
for _ in $(seq 500); do
  running "$dpid" || break
  sleep 0.01
done
ms=$(((${EPOCHREALTIME/./} - ${t0/./}) / 1000))
! running "$dpid" || fail "still running $ms ms after SIGTERM"
rc=0
wait "$dpid" || rc=$?
dpid=
[ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM, want 0"
[ "$ms" -lt 5000 ] || fail "took $ms ms to stop, want under 5000"
[ ! -e "$tmp/daemon.sock" ] || fail "the socket file is still there"
[ ! -s "$tmp/daemon.err" ] || fail "unexpected output on stderr"
kill -TERM "$bpid"
wait "$bpid" || fail "greeter_server exited with status $?"
bpid=
echo "examples.$name: ok (stopped in $ms ms)"
