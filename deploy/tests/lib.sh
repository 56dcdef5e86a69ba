# Shared by the deploy tests (sourced): podman set up for this kind of
# machine, the base image, the asflow test image, cleanup of what a test
# started. Every test gets ASFLOW_SOURCE and ASFLOW_BUILD from ctest.
set -euo pipefail

: "${ASFLOW_SOURCE:?}" "${ASFLOW_BUILD:?}"
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: the deploy tests need root (rootful podman, a privileged systemd container)" >&2
  exit 77
fi
export DEBIAN_FRONTEND=noninteractive
# runc rather than crun (which refuses this VM's hybrid cgroups) and
# ulimits below what podman asks for by default (raising them needs
# CAP_SYS_RESOURCE, which the VM lacks).
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ASFLOW_SOURCE/deploy/tests/containers.conf}"
DEPLOY_TMP=$(mktemp -d "${TMPDIR:-/tmp}/asflow-deploy.XXXXXX")
# Names of everything this test creates carry this prefix.
RUN_ID="asflowt$$"
CLEANUP=()
ON_FAIL=()  # commands whose output helps when the test fails

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
pod() { podman "$@"; }
# Container builds are the heavy part: below other work on 2 cores.
nice_podman() { nice -n 10 podman "$@"; }

on_exit() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ]; then
    for cmd in "${ON_FAIL[@]}"; do echo "--- $cmd" >&2; eval "$cmd" 2>&1 | tail -30 >&2; done
  fi
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do eval "${CLEANUP[i]}" >/dev/null 2>&1; done
  for v in $(cat "$DEPLOY_TMP/anon-volumes" 2>/dev/null); do podman volume rm -f "$v" >/dev/null 2>&1; done
  rm -rf "$DEPLOY_TMP"
  if [ $rc -eq 0 ]; then log "PASS: $(basename "$0")"; else log "FAIL: $(basename "$0") (exit $rc)"; fi
  exit $rc
}
trap on_exit EXIT
cleanup() { CLEANUP+=("$*"); }
on_fail() { ON_FAIL+=("$*"); }
# Notes the anonymous volumes (the image's VOLUMEs) of these containers,
# removed at exit: neither `podman-compose down -v` nor `podman kube down`
# removes them.
track_volumes() {
  for c in "$@"; do pod inspect --format '{{range .Mounts}}{{.Name}} {{end}}' "$c" 2>/dev/null; done \
    | tr ' ' '\n' | grep -E '^[0-9a-f]{64}$' >>"$DEPLOY_TMP/anon-volumes" || true
}

require() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/install-deps.sh installs it)"
  done
}

# Polls "$@" every 0.5 s until it succeeds or SECONDS pass.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >"$DEPLOY_TMP/wait.out" 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      tail -5 "$DEPLOY_TMP/wait.out" >&2
      fail "timed out after ${seconds}s waiting for $what"
    fi
    sleep 0.5
  done
}

BASE_IMAGE=docker.io/library/debian:bookworm-slim
TEST_IMAGE=localhost/asflow:test
DEB() { ls "$ASFLOW_BUILD"/asflow_*_*.deb 2>/dev/null | head -1; }
