// The dashboard benchmark (bench/dashboard.sh runs it): headless Chromium
// (Debian's /usr/bin/chromium) on asflowd's --http pages.
//  D1: a run page of a 100,000-instance run while it runs: time to first
//      paint (the browser's first-contentful-paint), time until the task
//      bars are drawn, and the tab's memory (JS heap, DOM nodes, renderer
//      RSS) after 15 s of live updates; a 1,000-instance run as the baseline.
//  D2: W1 (bench/flows/w1.yaml, N instances of item.sh, 4 at once) with 0
//      and with 10 dashboards (tabs on the run's page) open: the daemon's
//      CPU seconds (utime + stime) and the run's wall time; reps interleaved.
// Prints a markdown table. Everything runs under a fresh directory in
// /dev/shm; each measurement starts its own asflowd.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, cpSync, openSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const require = createRequire(join(root, 'tests/web/package.json'));
const { chromium } = require('playwright-core');

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const reps = Number((args[args.indexOf('--reps') + 1]) || 0) || (quick ? 1 : 3);
const N_BIG = quick ? 20000 : 100000;
const N_SMALL = 1000;
const N_W1 = quick ? 1000 : 10000;
const TABS = 10;
const build = process.env.ASFLOW_BUILD || join(root, 'build');
const B = mkdtempSync('/dev/shm/asflow-dash-');
const token = `bench-${process.pid}`;
writeFileSync(join(B, 'token'), `${token}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error(`[dash ${new Date().toTimeString().slice(0, 8)}]`, ...a);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / ticks;  // utime, stime (fields 14, 15)
}
// Proportional set size (shared pages divided among their users).
function pssBytes(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').match(/^Pss:\s+(\d+) kB/m);
    return m ? Number(m[1]) * 1024 : 0;
  } catch { return 0; }
}
// Chromium's renderer processes (one per tab here), under `browserPid`.
function renderers(browserPid) {
  const out = [];
  const walk = (pid) => {
    let children = [];
    try { children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean); } catch {}
    for (const c of children) {
      let cmd = '';
      try { cmd = readFileSync(`/proc/${c}/cmdline`, 'utf8'); } catch {}
      if (cmd.includes('--type=renderer')) out.push(Number(c));
      walk(c);
    }
  };
  walk(browserPid);
  return out;
}

let seq = 0;
const live = new Set();  // daemons to stop if a measurement fails
async function startDaemon() {
  const dir = join(B, `d${++seq}`);
  mkdirSync(join(dir, 'ws'), { recursive: true });
  cpSync(join(here, 'item.sh'), join(dir, 'ws/item.sh'));
  for (const f of readdirSync(join(here, 'flows'))) cpSync(join(here, 'flows', f), join(dir, 'ws', f));
  const logPath = join(dir, 'asflowd.log');
  const fd = openSync(logPath, 'w');
  const proc = spawn(join(build, 'server/asflowd'),
    ['--socket', join(dir, 'd.sock'), '--state', join(dir, 'state.db'), '--allow-root', B, '--pool-size', '8',
      '--http', '127.0.0.1:0', '--token-file', join(B, 'token')],
    { stdio: ['ignore', fd, fd] });
  let port = null;
  for (let i = 0; i < 100 && !port; i++) {
    await sleep(50);
    const m = readFileSync(logPath, 'utf8').match(/serving http on 127\.0\.0\.1:(\d+)/);
    if (m) port = m[1];
  }
  if (!port) throw new Error(`asflowd did not start: ${readFileSync(logPath, 'utf8')}`);
  const ctl = (...a) => execFileSync(join(build, 'client/asflowctl'), ['--socket', join(dir, 'd.sock'), ...a],
    { cwd: join(dir, 'ws'), encoding: 'utf8' });
  const d = {
    proc, port, dir, ctl, base: `http://127.0.0.1:${port}`,
    async stop() {
      live.delete(d);
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.once('exit', r)));
    },
  };
  live.add(d);
  return d;
}

async function launch() {
  const profile = mkdtempSync(join(B, 'profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Tabs in the background keep running their timers as a visible one.
      '--disable-background-timer-throttling', '--disable-renderer-backgrounding'],
  });
  return context;
}

async function login(context, d) {
  await context.addCookies([{ name: 'asflow_token', value: token, url: d.base }]);
}

// --- D1: first paint and memory -------------------------------------------
async function measurePage(n) {
  const d = await startDaemon();
  // A run that stays busy while measured: n no-op instances over ~25 s.
  writeFileSync(join(d.dir, 'ws/big.yaml'), `name: dash_big
params: {n: "${n}"}
tasks:
  - name: ids
    on: ids.txt
    run: [seq, "{n}"]
  - name: noop
    for_each: {lines_of: ids, as: i}
    handler: builtin.noop
    rate: ${Math.max(1, Math.round(n / 25))}/s
`);
  const run = d.ctl('run', 'big.yaml', '--detach').trim();
  // Wait until the run has expanded (all n instances known).
  for (;;) {
    const out = d.ctl('runs');
    const line = out.split('\n').find((l) => l.startsWith(`${run} `));
    if (line && Number(line.trim().split(/\s+/)[6]) >= n + 1) break;
    await sleep(100);
  }
  const context = await launch();
  await login(context, d);
  const page = context.pages()[0] || await context.newPage();
  const t0 = Date.now();
  await page.goto(`${d.base}/runs/${run}`);
  await page.waitForSelector('tr.task[data-task=noop]');
  const bars = Date.now() - t0;
  const fcp = await page.evaluate(() => {
    const e = performance.getEntriesByName('first-contentful-paint')[0];
    return e ? e.startTime : null;
  });
  // 15 s of live updates, then the tab's memory.
  const finishedBefore = await page.$eval('tr.task[data-task=noop]', (r) => Number(r.dataset.finished));
  await sleep(15000);
  const finishedAfter = await page.$eval('tr.task[data-task=noop]', (r) => Number(r.dataset.finished));
  const cdp = await context.newCDPSession(page);
  await cdp.send('HeapProfiler.collectGarbage');
  await cdp.send('Performance.enable');
  const metrics = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
  // The tab's renderer: the largest of Chromium's renderers (a spare one
  // may be waiting beside it).
  const pids = renderers(process.pid);
  const rss = Math.max(0, ...pids.map(pssBytes));
  // Still responsive: a script round trip through the busy page.
  const c0 = Date.now();
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
  const click = Date.now() - c0;
  await context.close();
  await d.stop();
  return {
    n, fcp, bars, click, heap: metrics.JSHeapUsedSize, nodes: metrics.Nodes, rss, renderers: pids.length,
    moved: finishedAfter - finishedBefore,
  };
}

// --- D2: daemon CPU during W1 with 0 or 10 dashboards ---------------------
async function measureW1(tabs) {
  const d = await startDaemon();
  // One browser; each dashboard in a context of its own (as 10 people
  // would watch: a browser keeps at most 6 connections to one host, and a
  // dashboard's event stream holds one).
  const browser = tabs > 0 ? await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  }) : null;
  const cpu0 = cpuSeconds(d.proc.pid);
  const t0 = Date.now();
  const run = d.ctl('run', 'w1.yaml', '--detach', '-p', `n=${N_W1}`).trim();
  const pages = [];
  for (let i = 0; i < tabs; i++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await login(context, d);
    const page = await context.newPage();
    await page.goto(`${d.base}/runs/${run}`);
    pages.push(page);
  }
  // The event streams the daemon holds now (one per dashboard).
  const streams = (await fetch(`${d.base}/metrics`, { headers: { Authorization: `Bearer ${token}` } }).then((r) => r.text()))
    .match(/^asflow_http_event_streams (\d+)/m);
  // Until the run ends (asflowctl watch returns then).
  execFileSync(join(build, 'client/asflowctl'), ['--socket', join(d.dir, 'd.sock'), 'watch', run, '--plain'],
    { cwd: join(d.dir, 'ws'), stdio: 'ignore' });
  const wall = (Date.now() - t0) / 1000;
  const cpu = cpuSeconds(d.proc.pid) - cpu0;
  let shown = null;
  if (pages.length) {
    await pages[0].waitForSelector('#run-state[data-state=succeeded]', { timeout: 30000 });
    shown = await pages[0].$eval('tr.task[data-task=item]', (r) => Number(r.dataset.finished));
  }
  if (browser) await browser.close();
  await d.stop();
  return { tabs, wall, cpu, shown, streams: streams ? Number(streams[1]) : 0 };
}

async function main() {
  const cpus = execFileSync('nproc', { encoding: 'utf8' }).trim();
  log(`build ${build}, ${cpus} CPUs, reps ${reps}`);
  const pageRows = [];
  for (let r = 0; r < reps; r++) {
    for (const n of [N_SMALL, N_BIG]) {
      log(`D1 rep ${r + 1}: run page of ${n} instances`);
      pageRows.push(await measurePage(n));
      log(JSON.stringify(pageRows[pageRows.length - 1]));
    }
  }
  const w1Rows = [];
  for (let r = 0; r < reps; r++) {
    for (const tabs of [0, TABS]) {
      log(`D2 rep ${r + 1}: W1 (N=${N_W1}) with ${tabs} dashboards`);
      w1Rows.push(await measureW1(tabs));
      log(JSON.stringify(w1Rows[w1Rows.length - 1]));
    }
  }
  const mb = (b) => (b / 1e6).toFixed(1);
  console.log(`## Dashboard (bench/dashboard.sh${quick ? ' --quick' : ''}, ${reps} reps, medians)\n`);
  console.log('| run page | first contentful paint ms | bars drawn ms | next frame ms | JS heap MB | DOM nodes | tab renderer PSS MB | finished shown in 15 s |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const n of [N_SMALL, N_BIG]) {
    const rows = pageRows.filter((p) => p.n === n);
    console.log(`| ${n.toLocaleString('en')} instances, running | ${median(rows.map((p) => p.fcp)).toFixed(0)} | ${median(rows.map((p) => p.bars))} | ${median(rows.map((p) => p.click))} | ${mb(median(rows.map((p) => p.heap)))} | ${median(rows.map((p) => p.nodes))} | ${mb(median(rows.map((p) => p.rss)))} | ${median(rows.map((p) => p.moved))} |`);
  }
  console.log(`\n| W1, N=${N_W1.toLocaleString('en')} | daemon CPU s | wall s | event streams open during the run |`);
  console.log('| --- | --- | --- | --- |');
  for (const tabs of [0, TABS]) {
    const rows = w1Rows.filter((w) => w.tabs === tabs);
    console.log(`| ${tabs} dashboards | ${median(rows.map((w) => w.cpu)).toFixed(2)} | ${median(rows.map((w) => w.wall)).toFixed(2)} | ${median(rows.map((w) => w.streams))} |`);
  }
  const cpu0 = median(w1Rows.filter((w) => w.tabs === 0).map((w) => w.cpu));
  const cpu10 = median(w1Rows.filter((w) => w.tabs === TABS).map((w) => w.cpu));
  console.log(`\nDaemon CPU with ${TABS} dashboards / without: ${(cpu10 / cpu0).toFixed(3)} (+${(cpu10 - cpu0).toFixed(2)} s over the run)`);
  console.log(`\nPer rep (D1): ${JSON.stringify(pageRows)}`);
  console.log(`Per rep (D2): ${JSON.stringify(w1Rows)}`);
  console.log(`Machine: ${cpus} CPUs, load ${readFileSync('/proc/loadavg', 'utf8').trim()}, ${execFileSync('/usr/bin/chromium', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()}`);
}

try {
  await main();
} catch (e) {
  console.error(`dashboard bench failed: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  for (const d of [...live]) await d.stop();
  rmSync(B, { recursive: true, force: true, maxRetries: 5 });
}
