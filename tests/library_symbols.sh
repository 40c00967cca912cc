#!/bin/bash
# library_symbols.sh LIBPIPERPC.SO SRC_DIR [SANITIZERS]
# The library must not end the process or write to stdout, whatever a peer
# sends: its dynamic symbol table (and the nanopb codec's static library)
# may not import abort, exit, assert, raise
# or any stdout writer, and every fprintf/fputs/fwrite/vfprintf in its
# sources writes to stderr. It imports from gRPC core only what gRPC's
# public headers declare, and no C++ symbol. Skipped (77) in sanitizer builds, whose
# runtimes add their own imports.
set -euo pipefail
lib=$1 src=$2 san=${3:-}
if [ -n "$san" ]; then
  echo "sanitizer build ($san): skipped"
  exit 77
fi
forbidden='^(abort|exit|_exit|_Exit|quick_exit|raise|__assert_fail|__assert_perror_fail|printf|vprintf|__printf_chk|__vprintf_chk|puts|putchar|putchar_unlocked|perror|psignal|stdout|_IO_stdout_)$'
imports=$(nm -D --undefined-only "$lib" | awk '{print $2}' | sed 's/@.*//')
# The nanopb codec is a static library of its own, when built.
nanopb=$(dirname "$lib")/libpiperpc_nanopb.a
if [ -f "$nanopb" ]; then
  imports+=$'\n'$(nm --undefined-only "$nanopb" | awk 'NF == 2 {print $2}')
fi
[ -n "$imports" ] || { echo "no imports read from $lib" >&2; exit 1; }
bad=$(grep -E "$forbidden" <<< "$imports" || true)
if [ -n "$bad" ]; then
  echo "libpiperpc imports what may end the process or write to stdout:" >&2
  echo "$bad" >&2
  exit 1
fi
# gRPC core's public API only: no C++ (mangled) import, and every symbol
# taken from libgrpc or libgpr is declared in a public header, so that a
# libgrpc update that keeps its C API cannot keep the library from loading
# (the internals piperpc may use are looked up at run time: transport/core.c).
cxx=$(grep -E '^_Z' <<< "$imports" || true)
if [ -n "$cxx" ]; then
  echo "libpiperpc imports C++ symbols (internals of gRPC or abseil):" >&2
  echo "$cxx" >&2
  exit 1
fi
grpc_libs=$(ldd "$lib" | awk '/libgrpc\.so|libgpr\.so/ {print $3}')
grpc_defs=$(for l in $grpc_libs; do nm -D --defined-only "$l"; done |
  awk '{print $3}' | sed 's/@.*//' | sort -u)
from_grpc=$(comm -12 <(sort -u <<< "$imports") <(cat <<< "$grpc_defs"))
undeclared=""
for sym in $from_grpc; do
  grep -rqw -- "$sym" /usr/include/grpc || undeclared+="$sym "
done
if [ -n "$undeclared" ]; then
  echo "libpiperpc imports gRPC symbols no public header declares:" >&2
  echo "$undeclared" >&2
  exit 1
fi

# Writers that take a stream: only ever stderr in the library's sources.
cd "$src"
files=(runtime/*.c transport/*.c client/*.c server/*.c)
calls=$(grep -nE '\b(v?fprintf|fputs|fputc|fwrite|putc)\s*\(' "${files[@]}" || true)
stray=$(grep -vE '\b(v?fprintf|fputs|fputc|putc)\s*\(\s*stderr' <<< "$calls" |
  grep -vE '\bfwrite\s*\([^;]*,\s*stderr\s*\)' | grep -v '^$' || true)
if [ -n "$stray" ]; then
  echo "stream writes not to stderr in the library:" >&2
  echo "$stray" >&2
  exit 1
fi
echo "$(wc -l <<< "$imports") imports checked: no abort/exit/assert/stdout;" \
  "$(wc -w <<< "$from_grpc") from gRPC, all in its public headers;" \
  "$(grep -c . <<< "$calls") stream writes, all to stderr"
