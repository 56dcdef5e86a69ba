// asflow's dashboard: the runs table, a run's live page, an instance and the
// workers, drawn with Preact + htm from asflowd's JSON API (docs/http.md).
// Live pages follow /api/v1/events?summary=1: a few coalesced events per
// tick however busy the run, so a 100,000-instance run costs the page what
// a small one does. Numbers that protobuf's JSON mapping writes as strings
// (int64) go through num().
import { h, render } from './vendor/preact.mjs';
import { useEffect, useRef, useState } from './vendor/hooks.mjs';
import htm from './vendor/htm.mjs';

const html = htm.bind(h);

// ---------------------------------------------------------------- helpers

const num = (x) => Number(x || 0);

async function api(path, options = {}) {
  const res = await fetch(path, {
    credentials: 'same-origin',
    ...options,
    // Asked of every call that changes something when the cookie is the
    // credential (docs/http.md): a cross-site form cannot send it.
    headers: { 'X-Asflow-Request': '1', ...(options.headers || {}) },
  });
  if (res.status === 401) {
    location.reload();  // the token prompt
    throw new Error('token required');
  }
  const body = await res.json();
  if (!res.ok) throw new Error((body.error && body.error.message) || res.statusText);
  return body;
}

const RUN_STATES = { RUN_RUNNING: 'running', RUN_SUCCEEDED: 'succeeded', RUN_FAILED: 'failed', RUN_CANCELLED: 'cancelled' };
const runState = (run) => RUN_STATES[run.state] || 'unknown';
const instState = (inst) => (inst.state || 'INSTANCE_STATE_UNSPECIFIED').toLowerCase();

// The bar's segments, in the terminal view's order.
const SEGMENTS = ['done', 'cached', 'skipped', 'suppressed', 'failed', 'cancelled', 'running', 'queued'];
const FINISHED = ['done', 'cached', 'skipped', 'suppressed', 'failed', 'cancelled'];

function clock(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  const pad = (n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

function bytes(n) {
  n = num(n);
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let i = -1;
  do { n /= 1000; i++; } while (n >= 1000 && i < units.length - 1);
  return `${n.toFixed(1)} ${units[i]}`;
}

function when(ms) {
  ms = num(ms);
  return ms ? new Date(ms).toLocaleString() : '';
}

function label(inst) {
  const params = Object.entries(inst.params || {}).sort().map(([k, v]) => `${k}=${v}`).join(', ');
  return `${inst.task}(${params})`;
}

function firstLine(text) {
  return (text || '').split('\n')[0];
}

// Sums a run's task counters.
function totals(run) {
  const t = { total: 0 };
  for (const k of SEGMENTS) t[k] = 0;
  for (const task of run.tasks || []) {
    t.total += num(task.total);
    for (const k of SEGMENTS) t[k] += num(task[k]);
  }
  return t;
}

// Re-renders every second (elapsed times, durations).
function useTick() {
  const [, setTick] = useState(0);
  useEffect(() => {
    const id = setInterval(() => setTick((n) => n + 1), 1000);
    return () => clearInterval(id);
  }, []);
}

// Follows /api/v1/events?summary=1 (of one run, or of all runs' counters)
// and hands each event to onEvent. A browser keeps at most 6 connections
// to one host over HTTP/1.1, and every open stream holds one: a tab that is
// hidden closes its stream and opens it again (from a fresh snapshot) when
// it is shown, so many tabs of the dashboard never starve each other.
function useEvents(query, onEvent, onTruncated) {
  const [live, setLive] = useState('connecting');
  const handler = useRef(onEvent);
  handler.current = onEvent;
  const truncated = useRef(onTruncated);
  truncated.current = onTruncated;
  useEffect(() => {
    let source = null;
    let ended = false;
    const open = () => {
      if (source || ended) return;
      source = new EventSource(`/api/v1/events?summary=1${query}`);
      const self = source;
      source.onopen = () => setLive('live');
      source.onerror = () => setLive(self.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
      source.onmessage = (m) => {
        for (const event of JSON.parse(m.data)) handler.current(event);
      };
      source.addEventListener('truncated', () => truncated.current && truncated.current());
      source.addEventListener('end', () => {
        ended = true;
        close();
        setLive('ended');
      });
    };
    const close = () => {
      if (source) source.close();
      source = null;
    };
    const visibility = () => {
      if (document.visibilityState === 'hidden') {
        close();
        if (!ended) setLive('paused');
      } else {
        open();
      }
    };
    document.addEventListener('visibilitychange', visibility);
    if (document.visibilityState !== 'hidden') open();
    else setLive('paused');
    return () => {
      document.removeEventListener('visibilitychange', visibility);
      close();
    };
  }, [query]);
  return live;
}

// ---------------------------------------------------------------- pieces

function Bar({ counts, total }) {
  const whole = Math.max(total, 1);
  return html`<div class="bar" title=${SEGMENTS.map((k) => `${k} ${counts[k]}`).join(', ')}>
    ${SEGMENTS.filter((k) => counts[k] > 0).map(
      (k) => html`<span class=${`seg ${k}`} style=${`width:${(100 * counts[k]) / whole}%`}></span>`)}
  </div>`;
}

function StateBadge({ state }) {
  return html`<span class=${`badge ${state}`}>${state}</span>`;
}

function Header({ live }) {
  return html`<header>
    <a class="brand" href="/">asflow</a>
    <nav><a href="/">Runs</a><a href="/workers">Workers</a></nav>
    ${live && html`<span class=${`live ${live}`} id="live">${live}</span>`}
  </header>`;
}

function ErrorNote({ error }) {
  return error ? html`<p class="error">${String(error.message || error)}</p>` : null;
}

// ---------------------------------------------------------------- runs

function RunsPage() {
  const params = new URLSearchParams(location.search);
  const [runs, setRuns] = useState(null);
  const [next, setNext] = useState('');
  const [error, setError] = useState(null);
  const state = params.get('state') || '';
  const flow = params.get('flow') || '';
  const page = params.get('page_token') || '';
  useTick();

  useEffect(() => {
    const q = new URLSearchParams({ limit: '25' });
    if (state) q.set('state', state);
    if (flow) q.set('flow', flow);
    if (page) q.set('page_token', page);
    api(`/api/v1/runs?${q}`)
      .then((r) => { setRuns(r.runs || []); setNext(r.nextPageToken || ''); })
      .catch(setError);
  }, []);

  const live = useEvents('', (event) => {
    const run = event.run ? event.run.run : null;
    if (!run) return;
    setRuns((old) => {
      if (!old) return old;
      const i = old.findIndex((r) => r.id === run.id);
      if (i >= 0) return [...old.slice(0, i), run, ...old.slice(i + 1)];
      // A new run belongs on the first page if it passes the filters.
      const fits = !page && (!flow || run.flow === flow) && (!state || runState(run) === state);
      return fits && num(run.id) > num(old[0] && old[0].id) ? [run, ...old] : old;
    });
  });

  const filter = (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const q = new URLSearchParams();
    for (const k of ['state', 'flow']) if (form.get(k)) q.set(k, form.get(k));
    location.search = q.toString();
  };

  return html`<${Header} live=${live} />
  <main>
    <h1>Runs</h1>
    <form class="filters" onSubmit=${filter}>
      <label>State <select name="state" value=${state}>
        <option value="">any</option>
        ${Object.values(RUN_STATES).map((s) => html`<option value=${s} selected=${s === state}>${s}</option>`)}
      </select></label>
      <label>Flow <input name="flow" value=${flow} placeholder="any" /></label>
      <button type="submit">Filter</button>
    </form>
    <${ErrorNote} error=${error} />
    ${runs === null ? html`<p class="loading">Loading…</p>` : runs.length === 0
      ? html`<p class="empty">No runs${state || flow ? ' match' : ' yet'}.</p>`
      : html`<table class="runs">
        <thead><tr><th>Run</th><th>Flow</th><th>State</th><th>Started</th><th>Duration</th>
          <th class="wide">Instances</th><th>Workspace</th></tr></thead>
        <tbody>${runs.map((run) => {
          const t = totals(run);
          const end = num(run.finishedMs) || Date.now();
          return html`<tr key=${run.id} data-run=${run.id}>
            <td><a href=${`/runs/${run.id}`}>${run.id}</a></td>
            <td>${run.flow}</td>
            <td><${StateBadge} state=${runState(run)} /></td>
            <td>${when(run.createdMs)}</td>
            <td class="num">${clock((end - num(run.createdMs)) / 1000)}</td>
            <td class="wide"><${Bar} counts=${t} total=${t.total} />
              <span class="counts">${t.done + t.cached} / ${t.total}${t.failed ? ` · ${t.failed} failed` : ''}</span></td>
            <td class="path">${run.workspace}</td>
          </tr>`;
        })}</tbody>
      </table>`}
    <p class="pager">
      ${page && html`<a href=${`/?${new URLSearchParams({ ...(state && { state }), ...(flow && { flow }) })}`}>Newest</a>`}
      ${next && html`<a id="older" href=${`/?${new URLSearchParams({ ...(state && { state }), ...(flow && { flow }), page_token: next })}`}>Older →</a>`}
    </p>
  </main>`;
}

// ---------------------------------------------------------------- a run

// Finished instances per second over the last 10 s, from counter samples.
class Rates {
  constructor() { this.samples = new Map(); }
  add(run) {
    const now = Date.now();
    for (const task of run.tasks || []) {
      const finished = FINISHED.reduce((n, k) => n + num(task[k]), 0);
      const list = this.samples.get(task.task) || [];
      list.push([now, finished]);
      while (list.length > 2 && now - list[0][0] > 10000) list.shift();
      this.samples.set(task.task, list);
    }
  }
  rate(task) {
    const list = this.samples.get(task) || [];
    if (list.length < 2) return null;
    const [t0, f0] = list[0], [t1, f1] = list[list.length - 1];
    return t1 > t0 ? ((f1 - f0) * 1000) / (t1 - t0) : null;
  }
}

const PROBLEMS = 'failed,skipped,suppressed';

// Throttle keys and task gates (GET /api/v1/throttle), polled every second
// while `active` (the daemon has no event for a key's state: its notes
// reach the tasks' `waiting`, the rest is here), and once otherwise.
// Returns [gates by name, reload].
function useThrottle(active) {
  const [gates, setGates] = useState(new Map());
  const load = () => api('/api/v1/throttle')
    .then((r) => setGates(new Map((r.keys || []).map((g) => [g.name, g]))))
    .catch(() => {});
  useEffect(() => {
    load();
    if (!active) return undefined;
    const id = setInterval(() => { if (document.visibilityState !== 'hidden') load(); }, 1000);
    return () => clearInterval(id);
  }, [active]);
  return [gates, load];
}

const hms = (ms) => new Date(num(ms)).toLocaleTimeString(undefined, { hour12: false });

// "open", "cooling down until 12:03:10 (429 from …)", "paused until …".
function gateState(g) {
  if (!g) return 'open';
  const parts = [];
  if (g.state === 'paused' || num(g.pausedUntilMs)) {
    parts.push(num(g.pausedUntilMs) ? `paused until ${hms(g.pausedUntilMs)}` : 'paused until resumed');
  }
  if (num(g.cooldownUntilMs)) {
    parts.push(`cooling down until ${hms(g.cooldownUntilMs)}${g.cooldownReason ? ` (${g.cooldownReason})` : ''}`);
  }
  return parts.length ? parts.join('; ') : g.state || 'open';
}

function gateRate(g) {
  if (!g || !g.rate) return '';
  if (g.rate.startsWith('auto')) return `${g.rate} · now ${Number(g.effectiveRate || 0).toFixed(2)}/s`;
  return g.rate;
}

const isPaused = (g) => Boolean(g && g.state === 'paused');

// Pause / Resume of one key or task gate; the select #pause-for says for
// how long a pause lasts ("" until resumed).
function PauseButton({ name, gate, onDone, onError }) {
  const [busy, setBusy] = useState(false);
  const paused = isPaused(gate);
  const act = () => {
    setBusy(true);
    const sel = document.getElementById('pause-for');
    const q = !paused && sel && sel.value ? `?for=${encodeURIComponent(sel.value)}` : '';
    api(`/api/v1/throttle/${encodeURIComponent(name)}:${paused ? 'resume' : 'pause'}${q}`, { method: 'POST' })
      .then(onDone).catch(onError).finally(() => setBusy(false));
  };
  return html`<button class=${`gate-action ${paused ? 'resume' : 'pause'}`} data-gate=${name} disabled=${busy}
    onClick=${act}>${paused ? 'Resume' : 'Pause'}</button>`;
}

function ThrottlePanel({ run, gates, reload, onError }) {
  const keys = [...new Set((run.tasks || []).flatMap((t) => t.uses || []))].sort();
  const taskGates = (run.tasks || []).map((t) => gates.get(t.gate)).filter((g) => g && g.isTask);
  const rows = [...keys.map((k) => gates.get(k) || { name: k, missing: true }), ...taskGates];
  const queuedOn = (g) => (g.isTask ? num(g.queued)
    : (run.tasks || []).filter((t) => (t.uses || []).includes(g.name)).reduce((n, t) => n + num(t.queued), 0));
  return html`<section id="throttle">
    <h2>Throttle keys <small>${keys.length}</small>
      <label class="pause-for">pause for <select id="pause-for">
        <option value="">until resumed</option><option value="5m">5 min</option>
        <option value="15m">15 min</option><option value="1h">1 h</option>
      </select></label></h2>
    ${rows.length === 0 ? html`<p class="empty">This run's tasks use no throttle key, and none of its tasks is paused or cooling down.</p>`
      : html`<table class="throttle">
      <thead><tr><th>Key / task</th><th>Limit</th><th>In flight</th><th>Rate</th><th>State</th>
        <th>Queued (this run)</th><th>Queued (all)</th><th></th></tr></thead>
      <tbody>${rows.map((g) => html`<tr class="gate" key=${g.name} data-gate=${g.name}
          data-state=${g.missing ? 'unknown' : g.state}>
        <td>${g.isTask ? html`<span class="note">task</span> ` : ''}${g.name}
          ${g.definedBy && html`<div class="note">${g.definedBy}</div>`}</td>
        <td class="num">${num(g.limit) || '—'}</td>
        <td class="num">${num(g.inFlight)}</td>
        <td>${gateRate(g)}</td>
        <td class=${`gate-state ${(g.state || '').replace(' ', '-')}`}>${g.missing ? 'not defined now' : gateState(g)}</td>
        <td class="num">${queuedOn(g)}</td>
        <td class="num">${num(g.queued)}</td>
        <td>${!g.missing && html`<${PauseButton} name=${g.name} gate=${g} onDone=${reload} onError=${onError} />`}</td>
      </tr>`)}</tbody>
    </table>`}
  </section>`;
}

function RunPage({ id }) {
  const [run, setRun] = useState(null);
  const [running, setRunning] = useState(new Map());
  const [problems, setProblems] = useState([]);
  const [problemsNext, setProblemsNext] = useState('');
  const [error, setError] = useState(null);
  const [cancelling, setCancelling] = useState(false);
  const rates = useRef(new Rates());
  const [gates, reloadGates] = useThrottle(run !== null && runState(run) === 'running');
  useTick();

  const loadProblems = (token = '') => {
    const q = new URLSearchParams({ state: PROBLEMS, page_size: '100' });
    if (token) q.set('page_token', token);
    api(`/api/v1/runs/${id}/tasks?${q}`)
      .then((r) => {
        const list = (r.instances || []).slice().reverse();  // newest first
        setProblems((old) => (token ? [...old, ...list] : list));
        setProblemsNext(r.nextPageToken || '');
      })
      .catch(setError);
  };

  useEffect(() => {
    api(`/api/v1/runs/${id}`).then(setRun).catch(setError);
    loadProblems();
  }, [id]);

  const key = (inst) => `${num(inst.runId)}/${num(inst.seq)}`;
  const live = useEvents(`&run_id=${id}`, (event) => {
    if (event.snapshot) {
      const snap = event.snapshot;
      const r = (snap.runs || []).find((x) => x.id === String(id));
      if (r) { setRun(r); rates.current.add(r); }
      setRunning(new Map((snap.running || []).map((i) => [key(i), i])));
      if (snap.gap) loadProblems();
    } else if (event.run) {
      const r = event.run.run;
      setRun(r);
      rates.current.add(r);
      if (runState(r) !== 'running') setRunning(new Map());
    } else if (event.instance) {
      const { kind, instance } = event.instance;
      setRunning((old) => {
        const m = new Map(old);
        if (kind === 'STARTED' || kind === 'PROGRESS') m.set(key(instance), instance);
        else m.delete(key(instance));
        return m;
      });
      if (kind === 'FINISHED' && PROBLEMS.includes(instState(instance))) {
        setProblems((old) => [instance, ...old.filter((p) => key(p) !== key(instance))]);
      }
    }
  }, () => loadProblems());

  const cancel = () => {
    if (!confirm(`Cancel run ${id}? Running instances are stopped.`)) return;
    setCancelling(true);
    // The answer is the run's state now; the event stream brings the rest
    // (the daemon's view may trail the answer by a commit).
    api(`/api/v1/runs/${id}:cancel`, { method: 'POST' })
      .then((r) => setRun((old) => ({ ...old, state: r.state })))
      .catch(setError)
      .finally(() => setCancelling(false));
  };

  if (!run) return html`<${Header} live=${live} /><main><${ErrorNote} error=${error} /><p class="loading">Loading…</p></main>`;
  const state = runState(run);
  const t = totals(run);
  const end = num(run.finishedMs) || Date.now();
  const runningList = [...running.values()].sort((a, b) => num(a.startedMs) - num(b.startedMs));
  return html`<${Header} live=${live} />
  <main>
    <h1>Run ${run.id} <small>${run.flow}</small></h1>
    <p class="flowline">
      <span id="run-state" class=${`badge ${state}`} data-state=${state}>${state}</span>
      · ${t.done + t.cached + t.skipped + t.suppressed + t.failed + t.cancelled} / ${t.total} instances
      · ${clock((end - num(run.createdMs)) / 1000)} ·
      <span class="path">${run.workspace}</span>
      ${state === 'running' && html`<button id="cancel" class="danger" disabled=${cancelling} onClick=${cancel}>
        ${cancelling ? 'Cancelling…' : 'Cancel run'}</button>`}
    </p>
    ${run.error && html`<p class="error" id="run-error">${run.error}</p>`}
    <${ErrorNote} error=${error} />
    <section>
      <h2>Tasks</h2>
      <table class="tasks">
        <thead><tr><th>Task</th><th class="wide">Progress</th><th>Done</th><th>Rate</th><th>ETA</th><th></th><th></th></tr></thead>
        <tbody>${(run.tasks || []).map((task) => {
          const c = {};
          for (const k of SEGMENTS) c[k] = num(task[k]);
          const total = num(task.total);
          const finished = FINISHED.reduce((n, k) => n + c[k], 0);
          const rate = rates.current.rate(task.task);
          const eta = state !== 'running' ? '' : finished >= total && task.expanded ? 'done'
            : task.expanded && rate > 0 ? clock((total - finished) / rate) : '--';
          return html`<tr class="task" key=${task.task} data-task=${task.task} data-finished=${finished} data-total=${total}>
            <td>${task.task}</td>
            <td class="wide"><${Bar} counts=${c} total=${total} /></td>
            <td class="num">${finished} / ${total}${task.expanded ? '' : '+'}</td>
            <td class="num">${rate === null ? '--/s' : `${rate.toFixed(1)}/s`}</td>
            <td class="num">${eta}</td>
            <td class="note">${[c.running && `${c.running} running`, c.queued && `${c.queued} queued`,
              num(task.retrying) && `${num(task.retrying)} retrying`, c.failed && `${c.failed} failed`,
              task.waiting].filter(Boolean).join(' · ')}</td>
            <td>${task.gate && state === 'running' && html`<${PauseButton} name=${task.gate} gate=${gates.get(task.gate)}
              onDone=${reloadGates} onError=${setError} />`}</td>
          </tr>`;
        })}</tbody>
      </table>
    </section>
    <${ThrottlePanel} run=${run} gates=${gates} reload=${reloadGates} onError=${setError} />
    <section>
      <h2>Running <small>${runningList.length}</small></h2>
      ${runningList.length === 0 ? html`<p class="empty">Nothing running.</p>` : html`<table class="running">
        <thead><tr><th>Instance</th><th>Elapsed</th><th>Output</th><th>Lines</th><th>Progress</th></tr></thead>
        <tbody>${runningList.slice(0, 200).map((inst) => {
          const total = Number(inst.progressTotal || 0);
          return html`<tr class="running-row" key=${key(inst)} data-seq=${inst.seq}>
            <td><a href=${`/runs/${run.id}/instances/${inst.seq}`}>${label(inst)}</a></td>
            <td class="num">${clock((Date.now() - num(inst.startedMs)) / 1000)}</td>
            <td class="num">${bytes(inst.bytes)}</td>
            <td class="num">${num(inst.lines)}</td>
            <td>${total > 0 && html`<progress max=${total} value=${Number(inst.progressCompleted || 0)}></progress>
              ${Number(inst.progressCompleted || 0)} / ${total} ${inst.progressDescription || ''}`}</td>
          </tr>`;
        })}</tbody>
      </table>
      ${runningList.length > 200 && html`<p class="note">… and ${runningList.length - 200} more running</p>`}`}
    </section>
    <section>
      <h2>Failed, skipped and suppressed <small>${problems.length}${problemsNext ? '+' : ''}</small></h2>
      ${problems.length === 0 ? html`<p class="empty">None.</p>` : html`<table class="problems">
        <thead><tr><th>State</th><th>Instance</th><th>Error</th></tr></thead>
        <tbody>${problems.map((inst) => html`<tr class="problem" key=${key(inst)} data-seq=${inst.seq} data-state=${instState(inst)}>
          <td><${StateBadge} state=${instState(inst)} /></td>
          <td><a href=${`/runs/${run.id}/instances/${inst.seq}`}>${label(inst)}</a></td>
          <td class="errtext">${firstLine(inst.error)}</td>
        </tr>`)}</tbody>
      </table>`}
      ${problemsNext && html`<button onClick=${() => loadProblems(problemsNext)}>More</button>`}
    </section>
  </main>`;
}

// ---------------------------------------------------------------- an instance

function InstancePage({ id, seq }) {
  const [details, setDetails] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { api(`/api/v1/runs/${id}/instances/${seq}`).then(setDetails).catch(setError); }, [id, seq]);
  if (!details) return html`<${Header} /><main><${ErrorNote} error=${error} /><p class="loading">Loading…</p></main>`;
  const inst = details.instance;
  const duration = num(inst.finishedMs) && num(inst.startedMs) ? clock((num(inst.finishedMs) - num(inst.startedMs)) / 1000) : '';
  return html`<${Header} />
  <main>
    <p class="crumbs"><a href=${`/runs/${id}`}>← run ${id}</a></p>
    <h1>${label(inst)}</h1>
    <table class="fields">
      <tr><th>State</th><td><${StateBadge} state=${instState(inst)} /></td></tr>
      <tr><th>Task</th><td>${inst.task}</td></tr>
      <tr><th>Parameters</th><td>${Object.entries(inst.params || {}).map(([k, v]) => html`<div><code>${k}</code> = <code>${v}</code></div>`)}</td></tr>
      <tr><th>Output</th><td class="path">${inst.output ? `${details.workspace}/${inst.output}` : '(not kept)'}</td></tr>
      <tr><th>Output size</th><td>${details.outputExists ? bytes(details.outputSize) : inst.output ? 'not on disk' : ''}</td></tr>
      <tr><th>Written</th><td>${bytes(inst.bytes)}, ${num(inst.lines)} lines (uncompressed)</td></tr>
      <tr><th>Attempts</th><td>${num(inst.attempts)}</td></tr>
      <tr><th>Started</th><td>${when(inst.startedMs)}</td></tr>
      <tr><th>Finished</th><td>${when(inst.finishedMs)}${duration && ` (${duration})`}</td></tr>
    </table>
    ${inst.error && html`<h2>Error (last attempt; stderr tail)</h2><pre class="errtext" id="instance-error">${inst.error}</pre>`}
    <${Attempts} list=${inst.attemptHistory || []} />
  </main>`;
}

// protobuf's JSON mapping sends bytes as base64; stderr is shown as UTF-8.
function fromBase64(b64) {
  if (!b64) return '';
  return new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
}

// Each attempt: start, duration, how it ended, its error and stderr tail.
function Attempts({ list }) {
  if (list.length === 0) return null;
  return html`<h2>Attempts</h2>
    <table class="problems" id="attempts">
      <thead><tr><th>#</th><th>Started</th><th>Took</th><th>Exit</th><th>Outcome</th><th>Error</th></tr></thead>
      <tbody>${list.map((a) => html`<tr>
        <td>${a.attempt || 0}</td>
        <td>${when(a.startedMs)}</td>
        <td>${clock(Math.max(0, num(a.finishedMs) - num(a.startedMs)) / 1000)}</td>
        <td>${a.termSignal ? `signal ${a.termSignal}` : (a.exitCode ?? 0) >= 0 ? `exit ${a.exitCode || 0}` : '—'}</td>
        <td>${(a.state || 'DONE') === 'QUEUED' ? 'tried again' : html`<${StateBadge} state=${(a.state || 'DONE').toLowerCase()} />`}</td>
        <td>${(a.error || '').split('\n')[0]}</td>
      </tr>${a.stderrTail && html`<tr class="stderr"><td></td><td colspan="5"><pre class="errtext">${fromBase64(a.stderrTail)}</pre></td></tr>`}`)}
      </tbody>
    </table>`;
}

// ---------------------------------------------------------------- workers

function WorkersPage() {
  const [workers, setWorkers] = useState(null);
  const [error, setError] = useState(null);
  useTick();
  useEffect(() => {
    const load = () => api('/api/v1/workers').then((r) => setWorkers(r.workers || [])).catch(setError);
    load();
    const id = setInterval(load, 2000);
    return () => clearInterval(id);
  }, []);
  const pools = new Map();
  for (const w of workers || []) {
    for (const p of w.pools || []) {
      const pool = pools.get(p) || { workers: 0, slots: 0, running: 0 };
      pool.workers++;
      if (!w.draining) pool.slots += num(w.slots);
      pool.running += num(w.running);
      pools.set(p, pool);
    }
  }
  const now = Date.now();
  return html`<${Header} />
  <main>
    <h1>Workers</h1>
    <${ErrorNote} error=${error} />
    ${workers === null ? html`<p class="loading">Loading…</p>` : workers.length === 0
      ? html`<p class="empty">No remote workers connected. Start one with <code>asflow-worker --server HOST:PORT --pool NAME</code>; tasks without a pool run in the daemon's own pool.</p>`
      : html`
      <h2>Pools</h2>
      <table><thead><tr><th>Pool</th><th>Workers</th><th>Slots</th><th>Running</th></tr></thead>
        <tbody>${[...pools].map(([name, p]) => html`<tr><td>${name}</td><td class="num">${p.workers}</td>
          <td class="num">${p.slots}</td><td class="num">${p.running}</td></tr>`)}</tbody></table>
      <h2>Sessions</h2>
      <table class="workers"><thead><tr><th>Session</th><th>Name</th><th>Pool</th><th>Slots</th><th>Running</th>
        <th>Assigned</th><th>Heartbeat</th><th>Uptime</th><th>State</th><th>Host / peer</th></tr></thead>
        <tbody>${workers.map((w) => html`<tr>
          <td>${w.sessionId}</td><td>${w.name}</td><td>${(w.pools || []).join(', ')}</td>
          <td class="num">${num(w.slots)}</td><td class="num">${num(w.running)}</td><td class="num">${num(w.assignedTotal)}</td>
          <td class="num">${clock((now - num(w.lastHeartbeatMs)) / 1000)} ago</td>
          <td class="num">${clock((now - num(w.connectedMs)) / 1000)}</td>
          <td>${w.draining ? 'draining' : 'active'}</td><td>${w.hostname} ${w.peer}</td>
        </tr>`)}</tbody></table>`}
  </main>`;
}

// ---------------------------------------------------------------- routes

function App() {
  const path = location.pathname;
  let m;
  if ((m = path.match(/^\/runs\/(\d+)\/instances\/(\d+)$/))) return html`<${InstancePage} id=${m[1]} seq=${m[2]} />`;
  if ((m = path.match(/^\/runs\/(\d+)$/))) return html`<${RunPage} id=${m[1]} />`;
  if (path === '/workers') return html`<${WorkersPage} />`;
  return html`<${RunsPage} />`;
}

const root = document.getElementById('app');
root.textContent = '';  // the "Loading…" placeholder
render(html`<${App} />`, root);
