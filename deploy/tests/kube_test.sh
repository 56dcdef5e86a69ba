#!/usr/bin/env bash
# deploy/k8s: `kubectl kustomize` builds it (when kubectl is installed),
# every object passes the Kubernetes schema and a strict unknown-field
# check offline (k8s/check.mjs), and its Pod form (k8s/pod-form.mjs) runs
# under `podman kube play`: the daemon answers its probe command, the 3
# workers of the Deployment register over TLS with the worker token from
# the Secret, and a flow with `pool: crawl` runs on them, its outputs on
# the daemon's PVC.
source "$(dirname "$0")/lib.sh"
require podman node npm openssl zstd

# The checker's packages (npm registry), kept in the build tree.
tools="$ASFLOW_BUILD/deploy-k8s-check"
if ! cmp -s "$ASFLOW_SOURCE/deploy/tests/k8s/package-lock.json" "$tools/package-lock.json" 2>/dev/null \
    || [ ! -d "$tools/node_modules" ]; then
  log "npm ci (kubernetes-models, @kubernetes/client-node, yaml)"
  rm -rf "$tools" && mkdir -p "$tools"
  cp "$ASFLOW_SOURCE/deploy/tests/k8s/package.json" "$ASFLOW_SOURCE/deploy/tests/k8s/package-lock.json" "$tools/"
  (cd "$tools" && npm ci --no-audit --no-fund >"$DEPLOY_TMP/npm.log" 2>&1) || { tail -20 "$DEPLOY_TMP/npm.log"; fail "npm ci"; }
fi
cp "$ASFLOW_SOURCE"/deploy/tests/k8s/*.mjs "$tools/"

# A copy of deploy/k8s with the secrets kustomize's generator reads.
k8s="$DEPLOY_TMP/k8s"
cp -r "$ASFLOW_SOURCE/deploy/k8s" "$k8s"
"$ASFLOW_SOURCE/deploy/make-secrets.sh" "$k8s/secrets" asflowd asflowd.asflow.svc asflowd.asflow.svc.cluster.local >/dev/null
chmod 0644 "$k8s"/secrets/*
built="$DEPLOY_TMP/built.yaml"
if command -v kubectl >/dev/null; then
  kubectl kustomize "$k8s" >"$built" 2>"$DEPLOY_TMP/kustomize.err" || { cat "$DEPLOY_TMP/kustomize.err"; fail "kubectl kustomize"; }
else
  # No kubectl: the resources as they are, and the Secrets made here.
  log "kubectl is not installed: checking the files kustomization.yaml lists (no kustomize build)"
  for f in $(awk '/^resources:/{r=1;next} /^[a-z]/{r=0} r && /- /{print $2}' "$k8s/kustomization.yaml"); do
    cat "$k8s/$f"; echo "---"
  done >"$built"
fi
node "$tools/check.mjs" "$built" >&2 || fail "deploy/k8s does not pass the schema and strict checks (above)"
# The checker finds what it should: an unknown field and a wrong type.
sed 's/periodSeconds: 10/periodSecond: 10/' "$built" >"$DEPLOY_TMP/bad.yaml"
if node "$tools/check.mjs" "$DEPLOY_TMP/bad.yaml" >"$DEPLOY_TMP/bad.out"; then fail "the checker missed an unknown field"; fi
grep -q 'unknown field "periodSecond" in V1Probe' "$DEPLOY_TMP/bad.out" || fail "$(cat "$DEPLOY_TMP/bad.out")"

# The Pod form under podman kube play, on a network of its own.
play="$DEPLOY_TMP/play.yaml"
node "$tools/pod-form.mjs" "$built" "$play" "$TEST_IMAGE"
net="$RUN_ID-net"
pod network create "$net" >/dev/null
cleanup "podman network rm -f $net"
cleanup "podman volume rm -f state-asflowd-0 data-asflowd-0 asflowd-config"
cleanup "podman kube down $play"
log "podman kube play (network $net)"
pods="asflowd-asflowd asflow-worker-pod-0-worker asflow-worker-pod-1-worker asflow-worker-pod-2-worker"
pod kube play --network "$net" "$play" >"$DEPLOY_TMP/play.log" 2>&1 || { cat "$DEPLOY_TMP/play.log"; track_volumes $pods; fail "podman kube play"; }
track_volumes $pods
daemon=asflowd-asflowd
on_fail "podman logs $daemon"
on_fail "podman logs asflow-worker-pod-0-worker"
on_fail "podman logs asflow-worker-pod-1-worker"
on_fail "podman logs asflow-worker-pod-2-worker"
on_fail "podman pod ps"
# The probe's command, as the kubelet would run it.
probe=$(node -e '
  const y = require("'"$tools"'/node_modules/yaml");
  const docs = y.parseAllDocuments(require("fs").readFileSync(process.argv[1], "utf8")).map(d => d.toJS());
  const p = docs.find(o => o.kind === "Pod").spec.containers[0].readinessProbe.exec.command;
  console.log(p.join(" "));' "$play")
wait_for 30 "the readiness probe ($probe)" pod exec "$daemon" $probe
workers() { [ "$(pod exec "$daemon" asflowctl workers | grep -c ' crawl ')" = 3 ]; }
wait_for 60 "3 workers of the Deployment in pool crawl" workers
pod exec "$daemon" asflowctl workers >&2
# Not asserted here: the workers' readiness command (`asflow-worker
# health`) inside a worker pod. Run after the other deploy tests, the first
# worker's pod got no answer from the daemon for 30 s and more in about 1
# of 6 runs, while its worker's own session stayed up; not understood yet
# (compose_test saw the same). The command itself is covered by config_test.

pod exec -i "$daemon" sh -c 'mkdir -p /data/ws && cat > /data/ws/k.flow.yaml' <<'FLOW'
name: k
tasks:
  - name: where
    pool: crawl
    for_each: {values: ["1", "2", "3", "4", "5", "6"], as: i}
    on: out/{i}.txt.zst
    run: [sh, -c, 'sleep 1; hostname']
FLOW
pod exec -w /data/ws "$daemon" asflowctl run k.flow.yaml --plain >"$DEPLOY_TMP/run.out" 2>&1 \
  || { cat "$DEPLOY_TMP/run.out"; fail "the flow on pool crawl"; }
mnt=$(pod volume inspect --format '{{.Mountpoint}}' data-asflowd-0)
[ "$(ls "$mnt"/ws/out | wc -l)" = 6 ] || fail "outputs on the data PVC: $(ls "$mnt"/ws/out)"
log "outputs by worker pod: $(for f in "$mnt"/ws/out/*; do zstd -dc "$f"; done | sort | uniq -c | tr '\n' ' ')"
pod volume inspect state-asflowd-0 --format '{{.Mountpoint}}' | xargs -I{} test -s {}/state.db || fail "no state.db on the state PVC"
