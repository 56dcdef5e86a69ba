#!/usr/bin/env bash
# The .deb installs with apt on a clean Debian 12 container (its declared
# dependencies are enough), creates the service users and the
# configuration, and `asflowctl run` works there for a normal user (the
# daemon starts on demand); its Python package imports once the packages
# it recommends are there. Upgrading to the same package again keeps an
# edited configuration.
source "$(dirname "$0")/lib.sh"
require podman

deb=$(DEB)
[ -n "$deb" ] || fail "no .deb in $ASFLOW_BUILD (setup.sh makes it)"
name="$RUN_ID-deb"
cleanup "podman rm -f -v -t 0 $name"
pod run -d --name "$name" -v "$deb:/tmp/asflow.deb:ro" "$BASE_IMAGE" sleep infinity >/dev/null
ex() { pod exec "$name" "$@"; }
log "apt-get install ./$(basename "$deb") in a clean $BASE_IMAGE"
ex sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends /tmp/asflow.deb' \
  >"$DEPLOY_TMP/apt.log" 2>&1 || { tail -30 "$DEPLOY_TMP/apt.log"; fail "apt-get install of the .deb"; }

ex asflowd --version | grep -Eq '^asflowd 0\.2\.0 \(commit [^ ]+\)$' || fail "asflowd --version"
ex asflowctl --version | grep -q '^asflowctl 0\.2\.0 ' || fail "asflowctl --version"
ex getent passwd asflow >/dev/null || fail "no user asflow"
ex getent passwd asflow-worker >/dev/null || fail "no user asflow-worker"
[ "$(ex stat -c '%U:%G %a' /etc/asflow/asflowd.conf)" = "root:asflow 640" ] || fail "asflowd.conf owner/mode"
ex test -f /usr/lib/systemd/system/asflowd.service || fail "no asflowd.service"
ex test -f /usr/lib/systemd/system/asflow-worker@.service || fail "no asflow-worker@.service"

# A normal user runs a flow; asflowctl starts the user's own daemon.
ex useradd --create-home alice
pod exec -i -u alice -w /home/alice "$name" sh -c 'mkdir -p ws && cat > ws/demo.flow.yaml' <<'FLOW'
name: demo
tasks:
  - name: numbers
    on: numbers.jsonl.gz
    run: [sh, -c, 'for i in 1 2 3; do echo "{{\"n\": $i}}"; done']
  - name: square
    for_each: {lines_of: numbers, as: {n: n}}
    on: squares/{n}.txt
    run: [sh, -c, 'echo $((ASFLOW_PARAM_n * ASFLOW_PARAM_n))']
FLOW
pod exec -u alice -w /home/alice/ws -e HOME=/home/alice "$name" asflowctl run demo.flow.yaml --plain \
  >"$DEPLOY_TMP/run.out" 2>&1 || { cat "$DEPLOY_TMP/run.out"; fail "asflowctl run as alice"; }
[ "$(ex cat /home/alice/ws/squares/3.txt)" = 9 ] || fail "squares/3.txt"
grep -q "run 1 succeeded" "$DEPLOY_TMP/run.out" || fail "no success line: $(cat "$DEPLOY_TMP/run.out")"
pod exec -u alice -e HOME=/home/alice "$name" asflowctl daemon stop >/dev/null

# The Python package, with the Debian packages the .deb recommends.
ex sh -c 'apt-get install -y -qq --no-install-recommends python3-grpcio python3-protobuf python3-yaml python3-rich' \
  >"$DEPLOY_TMP/apt-py.log" 2>&1 || { tail -20 "$DEPLOY_TMP/apt-py.log"; fail "apt-get install of the Python dependencies"; }
pod exec -u alice -w /home/alice -e HOME=/home/alice "$name" python3 -c '
import asflow, asflow.client
from asflow.v1 import worker_pb2
assert asflow.__file__.startswith("/usr/lib/python3/dist-packages/asflow/"), asflow.__file__
print(asflow.__version__)' >"$DEPLOY_TMP/py.out" 2>&1 || { cat "$DEPLOY_TMP/py.out"; fail "import asflow from the .deb"; }

# An edited conffile survives reinstalling the package.
ex sh -c 'echo "pool-size = 3" >> /etc/asflow/asflowd.conf'
ex sh -c 'dpkg -i --force-confold /tmp/asflow.deb' >"$DEPLOY_TMP/dpkg.log" 2>&1 \
  || { cat "$DEPLOY_TMP/dpkg.log"; fail "dpkg -i again"; }
ex grep -q '^pool-size = 3$' /etc/asflow/asflowd.conf || fail "the edited asflowd.conf was replaced"
