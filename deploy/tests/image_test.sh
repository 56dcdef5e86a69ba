#!/usr/bin/env bash
# The image built from deploy/Containerfile runs asflowd as a non-root user
# and answers health: its HEALTHCHECK turns healthy, `asflowd health`
# answers SERVING, and a flow runs with its outputs on the /data volume;
# SIGTERM stops it with exit code 0 within seconds.
source "$(dirname "$0")/lib.sh"
require podman

name="$RUN_ID-image"
cleanup "podman rm -f -v -t 0 $name"
cleanup "podman volume rm -f $name-data $name-state"
pod run -d --name "$name" -v "$name-state:/var/lib/asflow" -v "$name-data:/data" "$TEST_IMAGE" >/dev/null
on_fail "podman logs $name"
wait_for 20 "asflowd health in the container" pod exec "$name" asflowd health --timeout 1

out=$(pod exec "$name" asflowd health)
[ "$out" = "asflowd health: SERVING (unix:/run/asflow/asflowd.sock)" ] || fail "health said: $out"
# The image's HEALTHCHECK (podman runs it on demand here: no systemd timers).
pod healthcheck run "$name" || fail "HEALTHCHECK failed"
[ "$(pod inspect --format '{{.State.Health.Status}}' "$name")" = healthy ] || fail "not healthy"
[ "$(pod exec "$name" id -un)" = asflow ] || fail "not running as asflow"
[ "$(pod exec "$name" id -u)" = 10001 ] || fail "uid is not 10001"
pod exec "$name" asflowd --version | grep -Eq '^asflowd 0\.2\.0 \(commit [^ ]+\)$' || fail "asflowd --version"
pod exec "$name" asflow-worker --version | grep -q '^asflow-worker 0\.2\.0 ' || fail "asflow-worker --version"

# A flow in the data volume.
pod exec -i "$name" sh -c 'mkdir -p /data/ws && cat > /data/ws/hello.flow.yaml' <<'FLOW'
name: hello
tasks:
  - name: greet
    for_each: {values: [a, b, c], as: who}
    on: out/{who}.txt.zst
    run: [sh, -c, 'echo "hello $ASFLOW_PARAM_who"']
FLOW
pod exec -w /data/ws "$name" asflowctl run hello.flow.yaml --plain >"$DEPLOY_TMP/run.out" 2>&1 \
  || { cat "$DEPLOY_TMP/run.out"; fail "asflowctl run failed in the container"; }
mnt=$(pod volume inspect --format '{{.Mountpoint}}' "$name-data")
got=$(zstd -dc "$mnt/ws/out/b.txt.zst")
[ "$got" = "hello b" ] || fail "output on the volume: '$got'"
[ "$(stat -c %u "$mnt/ws/out/b.txt.zst")" = 10001 ] || fail "output not owned by uid 10001"

start=$SECONDS
pod stop -t 30 "$name" >/dev/null
code=$(pod inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || fail "asflowd exited $code on SIGTERM"
[ $((SECONDS - start)) -le 10 ] || fail "stopping took $((SECONDS - start)) s"
pod logs "$name" 2>/dev/null | grep -q "asflowd shutting down" || fail "no orderly shutdown in the log"
