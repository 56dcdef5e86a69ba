// The Pod form of deploy/k8s for `podman kube play` (node pod-form.mjs
// IN.yaml OUT.yaml IMAGE): podman 4.3 runs Pods, Deployments,
// PersistentVolumeClaims, ConfigMaps and Secrets, but ignores
// StatefulSets, Services, PodDisruptionBudgets and HPAs. So:
//  - the StatefulSet becomes its PVCs (named as Kubernetes names them,
//    CLAIM-STS-0) and a Pod named after its Service, which is how the
//    workers reach it: on a podman network a pod's name resolves;
//  - the Deployment stays, with its replicas;
//  - the Namespace, Service, PDB and HPA are left out (listed on stderr);
//  - images become IMAGE;
//  - secret volumes become hostPath directories holding the Secret's
//    decoded keys (written next to OUT.yaml, mode 0644): podman 4.3.1's
//    secret volumes are unusable here. Without `optional` it dereferences
//    a nil pointer (VolumeFromSecret); with it, the files of a Secret's
//    `data` hold the values still base64-encoded, and a Secret's
//    `stringData` gives no files at all.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";

const [input, output, image] = process.argv.slice(2);
const objs = parseAllDocuments(readFileSync(input, "utf8")).map((d) => d.toJS()).filter(Boolean);
const services = objs.filter((o) => o.kind === "Service");
const secrets = new Map(objs.filter((o) => o.kind === "Secret").map((o) => [o.metadata.name, o]));
const secretRoot = join(dirname(output), "secret-volumes");

// The directory standing for Secret `name` (only `items` if given).
function secretDir(name, items) {
  const secret = secrets.get(name);
  if (!secret) throw new Error(`no Secret ${name}`);
  const dir = join(secretRoot, name);
  mkdirSync(dir, { recursive: true });
  const data = Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(String(v), "base64")]));
  for (const [k, v] of Object.entries(secret.stringData ?? {})) data[k] = Buffer.from(v);
  const wanted = items ? items.map((i) => [i.key, i.path]) : Object.keys(data).map((k) => [k, k]);
  for (const [key, path] of wanted) {
    writeFileSync(join(dir, path), data[key]);
    chmodSync(join(dir, path), 0o644);
  }
  return dir;
}
const out = [];
const left = [];

function fixPod(spec) {
  for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])]) {
    if (c.image?.startsWith("localhost/asflow")) c.image = image;
  }
  for (const v of spec.volumes ?? []) {
    if (v.secret) {
      const dir = secretDir(v.secret.secretName, v.secret.items);
      delete v.secret;
      v.hostPath = { path: dir, type: "Directory" };
    }
  }
  return spec;
}

for (const o of objs) {
  switch (o.kind) {
    case "Secret":
      break; // as hostPath directories, above
    case "ConfigMap":
    case "PersistentVolumeClaim":
      out.push(o);
      break;
    case "Deployment":
      fixPod(o.spec.template.spec);
      out.push(o);
      break;
    case "StatefulSet": {
      const svc = services.find((s) => s.metadata.name === o.spec.serviceName);
      const spec = fixPod(structuredClone(o.spec.template.spec));
      spec.volumes = spec.volumes ?? [];
      for (const t of o.spec.volumeClaimTemplates ?? []) {
        const claim = `${t.metadata.name}-${o.metadata.name}-0`;
        out.push({ apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: claim }, spec: t.spec });
        spec.volumes.push({ name: t.metadata.name, persistentVolumeClaim: { claimName: claim } });
      }
      out.push({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: svc ? svc.metadata.name : `${o.metadata.name}-0`, labels: o.spec.template.metadata.labels },
        spec,
      });
      break;
    }
    default:
      left.push(`${o.kind}/${o.metadata.name}`);
  }
}
// Pods last, the daemon's first: in Kubernetes the Service's name resolves
// before any pod runs; on a podman network a pod's name resolves only once
// it exists, so the workers must not come up before it.
const rank = (o) => (o.kind === "Pod" ? 1 : o.kind === "Deployment" ? 2 : 0);
out.sort((a, b) => rank(a) - rank(b));
writeFileSync(output, out.map((o) => stringify(o)).join("---\n"));
console.error(`pod form: ${out.map((o) => `${o.kind}/${o.metadata.name}`).join(", ")}; not run by podman: ${left.join(", ")}`);
