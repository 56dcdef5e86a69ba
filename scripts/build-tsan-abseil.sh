#!/usr/bin/env bash
# Builds Debian's own abseil (the source of the installed libabsl-dev, with
# Debian's patches) instrumented with ThreadSanitizer, as shared libraries
# with the same sonames, into build-tsan/abseil/. The tsan preset links
# with an RPATH (DT_RPATH, which also serves libgrpc's and libprotobuf's
# own dependencies) to build-tsan/abseil/lib, so one abseil is loaded in the
# process and TSan sees absl::Mutex (docs/testing.md, "ThreadSanitizer").
# Run by hand, once (not in CI): needs network access to Debian's archive.
# Usage: scripts/build-tsan-abseil.sh [-jN]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${1:--j2}
version=$(dpkg-query -W -f='${Version}' libabsl-dev)
work=$root/build-tsan/abseil-apt
prefix=$root/build-tsan/abseil
mkdir -p "$work/lists/partial" "$work/archives/partial"
cd "$work"
# A private source list and index: the system's apt configuration is not
# touched.
cat > sources.list <<SOURCES
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian-security bookworm-security main
SOURCES
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/none"
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives")
if [ ! -d src ]; then
  apt-get "${apt_opts[@]}" update
  apt-get "${apt_opts[@]}" source --download-only "abseil=$version"
  dpkg-source -x "abseil_${version#*:}.dsc" src
fi
# Debian's options for its shared build (debian/rules), plus TSan.
cmake -S src -B shared -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_STANDARD=17 \
  -DBUILD_SHARED_LIBS=ON -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib \
  -DCMAKE_C_FLAGS="-fsanitize=thread" -DCMAKE_CXX_FLAGS="-fsanitize=thread" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread"
nice -n 10 ninja -C shared "$jobs" install
# The sonames must match the system's, or the loader would take both.
for lib in "$prefix"/lib/libabsl_synchronization.so.*; do
  [ -e "/usr/lib/x86_64-linux-gnu/$(basename "$lib")" ] || { echo "$lib: no system library of that name" >&2; exit 1; }
done
echo "instrumented abseil $version in $prefix"
