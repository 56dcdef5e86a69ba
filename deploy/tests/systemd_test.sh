#!/usr/bin/env bash
# The systemd units: `systemd-analyze verify` prints nothing for them (it
# exits 0 on unknown keys, so any output fails), and under a real systemd
# (PID 1 of a privileged container, the .deb installed) asflowd.service
# starts with its hardening, answers on its socket and runs a flow;
# asflow-worker@crawl.service joins its pool; both stop cleanly (inactive,
# not failed).
source "$(dirname "$0")/lib.sh"
require podman

deb=$(DEB)
[ -n "$deb" ] || fail "no .deb in $ASFLOW_BUILD (setup.sh makes it)"
image=localhost/asflow-systemd:test
ctx="$DEPLOY_TMP/context"
mkdir -p "$ctx"
cp "$deb" "$ctx/asflow.deb"
old=$(pod image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
log "building $image"
nice_podman build --pull=never -f "$ASFLOW_SOURCE/deploy/tests/systemd.Containerfile" -t "$image" "$ctx" \
  >"$DEPLOY_TMP/build.log" 2>&1 || { tail -30 "$DEPLOY_TMP/build.log"; fail "podman build"; }
new=$(pod image inspect --format '{{.Id}}' "$image")
if [ -n "$old" ] && [ "$old" != "$new" ]; then pod rmi "$old" >/dev/null 2>&1 || true; fi

name="$RUN_ID-systemd"
cleanup "podman rm -f -v -t 0 $name"
pod run -d --name "$name" --privileged --systemd=always "$image" >/dev/null
ex() { pod exec "$name" "$@"; }
on_fail "podman exec $name journalctl --no-pager -n 40"
booted() { ex systemctl is-system-running 2>/dev/null | grep -Eq '^(running|degraded)$'; }
wait_for 60 "systemd to boot" booted

# verify: the installed units, the template through an instance.
ex systemd-analyze verify asflowd.service asflow-worker@crawl.service >"$DEPLOY_TMP/verify.out" 2>&1 || true
if [ -s "$DEPLOY_TMP/verify.out" ]; then cat "$DEPLOY_TMP/verify.out"; fail "systemd-analyze verify printed the above"; fi
# The units in the source tree are the ones installed.
for unit in asflowd.service asflow-worker@.service; do
  ex cat "/usr/lib/systemd/system/$unit" | cmp -s - "$ASFLOW_SOURCE/deploy/systemd/$unit" \
    || fail "installed $unit differs from deploy/systemd/$unit"
done

# The daemon, with a loopback listener and a worker token for the worker.
ex sh -c 'openssl rand -hex 16 2>/dev/null > /etc/asflow/worker.token || head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n" > /etc/asflow/worker.token'
ex sh -c 'chgrp asflow /etc/asflow/worker.token && chmod 0640 /etc/asflow/worker.token'
ex sh -c 'cat >> /etc/asflow/asflowd.conf <<CONF
listen = "127.0.0.1:7443"
worker-token-file = "/etc/asflow/worker.token"
token-file = "/etc/asflow/worker.token"
CONF'
ex systemctl start asflowd.service
wait_for 20 "asflowd.service active" ex systemctl is-active asflowd.service
wait_for 20 "asflowd health on /run/asflow/asflowd.sock" ex asflowd health --timeout 1
[ "$(ex stat -c '%U %a' /run/asflow/asflowd.sock)" = "asflow 600" ] || fail "socket owner/mode"
# The user of a unit's main process.
main_user() { ex sh -c "stat -c %U /proc/\$(systemctl show -p MainPID --value $1)"; }
[ "$(main_user asflowd.service)" = asflow ] || fail "asflowd does not run as asflow"
ex sh -c 'systemd-analyze security asflowd.service --no-pager | tail -1' >&2 || true

# A flow run by the asflow user through the system daemon's socket.
ex runuser -u asflow -- mkdir -p /var/lib/asflow/workspaces/demo
pod exec -i "$name" runuser -u asflow -- sh -c 'cat > /var/lib/asflow/workspaces/demo/f.flow.yaml' <<'FLOW'
name: f
tasks:
  - name: hello
    on: hello.txt
    run: [sh, -c, 'echo hello from $(id -un)']
FLOW
pod exec -w /var/lib/asflow/workspaces/demo "$name" runuser -u asflow -- \
  asflowctl --socket /run/asflow/asflowd.sock run f.flow.yaml --plain >"$DEPLOY_TMP/run.out" 2>&1 \
  || { cat "$DEPLOY_TMP/run.out"; fail "flow through the service"; }
[ "$(ex cat /var/lib/asflow/workspaces/demo/hello.txt)" = "hello from asflow" ] || fail "hello.txt"

# A worker unit for pool crawl.
ex sh -c 'cat > /etc/asflow/asflow-worker.conf <<CONF
server = "127.0.0.1:7443"
token-file = "/etc/asflow/worker.token"
CONF'
ex sh -c 'chgrp asflow-worker /etc/asflow/asflow-worker.conf /etc/asflow/worker.token; chmod 0644 /etc/asflow/worker.token'
ex systemctl start asflow-worker@crawl.service
crawl() { ex asflowctl --socket /run/asflow/asflowd.sock workers | grep -q ' crawl '; }
wait_for 20 "a worker of pool crawl" crawl
[ "$(main_user asflow-worker@crawl.service)" = asflow-worker ] || fail "asflow-worker does not run as asflow-worker"

ex systemctl stop asflow-worker@crawl.service
ex systemctl stop asflowd.service
for unit in asflow-worker@crawl.service asflowd.service; do
  state=$(ex systemctl is-active "$unit" || true)
  [ "$state" = inactive ] || { ex journalctl -u "$unit" --no-pager | tail -20; fail "$unit is $state after stop"; }
done
ex journalctl -u asflowd.service --no-pager | grep -q "asflowd shutting down" || fail "no orderly shutdown"
