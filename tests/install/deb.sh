#!/bin/bash
# The Debian packages of a build (cmake/PrpcPackaging.cmake): makes them
# with cpack -G DEB, checks their control fields and contents with dpkg-deb
# (and lintian, when installed), unpacks them with dpkg-deb -x into an
# empty directory, and builds and runs the quick start against that prefix
# with CMake and with pkg-config (tests/install/run.sh).
#   deb.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
for t in cpack dpkg-deb; do
  command -v $t > /dev/null || { echo "$t not found: skipped"; exit 77; }
done
tmp=$(mktemp -d /tmp/prpc-deb-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
version=$(cache CMAKE_PROJECT_VERSION)
release=$(cache PRPC_DEB_RELEASE)
with_cli=$(cache PRPC_BUILD_CLI)
soversion=${version%%.*}
libpkg=libpiperpc$soversion

(cd "$tmp" && cpack -G DEB -B "$tmp/pkgs" --config "$build/CPackConfig.cmake") \
  > "$tmp/cpack.log" 2>&1 || { cat "$tmp/cpack.log"; fail "cpack"; }
ls "$tmp/pkgs"/*.deb | xargs -n1 basename | sort > "$tmp/debs"
arch=$(dpkg --print-architecture)
printf '%s\n' "${libpkg}_${version}-${release}_$arch.deb" \
  "libpiperpc-dev_${version}-${release}_$arch.deb" \
  "piperpc-tools_${version}-${release}_$arch.deb" | sort > "$tmp/want"
diff -u "$tmp/want" "$tmp/debs" || fail "not the packages expected"
deb() { echo "$tmp/pkgs/$1_${version}-${release}_$arch.deb"; }

# ---- control fields ----
field() { dpkg-deb -f "$(deb "$1")" "$2"; }
# "has PKG FIELD DEP...": each DEP ("name" or "name (op version)") is one
# of FIELD's comma-separated entries; a bare name matches any version.
has() {
  local p=$1 f=$2 v w
  v=$(field "$p" "$f")
  shift 2
  for w in "$@"; do
    printf '%s\n' "$v" | tr ',' '\n' | awk -v w="$w" '
      { sub(/^ +/, ""); sub(/ +$/, "") }
      $0 == w || index($0, w " (") == 1 { found = 1 }
      END { exit !found }' || fail "$p: $f is '$v', wants $w"
  done
}
for p in "$libpkg" libpiperpc-dev piperpc-tools; do
  echo "== $p: dpkg-deb -I"
  dpkg-deb -I "$(deb "$p")" | sed -n '/^ [A-Z][A-Za-z-]*:/,$p'
  [ "$(field "$p" Version)" = "$version-$release" ] || fail "$p: version"
done
# The shared library: its Debian runtime dependencies, and a shlibs file.
has "$libpkg" Depends libc6 libgrpc29 libprotobuf-c1
dpkg-deb -I "$(deb "$libpkg")" shlibs | grep -q "^libpiperpc $soversion $libpkg" ||
  fail "$libpkg: no shlibs entry"
[ "$(field "$libpkg" Section)" = libs ] || fail "$libpkg: section"
# -dev: the library of exactly this version, the generator its CMake
# package names, and the -dev packages its headers and .pc file require.
has libpiperpc-dev Depends "$libpkg (= $version-$release)" \
  "piperpc-tools (= $version-$release)" libgrpc-dev libprotobuf-c-dev \
  protobuf-compiler protobuf-c-compiler
# ...and the -dev package of each module piperpc.pc requires (privately
# too: pkg-config looks for those as well).
pc_requires=$(dpkg-deb --fsys-tarfile "$(deb libpiperpc-dev)" |
  tar -xO --wildcards '*/pkgconfig/piperpc.pc' |
  sed -n 's/^Requires\(\.private\)\{0,1\}: *//p' | tr ' ,' '\n\n' |
  grep -v '^$' | grep -v '[<>=]' || true)
[ -n "$pc_requires" ] || fail "piperpc.pc requires nothing"
for m in $pc_requires; do
  p=$(dpkg -S "*/pkgconfig/$m.pc" 2>/dev/null | head -1 | cut -d: -f1)
  [ -n "$p" ] || fail "no Debian package has $m.pc"
  has libpiperpc-dev Depends "$p"
done
# The tools: protoc-gen-prpc (protobuf-c), prpc (gRPC core, jansson).
has piperpc-tools Depends libc6 libprotobuf-c1
if [ "$with_cli" = ON ]; then
  has piperpc-tools Depends libgrpc29 libjansson4
fi

# ---- contents ----
files() { # the regular files and symlinks of package $1, without the ./usr
  dpkg-deb -c "$(deb "$1")" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./usr/||'
}
for p in "$libpkg" libpiperpc-dev piperpc-tools; do
  files "$p" | sort > "$tmp/$p.files"
  echo "== $p: dpkg-deb -c (files)"
  sed 's/^/  /' "$tmp/$p.files"
done
want_only() { # "want_only PKG REGEX": every file of PKG matches REGEX
  local bad
  bad=$(grep -vE "$2" "$tmp/$1.files" || true)
  [ -z "$bad" ] || fail "$1 holds files it should not: $bad"
}
want_has() { # "want_has PKG REGEX...": each REGEX matches a file of PKG
  local p=$1 r
  shift
  for r in "$@"; do
    grep -qE "$r" "$tmp/$p.files" || fail "$p lacks $r"
  done
}
lib='lib(/[a-z0-9_-]+-linux-gnu[a-z]*)?'
want_only "$libpkg" "^$lib/libpiperpc\.so\.$soversion(\.[0-9.]+)?$|^share/doc/"
want_has "$libpkg" "^$lib/libpiperpc\.so\.$soversion$" \
  "^$lib/libpiperpc\.so\.$version$"
want_has libpiperpc-dev '^include/piperpc/piperpc\.h$' \
  '^include/piperpc/method\.h$' "^$lib/libpiperpc\.so$" "^$lib/libpiperpc\.a$" \
  "^$lib/pkgconfig/piperpc\.pc$" "^$lib/cmake/piperpc/piperpcConfig\.cmake$" \
  "^$lib/cmake/piperpc/piperpcConfigVersion\.cmake$" \
  "^$lib/cmake/piperpc/piperpcTargets\.cmake$" \
  "^$lib/cmake/piperpc/PrpcGenerate\.cmake$" \
  '^share/piperpc/proto/helloworld\.proto$' \
  '^share/piperpc/proto/grpc/health/v1/health\.proto$'
want_only libpiperpc-dev "^include/|^$lib/(libpiperpc[a-z_]*\.(so|a)|pkgconfig/|cmake/piperpc/)|^share/"
want_has piperpc-tools '^bin/protoc-gen-prpc$'
if [ "$with_cli" = ON ]; then
  want_has piperpc-tools '^bin/prpc$'
  want_only piperpc-tools '^bin/(protoc-gen-prpc|prpc)$|^share/'
else
  want_only piperpc-tools '^bin/protoc-gen-prpc$|^share/'
fi
# Every file "cmake --install" installs is in exactly one package: an
# install() rule of a component the packages leave out shows here.
cmake --install "$build" --prefix "$tmp/all" > /dev/null
(cd "$tmp/all" && find . ! -type d | sed 's|^\./||' | sort) > "$tmp/installed"
sort "$tmp"/*.files > "$tmp/packaged"
dups=$(uniq -d "$tmp/packaged")
[ -z "$dups" ] || fail "in two packages: $dups"
missing=$(comm -23 "$tmp/installed" "$tmp/packaged" | grep -v '^share/doc/' || true)
[ -z "$missing" ] || fail "installed but in no package (give its install()" \
  "rule COMPONENT runtime, dev or tools): $missing"
echo "every installed file is in one package"

# The library: its soname, and what it links.
mkdir -p "$tmp/root"
for p in "$libpkg" libpiperpc-dev piperpc-tools; do
  dpkg-deb -x "$(deb "$p")" "$tmp/root"
done
so=$(find "$tmp/root" -name "libpiperpc.so.$version")
soname=$(objdump -p "$so" | awk '$1 == "SONAME" {print $2}')
[ "$soname" = "libpiperpc.so.$soversion" ] || fail "soname is $soname"
echo "== libpiperpc.so.$version: SONAME $soname, NEEDED" \
  $(objdump -p "$so" | awk '$1 == "NEEDED" {print $2}')

if command -v lintian > /dev/null; then
  echo "== lintian"
  lintian --no-tag-display-limit "$tmp"/pkgs/*.deb || true
else
  echo "== lintian: not installed, not run"
fi

# ---- the quick start against the unpacked packages ----
echo "== the quick start against the unpacked packages in $tmp/root/usr"
PRPC_INSTALLED_PREFIX=$tmp/root/usr bash "$src/tests/install/run.sh" \
  "$build" "$src"
