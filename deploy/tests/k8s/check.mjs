// Checks Kubernetes manifests offline (node check.mjs FILE.yaml, a
// multi-document file such as `kubectl kustomize deploy/k8s`'s output):
//  - schema: each object against the Kubernetes OpenAPI schema
//    (kubernetes-models: types, required fields, formats, enums);
//  - strict: no field the API does not know (@kubernetes/client-node's
//    attribute maps), which an API server would drop or reject;
//  - asflow's own rules: non-root, no privilege escalation, probes on the
//    daemon, a single daemon replica, a worker grace longer than its drain.
// Prints one line per problem ("Kind/name: path: message") and exits 1 if
// there is any.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import * as k8s from "@kubernetes/client-node";

const problems = [];
const problem = (obj, path, message) =>
  problems.push(`${obj.kind}/${obj.metadata?.name ?? "?"}: ${path || "/"}: ${message}`);

// apiVersion + kind -> [kubernetes-models module, client-node class].
const kinds = {
  "v1/Namespace": ["v1/Namespace", "V1Namespace"],
  "v1/ConfigMap": ["v1/ConfigMap", "V1ConfigMap"],
  "v1/Secret": ["v1/Secret", "V1Secret"],
  "v1/Service": ["v1/Service", "V1Service"],
  "v1/Pod": ["v1/Pod", "V1Pod"],
  "v1/PersistentVolumeClaim": ["v1/PersistentVolumeClaim", "V1PersistentVolumeClaim"],
  "apps/v1/StatefulSet": ["apps/v1/StatefulSet", "V1StatefulSet"],
  "apps/v1/Deployment": ["apps/v1/Deployment", "V1Deployment"],
  "policy/v1/PodDisruptionBudget": ["policy/v1/PodDisruptionBudget", "V1PodDisruptionBudget"],
  "autoscaling/v2/HorizontalPodAutoscaler": ["autoscaling/v2/HorizontalPodAutoscaler", "V2HorizontalPodAutoscaler"],
};

// Walks `value` as client-node type `type`, reporting unknown fields.
function strict(obj, value, type, path) {
  if (value === null || value === undefined) return;
  let m;
  if ((m = /^Array<(.+)>$/.exec(type))) {
    if (!Array.isArray(value)) return problem(obj, path, `expected a list (${type})`);
    value.forEach((v, i) => strict(obj, v, m[1], `${path}/${i}`));
    return;
  }
  if (/^\{ \[key: string\]: (.+); \}$/.test(type)) {
    const inner = /^\{ \[key: string\]: (.+); \}$/.exec(type)[1];
    if (typeof value !== "object" || Array.isArray(value)) return problem(obj, path, `expected a map (${type})`);
    for (const [k, v] of Object.entries(value)) strict(obj, v, inner, `${path}/${k}`);
    return;
  }
  const cls = k8s[type];
  if (!cls || typeof cls.getAttributeTypeMap !== "function") return; // string, number, IntOrString, Date...
  if (typeof value !== "object" || Array.isArray(value)) return problem(obj, path, `expected an object (${type})`);
  const fields = new Map(cls.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    if (!fields.has(k)) problem(obj, `${path}/${k}`, `unknown field "${k}" in ${type}`);
    else strict(obj, v, fields.get(k), `${path}/${k}`);
  }
}

function podRules(obj, spec, path) {
  const sc = spec.securityContext ?? {};
  if (sc.runAsNonRoot !== true) problem(obj, `${path}/securityContext/runAsNonRoot`, "must be true");
  for (const [i, c] of (spec.containers ?? []).entries()) {
    const cp = `${path}/containers/${i}`;
    if (c.securityContext?.allowPrivilegeEscalation !== false)
      problem(obj, `${cp}/securityContext/allowPrivilegeEscalation`, "must be false");
    if (!(c.securityContext?.capabilities?.drop ?? []).includes("ALL"))
      problem(obj, `${cp}/securityContext/capabilities/drop`, "must drop ALL");
    if (!c.readinessProbe) problem(obj, `${cp}/readinessProbe`, "missing");
  }
}

async function check(obj) {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const known = kinds[key];
  if (!known) return problem(obj, "", `unexpected kind ${key}`);
  if (obj.kind === "Secret" && obj.data) {
    // kustomize wraps base64 at 70 columns; the API server's decoder (Go's
    // base64.StdEncoding) skips the newlines, the format check here not.
    obj = { ...obj, data: Object.fromEntries(Object.entries(obj.data).map(([k, v]) => [k, String(v).replace(/[\r\n]/g, "")])) };
  }
  const mod = await import(`kubernetes-models/${known[0]}`);
  const Model = mod[obj.kind];
  try {
    new Model(obj).validate();
  } catch (e) {
    for (const err of e.errors ?? [{ instancePath: "", message: e.message }])
      problem(obj, err.instancePath, `schema: ${err.message}${err.params ? " " + JSON.stringify(err.params) : ""}`);
  }
  strict(obj, obj, known[1], "");
  if (obj.kind === "StatefulSet" && obj.metadata.name === "asflowd") {
    if (obj.spec.replicas !== 1) problem(obj, "/spec/replicas", "asflowd must have exactly 1 replica");
    const c = obj.spec.template.spec.containers[0];
    if (!c.livenessProbe) problem(obj, "/spec/template/spec/containers/0/livenessProbe", "missing");
    if (!(obj.spec.volumeClaimTemplates ?? []).length) problem(obj, "/spec/volumeClaimTemplates", "missing");
  }
  if (obj.kind === "Deployment") {
    const spec = obj.spec.template.spec;
    const args = spec.containers[0].args ?? [];
    const i = args.indexOf("--drain-grace");
    const drain = i >= 0 ? Number(args[i + 1]) : 60;
    if (!(spec.terminationGracePeriodSeconds > drain))
      problem(obj, "/spec/template/spec/terminationGracePeriodSeconds", `must exceed --drain-grace (${drain} s)`);
  }
  if (["StatefulSet", "Deployment"].includes(obj.kind)) podRules(obj, obj.spec.template.spec, "/spec/template/spec");
}

const file = process.argv[2];
const docs = parseAllDocuments(readFileSync(file, "utf8"));
let count = 0;
for (const doc of docs) {
  if (doc.errors.length) {
    problems.push(`${file}: ${doc.errors.map((e) => e.message).join("; ")}`);
    continue;
  }
  const obj = doc.toJS();
  if (!obj) continue;
  count++;
  await check(obj);
}
for (const p of problems) console.log(p);
console.log(`${count} objects checked, ${problems.length} problems`);
process.exit(problems.length || count === 0 ? 1 : 0);
