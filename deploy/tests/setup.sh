#!/usr/bin/env bash
# Fixture of the deploy tests: the base image debian:bookworm-slim (made
# with debootstrap when no registry is reachable; kept in podman's storage
# between runs), the .deb of this build (cpack), and localhost/asflow:test
# built from deploy/Containerfile with that .deb (PREBUILT_DEB, so
# nothing compiles inside the image).
source "$(dirname "$0")/lib.sh"
require podman runc debootstrap cpack dpkg-shlibdeps

if ! pod image exists "$BASE_IMAGE"; then
  log "making $BASE_IMAGE with debootstrap (once per machine)"
  root="$DEPLOY_TMP/rootfs"
  nice -n 10 debootstrap --variant=minbase bookworm "$root" >"$DEPLOY_TMP/debootstrap.log" 2>&1 \
    || { tail -20 "$DEPLOY_TMP/debootstrap.log"; fail "debootstrap failed"; }
  # As the official image: the updates and security suites, no docs, no
  # package caches.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
    >"$root/etc/dpkg/dpkg.cfg.d/docker"
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright -type f -delete
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | nice_podman import --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - localhost/bookworm-base >/dev/null
  pod tag localhost/bookworm-base "$BASE_IMAGE"
  rm -rf "$root"
fi

log "packing the .deb"
rm -f "$ASFLOW_BUILD"/asflow_*.deb
(cd "$ASFLOW_BUILD" && nice -n 10 cpack -G DEB >"$DEPLOY_TMP/cpack.log" 2>&1) \
  || { cat "$DEPLOY_TMP/cpack.log"; fail "cpack failed"; }
deb=$(DEB)
[ -n "$deb" ] || fail "cpack made no .deb"

log "building $TEST_IMAGE from deploy/Containerfile with $(basename "$deb")"
ctx="$DEPLOY_TMP/context"
mkdir -p "$ctx"
cp "$deb" "$ctx/"
old=$(pod image inspect --format '{{.Id}}' "$TEST_IMAGE" 2>/dev/null || true)
dangling_before=$(pod images -q --filter dangling=true | sort)
nice_podman build --format docker --pull=never --build-arg PREBUILT_DEB="$(basename "$deb")" \
  -f "$ASFLOW_SOURCE/deploy/Containerfile" -t "$TEST_IMAGE" "$ctx" >"$DEPLOY_TMP/build.log" 2>&1 \
  || { tail -40 "$DEPLOY_TMP/build.log"; fail "podman build failed"; }
new=$(pod image inspect --format '{{.Id}}' "$TEST_IMAGE")
# The previous test image (now untagged) goes, with its layers.
if [ -n "$old" ] && [ "$old" != "$new" ]; then pod rmi "$old" >/dev/null 2>&1 || true; fi
# The build's own untagged stage images (the .deb stage) go too.
for id in $(comm -13 <(echo "$dangling_before") <(pod images -q --filter dangling=true | sort)); do
  pod rmi "$id" >/dev/null 2>&1 || true
done
log "image $TEST_IMAGE: $(pod image inspect --format '{{.Size}}' "$TEST_IMAGE") bytes; deb $(stat -c %s "$deb") bytes"
