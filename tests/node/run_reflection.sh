#!/bin/bash
# Runs reflection_client.js (the npm package grpc-js-reflection-client)
# against a piperpc server. The packages are installed once into CACHE_DIR
# with npm; without node, npm or the registry the test is skipped (77).
#
#   run_reflection.sh CACHE_DIR SERVER greeter|echo
set -u
cache=$1 server=$2 kind=$3
here=$(cd "$(dirname "$0")" && pwd)
pkgs="grpc-js-reflection-client@1.4.2 @grpc/grpc-js@1.14.7"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "skipped: node and npm are needed"; exit 77
fi
if [ ! -f "$cache/.installed" ] || [ "$(cat "$cache/.installed")" != "$pkgs" ]; then
  mkdir -p "$cache"
  # A lock: ctest -j may run the greeter and echo cases at once.
  exec 9>"$cache/.lock"
  flock 9
  if [ ! -f "$cache/.installed" ] || [ "$(cat "$cache/.installed")" != "$pkgs" ]; then
    # shellcheck disable=SC2086
    if ! timeout 300 npm install --prefix "$cache" --no-audit --no-fund \
         --loglevel=error $pkgs; then
      echo "skipped: npm could not install $pkgs (offline?)"; exit 77
    fi
    echo "$pkgs" > "$cache/.installed"
  fi
  flock -u 9
fi
NODE_PATH="$cache/node_modules" exec node "$here/reflection_client.js" "$server" "$kind"
