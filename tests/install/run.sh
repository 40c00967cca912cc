#!/bin/bash
# Installs piperpc into a fresh prefix and builds the quick start against the
# installed package, twice: with CMake (find_package + prpc_generate) and
# with pkg-config and the installed plugin. Then runs the programs. When
# nanopb is installed, also the nanopb quick start (examples/quickstart_nanopb)
# with CMake and with pkg-config.
#   run.sh BUILD_DIR SOURCE_DIR
# With PRPC_INSTALLED_PREFIX set, nothing is installed: the programs are
# built against that prefix instead (tests/install/deb.sh: the unpacked
# Debian packages). prpc is checked when BUILD_DIR built it (PRPC_BUILD_CLI).
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d /tmp/prpc-install-XXXXXX)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ -n "${PRPC_INSTALLED_PREFIX:-}" ]; then
  prefix=$PRPC_INSTALLED_PREFIX
else
  prefix=$tmp/prefix
  cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"
fi
with_cli=
grep -q '^PRPC_BUILD_CLI:BOOL=ON$' "$build/CMakeCache.txt" && with_cli=1
for f in include/piperpc/piperpc.h include/piperpc/method.h bin/protoc-gen-prpc \
         share/man/man1/protoc-gen-prpc.1 ${with_cli:+bin/prpc} \
         ${with_cli:+share/man/man1/prpc.1}; do
  [ -e "$prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done
# The demo programs are not installed.
for f in greeter_server greeter_client; do
  [ ! -e "$prefix/bin/$f" ] || { echo "installed: bin/$f"; exit 1; }
done
libdir=$(dirname "$(find "$prefix" -name piperpc.pc)")/..
ls "$libdir"/libpiperpc.so "$libdir"/libpiperpc.a > /dev/null

# Starts SERVER ARGS... and waits (without sleeping) for its first line.
start_server() {
  mkfifo "$tmp/ready"
  "$@" > "$tmp/ready" &
  server_pid=$!
  exec 3< "$tmp/ready"
  read -r line <&3
  echo "server says: $line"
  rm -f "$tmp/ready"
}
stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid"
  server_pid=
  exec 3<&-
}

# 1. CMake: find_package(piperpc) and prpc_generate().
cmake -S "$src/examples/quickstart" -B "$tmp/app" \
  -DCMAKE_PREFIX_PATH="$prefix" > "$tmp/app.log"
cmake --build "$tmp/app" >> "$tmp/app.log"
target="unix:$tmp/hello.sock"
start_server "$tmp/app/hello_server" "$target"
out=$("$tmp/app/hello_client" "$target" installed)
[ "$out" = "Hello installed" ] || { echo "unexpected reply: $out"; exit 1; }
stop_server
[ ! -e "$tmp/hello.sock" ] || { echo "socket file left behind"; exit 1; }
echo "cmake package: ok"

# 2. pkg-config and the installed plugin, no CMake.
export PKG_CONFIG_PATH=$libdir/pkgconfig
gen=$tmp/gen
mkdir -p "$gen"
protoc -I"$src/examples/quickstart" \
  --plugin=protoc-gen-prpc="$prefix/bin/protoc-gen-prpc" \
  --plugin=protoc-gen-c="$(command -v protoc-gen-c)" \
  --c_out="$gen" --prpc_out="$gen" hello.proto
cc -Wall -Wextra -Werror -I"$gen" -o "$tmp/client-pc" \
  "$src/examples/quickstart/client.c" "$gen/hello.pb-c.c" "$gen/hello.prpc.c" \
  $(pkg-config --cflags --libs piperpc)
start_server "$tmp/app/hello_server" "$target"
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/client-pc" "$target" pkgconfig)
[ "$out" = "Hello pkgconfig" ] || { echo "unexpected reply: $out"; exit 1; }
stop_server
echo "pkg-config: ok"

# 3. The tutorial (docs/guide.md), as written, against the installed package.
out=$(cd "$src" && PREFIX="$prefix" APP="$tmp/tutorial" sh examples/tutorial/tutorial.sh)
[ "$(printf '%s\n' "$out" | tail -1)" = "Hello tutorial" ] ||
  { echo "tutorial printed: $out"; exit 1; }
[ ! -e "$tmp/tutorial/hello.sock" ] || { echo "tutorial left its socket"; exit 1; }
echo "tutorial: ok"

# 4. The installed prpc against the quick start's server: a call with
# descriptors from the installed helloworld.proto (the same Greeter).
if [ -n "$with_cli" ]; then
  start_server "$tmp/app/hello_server" "$target"
  protoc -I"$prefix/share/piperpc/proto" --include_imports -o "$tmp/hello.pb" \
    helloworld.proto
  out=$("$prefix/bin/prpc" --proto-set "$tmp/hello.pb" call "$target" \
    helloworld.Greeter/SayHello '{"name":"prpc"}')
  [ "$out" = '{"message":"Hello prpc"}' ] || { echo "prpc call printed: $out"; exit 1; }
  stop_server
  echo "prpc: ok"
fi

# 5. The nanopb backend, when nanopb is installed (nanopb, libnanopb-dev).
if [ -e "$libdir/libpiperpc_nanopb.a" ]; then
  [ -e "$prefix/include/piperpc/nanopb.h" ] || { echo "not installed: nanopb.h"; exit 1; }
  cmake -S "$src/examples/quickstart_nanopb" -B "$tmp/app-nanopb" \
    -DCMAKE_PREFIX_PATH="$prefix" > "$tmp/app-nanopb.log"
  cmake --build "$tmp/app-nanopb" >> "$tmp/app-nanopb.log"
  start_server "$tmp/app-nanopb/hello_server" "$target"
  out=$("$tmp/app-nanopb/hello_client" "$target" nanopb)
  [ "$out" = "Hello nanopb" ] || { echo "unexpected reply: $out"; exit 1; }
  # The protobuf-c client against the nanopb server: one wire.
  out=$("$tmp/app/hello_client" "$target" mixed)
  [ "$out" = "Hello mixed" ] || { echo "unexpected reply: $out"; exit 1; }
  stop_server
  echo "cmake package, nanopb backend: ok"

  gen=$tmp/gen-nanopb
  mkdir -p "$gen"
  protoc -I"$src/examples/quickstart" \
    --plugin=protoc-gen-prpc="$prefix/bin/protoc-gen-prpc" \
    --nanopb_out="-I$src/examples/quickstart_nanopb:$gen" \
    --prpc_out=backend=nanopb:"$gen" hello.proto
  cc -Wall -Wextra -Werror -I"$gen" -o "$tmp/client-nanopb-pc" \
    "$src/examples/quickstart_nanopb/client.c" "$gen/hello.pb.c" \
    "$gen/hello.prpc.c" $(pkg-config --cflags --libs piperpc) \
    -lpiperpc_nanopb -lprotobuf-nanopb
  start_server "$tmp/app/hello_server" "$target"
  out=$(LD_LIBRARY_PATH="$libdir" "$tmp/client-nanopb-pc" "$target" pc-nanopb)
  [ "$out" = "Hello pc-nanopb" ] || { echo "unexpected reply: $out"; exit 1; }
  stop_server
  echo "pkg-config, nanopb backend: ok"
fi

# 6. examples/kv against the installed package: kv.proto imports
# google/protobuf/empty.proto, which prpc_generate() builds by itself.
cmake -S "$src/examples/kv" -B "$tmp/kv" -DCMAKE_PREFIX_PATH="$prefix" \
  > "$tmp/kv.log"
cmake --build "$tmp/kv" >> "$tmp/kv.log"
ktarget="unix:$tmp/kv.sock"
start_server "$tmp/kv/kvd" "$ktarget"
"$tmp/kv/kvctl" "$ktarget" put installed yes
out=$("$tmp/kv/kvctl" "$ktarget" get installed)
[ "$out" = "yes" ] || { echo "kvctl get printed: $out"; exit 1; }
stop_server
echo "examples/kv: ok"
