#!/bin/sh
# From a .proto to a client and a server over a named pipe, in ten lines, in
# an application built against the installed piperpc (in $PREFIX, default
# ~/.local). Run from the top of the piperpc repository.
set -e
prefix=${PREFIX:-$HOME/.local} app=${APP:-/tmp/hello-app}
mkdir -p "$app" && cp examples/quickstart/hello.proto examples/quickstart/server.c \
  examples/quickstart/client.c examples/quickstart/CMakeLists.txt "$app"
cmake -S "$app" -B "$app/build" -DCMAKE_PREFIX_PATH="$prefix" > /dev/null
cmake --build "$app/build" > /dev/null  # protoc + protoc-c + protoc-gen-prpc, then cc
"$app/build/hello_server" "unix:$app/hello.sock" &  # the server, on a named pipe
"$app/build/hello_client" "unix:$app/hello.sock" tutorial  # prints "Hello tutorial"
kill $! && wait $!  # SIGTERM: the server drains and removes its socket
