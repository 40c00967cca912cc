#!/bin/bash
# piperpc set-up in one command, on Debian 12:
#   ./run.sh demo   install what is missing, build, run the Greeter demo over
#                   a unix socket and over TCP
#   ./run.sh test   install what is missing, build, run the whole test suite
#   ./run.sh bench  install what is missing (with gRPC C++ and gnuplot),
#                   build, run the short benchmark (a few minutes)
# Packages come from Debian with apt-get (as root, or through sudo).
# BUILD_DIR (default: build) and JOBS (default: nproc) can be set.
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-}
case $mode in demo | test | bench) ;; *)
  echo "usage: $0 demo|test|bench" >&2
  exit 2
  ;;
esac
build=${BUILD_DIR:-build}
src=$PWD
jobs=${JOBS:-$(nproc)}

packages=(gcc make cmake pkg-config
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  libprotoc-dev libjansson-dev
  libmicrohttpd-dev # HTTP/1.1 with JSON on the gRPC socket (docs/http.md)
  libuv1-dev # the libuv event-loop example (examples/eventloop)
  nanopb libnanopb-dev) # the nanopb backend (its demos, bench server, tests)
if [ "$mode" != demo ]; then
  # The benchmark's gRPC C++ peer (its smoke run is part of the tests).
  packages+=(g++ libgrpc++-dev protobuf-compiler-grpc)
fi
if [ "$mode" = bench ]; then
  packages+=(gnuplot-nox python3)
fi
if [ "$mode" = test ]; then
  # Cross-language peers (Python grpcio and its stub generator), valgrind,
  # openssl for the TLS test certificates, setpriv to run a client as
  # another user, doxygen for the API reference, clang and its runtimes for
  # the fuzzers (libFuzzer), dpkg-dev (dpkg-shlibdeps) for the Debian
  # packages' Depends (install.deb_packages).
  packages+=(python3 python3-grpcio python3-protobuf protobuf-compiler-grpc
    valgrind openssl util-linux doxygen clang libclang-rt-14-dev dpkg-dev
    groff-base) # groff: the man pages' check (docs.man_pages)
  packages+=(curl) # curl --unix-socket: the HTTP/JSON tests (http.*)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" > /dev/null
fi

echo "== building in $build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRPC_WERROR=ON > /dev/null
cmake --build "$build" -j "$jobs" > "$build.log" 2>&1 ||
  { cat "$build.log"; exit 1; }

if [ "$mode" = bench ]; then
  echo "== running the short benchmark (bench/prpc-bench --short)"
  exec /usr/bin/python3 bench/prpc-bench --bin-dir "$build" --short
fi

if [ "$mode" = test ]; then
  echo "== running the tests"
  (cd "$build" && ctest -j "$jobs" --output-on-failure)
  # The same unit, end-to-end, interop and example tests again, built with
  # AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer (gRPC
  # core itself is not instrumented). Valgrind, install and benchmark runs
  # are left to the plain build, and so is the benchmark's C++ peer.
  echo "== building with -fsanitize=address,undefined in $build-asan"
  cmake -S . -B "$build-asan" -DCMAKE_BUILD_TYPE=Debug -DPRPC_WERROR=ON \
    -DPRPC_SANITIZE=address,undefined -DPRPC_BENCH_CPP=OFF > /dev/null
  cmake --build "$build-asan" -j "$jobs" > "$build-asan.log" 2>&1 ||
    { cat "$build-asan.log"; exit 1; }
  echo "== running the tests under the sanitizers"
  (
    cd "$build-asan"
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ctest -j "$jobs" --output-on-failure -E "^(valgrind|install|bench)\."
  )

  # ThreadSanitizer: the end-to-end, example, C-C interop, fault, HTTP and short
  # soak tests, where our threads meet. gRPC core is not instrumented:
  # tests/tsan.supp explains what is suppressed and why.
  echo "== building with -fsanitize=thread in $build-tsan"
  # Every tests/e2e_*.c program, and the programs the tests below start.
  tsan_targets=($(cd tests && ls e2e_*.c | sed 's/\.c$//')
    greeter_server greeter_client chat_server chat_client interop_server
    interop_client workers_master workers_worker e2e_fault fault_server soak
    epoll_daemon uv_daemon kvd kvctl prpc http_server bench_server)
  cmake -S . -B "$build-tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPRPC_WERROR=ON -DPRPC_SANITIZE=thread > /dev/null
  cmake --build "$build-tsan" -j "$jobs" --target "${tsan_targets[@]}" \
    > "$build-tsan.log" 2>&1 || { cat "$build-tsan.log"; exit 1; }
  echo "== running the tests under ThreadSanitizer"
  (
    cd "$build-tsan"
    export TSAN_OPTIONS="ignore_noninstrumented_modules=1 halt_on_error=0 \
second_deadlock_stack=1 suppressions=$src/tests/tsan.supp"
    ctest -j "$jobs" --output-on-failure \
      -R "^(e2e_[a-z]+\.|examples\.|interop\.c_client_c_server_|tls\.|fault\.|http\.|soak\.short$)"
  )

  # The fuzzers, each for PRPC_FUZZ_SECONDS (default 20) from its seeds,
  # $jobs at a time.
  echo "== building the fuzzers (clang, libFuzzer) in $build-fuzz"
  CC=clang cmake -S . -B "$build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPRPC_WERROR=ON -DPRPC_FUZZ=ON \
    -DPRPC_FUZZ_SECONDS="${PRPC_FUZZ_SECONDS:-20}" > /dev/null
  cmake --build "$build-fuzz" -j "$jobs" --target prpc_fuzzers \
    > "$build-fuzz.log" 2>&1 || { cat "$build-fuzz.log"; exit 1; }
  echo "== running the fuzzers"
  (cd "$build-fuzz" && ctest -j "$jobs" -L fuzz --output-on-failure)
  cat "$build-fuzz"/fuzz/work/*/summary.txt
  exit 0
fi

echo "== demo: greeter_server on a unix socket and on TCP 127.0.0.1"
tmp=$(mktemp -d /tmp/piperpc-demo-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
sock="unix:$tmp/greeter.sock"
coproc SERVER { exec "$build/greeter_server" --listen "$sock" --listen 127.0.0.1:0; }
server_pid=$SERVER_PID
port=
while read -r line <&"${SERVER[0]}"; do
  echo "  $line"
  case $line in
  *"(port "*) port=${line##*(port } && port=${port%)} ;;
  *ready) break ;;
  esac
done
[ -n "$port" ] || { echo "the server did not start" >&2; exit 1; }
echo "== one call over the pipe"
"$build/greeter_client" --target "$sock" --name pipe
echo "== 5000 calls each: unix socket, then TCP"
"$build/greeter_client" --target "$sock" --count 5000 | tail -n 1
"$build/greeter_client" --target "127.0.0.1:$port" --count 5000 | tail -n 1
kill -TERM "$server_pid"
wait "$server_pid"
echo "== the server drained and removed $tmp/greeter.sock: $( [ -e "$tmp/greeter.sock" ] && echo no || echo yes)"
