#!/bin/bash
# codegen_seeds_compile.sh CODEGEN_FILES PROTOC_GEN_C SRC_DIR OUT_DIR CC
# For every codegen seed (a CodeGeneratorRequest protoc really sent): the
# generator must answer bad_* and garbage with an error, and for every
# other seed emit C that compiles cleanly (-Wall -Wextra -Werror, C11)
# together with protoc-c's output, and headers that C++ accepts too.
set -euo pipefail
tool=$1 protoc_gen_c=$2 src=$3 out=$4 cc=$5
rm -rf "$out"
mkdir -p "$out"
flags=(-std=c11 -Wall -Wextra -Werror -I"$src/include"
  $(pkg-config --cflags grpc libprotobuf-c))
compiled=0
for seed in "$src"/fuzz/corpus/codegen/*; do
  name=$(basename "$seed")
  dir=$out/$name
  set +e
  "$tool" "$seed" "$dir" "$protoc_gen_c" > "$out/$name.log" 2>&1
  rc=$?
  set -e
  case $name in
  bad_* | garbage)
    if [ $rc -ne 3 ]; then
      cat "$out/$name.log"
      echo "$name: the generator did not refuse it (rc $rc)" >&2
      exit 1
    fi
    echo "$name: refused: $(sed -n 's/^protoc-gen-prpc: error: //p' "$out/$name.log")"
    continue
    ;;
  esac
  if [ $rc -ne 0 ]; then
    cat "$out/$name.log"
    echo "$name: the generator failed (rc $rc)" >&2
    exit 1
  fi
  while IFS= read -r c; do
    "$cc" "${flags[@]}" -I"$dir" -c "$c" -o "$c.o"
    compiled=$((compiled + 1))
  done < <(find "$dir" -name '*.prpc.c')
  if command -v c++ > /dev/null; then
    while IFS= read -r h; do
      c++ -std=c++11 -fsyntax-only -Wall -Werror -I"$src/include" -I"$dir" \
        $(pkg-config --cflags grpc libprotobuf-c) -x c++ "$h"
    done < <(find "$dir" -name '*.prpc.h')
  fi
  echo "$name: $(find "$dir" -name '*.prpc.c' | wc -l) .prpc.c compiled"
done
[ $compiled -gt 0 ] || { echo "nothing compiled" >&2; exit 1; }
echo "$compiled generated sources compiled"
