#!/bin/bash
# Runs the streaming example's server and client and checks the output.
#   examples.sh BIN_DIR
set -euo pipefail
bin=$1
tmp=$(mktemp -d /tmp/prpc-example-XXXXXX)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
mkfifo "$tmp/ready"
"$bin/chat_server" "unix:$tmp/chat.sock" > "$tmp/ready" &
pid=$!
exec 3< "$tmp/ready"
read -r line <&3
out=$("$bin/chat_client" "unix:$tmp/chat.sock")
want=$'countdown: 3\ncountdown: 2\ncountdown: 1\ncountdown: 0\nyou said: hello\nyou said: bye\nstatus: OK'
[ "$out" = "$want" ] || { printf 'unexpected output:\n%s\n' "$out"; exit 1; }
kill -TERM "$pid"
wait "$pid"
echo "streaming example: ok"
