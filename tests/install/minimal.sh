#!/bin/bash
# The build with every optional part switched off (docs/building.md): no
# prpc, no benchmark, no examples or demos, the tests on, and pkg-config
# blind to jansson and libmicrohttpd (the library alone needs only gRPC
# core and protobuf-c: it builds without the HTTP/JSON front end). Configures a fresh
# build directory in /tmp, checks that none of the parts that are off is a
# target, builds the library, the plugin and the selected tests' programs,
# and runs those tests: those that need a part that is off are not
# registered, the rest must pass. Then checks what it installs.
#   minimal.sh SOURCE_DIR C_COMPILER BUILD_TYPE [CTEST_ARGS...]
# CTEST_ARGS narrow the tests run (tests/CMakeLists.txt passes a selection
# to keep CI's time down; only the programs they run are built); JOBS
# (default 1) is the build's and ctest's -j.
set -euo pipefail
src=$(cd "$1" && pwd)
cc=$2
type=$3
shift 3
jobs=${JOBS:-1}
tmp=$(mktemp -d /tmp/prpc-minimal-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
b=$tmp/build
t0=$(date +%s)

# Every .pc file the system has but jansson's and libmicrohttpd's.
mkdir "$tmp/pc"
for d in $(pkg-config --variable pc_path pkg-config | tr : ' '); do
  [ -d "$d" ] && cp -n "$d"/*.pc "$tmp/pc/" 2>/dev/null || true
done
rm -f "$tmp/pc/jansson.pc" "$tmp/pc/libmicrohttpd.pc"
PKG_CONFIG_LIBDIR=$tmp/pc \
cmake -S "$src" -B "$b" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE="$type" \
  -DPRPC_WERROR=ON -DPRPC_BUILD_CLI=OFF -DPRPC_BUILD_BENCH=OFF \
  -DPRPC_BUILD_EXAMPLES=OFF -DPRPC_BUILD_TESTS=ON > "$tmp/configure.log" 2>&1 ||
  { cat "$tmp/configure.log"; exit 1; }
grep -q "building without the HTTP/JSON front end" "$tmp/configure.log" ||
  { echo "FAIL: the configure did not go without jansson/libmicrohttpd"; exit 1; }
t1=$(date +%s)
# None of the parts that are off is a target.
targets=$(cmake --build "$b" --target help | sed -n 's/^\.\.\. \([^ ]*\).*/\1/p')
for t in prpc bench_server bench_client greeter_server greeter_client \
         interop_server chat_server epoll_daemon workers_master kvd; do
  ! grep -qx "$t" <<<"$targets" ||
    { echo "FAIL: $t is a target with its option off"; exit 1; }
done
# Build the library, the plugin and the programs the selected tests run
# (not every test program: the full build's ctest runs them all).
progs=$(cd "$b" && ctest --show-only=json-v1 "$@" | python3 -c '
import json, os, sys
b = sys.argv[1] + "/"
out = set()
for t in json.load(sys.stdin)["tests"]:
    # prpc_add_test names a test PROGRAM.CASE; ctest leaves out the command
    # of a program not built yet, not the programs among its arguments.
    out.add(t["name"].split(".")[0])
    for a in t.get("command", []):
        if a.startswith(b):
            out.add(os.path.basename(a))
print("\n".join(sorted(out)))' "$b" | grep -xF "$targets" || true)
grep -qw e2e_greeter <<<"$progs" ||
  { echo "FAIL: no end-to-end test selected: $progs"; exit 1; }
cmake --build "$b" -j "$jobs" --target piperpc piperpc_static protoc-gen-prpc \
  $progs > "$tmp/build.log" 2>&1 || { tail -50 "$tmp/build.log"; exit 1; }
t2=$(date +%s)
# The library links neither.
! ldd "$b/libpiperpc.so" | grep -E "jansson|microhttpd" ||
  { echo "FAIL: libpiperpc links jansson or libmicrohttpd"; exit 1; }
(cd "$b" && ctest -j "$jobs" --output-on-failure "$@")
t3=$(date +%s)
echo "configure $((t1 - t0)) s, build $((t2 - t1)) s, tests $((t3 - t2)) s"
# What it installs: the library, its headers and packages, the plugin; no
# prpc, no demo. (Building against an installed prefix is install.quickstart
# and install.deb_packages; left out here to keep the time down.)
cmake --install "$b" --prefix "$tmp/prefix" > /dev/null
(cd "$tmp/prefix" && find . ! -type d | sed 's|^\./||' | sort) > "$tmp/installed"
for f in bin/protoc-gen-prpc include/piperpc/piperpc.h lib/libpiperpc.so \
         lib/libpiperpc.a lib/pkgconfig/piperpc.pc \
         lib/cmake/piperpc/piperpcConfig.cmake \
         lib/cmake/piperpc/PrpcGenerate.cmake; do
  grep -qxE "${f/lib\//lib(/[^/]+-linux-gnu[a-z]*)?/}" "$tmp/installed" ||
    { echo "FAIL: not installed: $f"; exit 1; }
done
bad=$(grep -E '^bin/' "$tmp/installed" | grep -vx bin/protoc-gen-prpc || true)
[ -z "$bad" ] || { echo "FAIL: installed with the CLI off: $bad"; exit 1; }
echo "installed: $(wc -l < "$tmp/installed") files, bin/protoc-gen-prpc only in bin/"
