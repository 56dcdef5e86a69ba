// asflowd's dashboard in a real browser: Debian's Chromium (/usr/bin/chromium,
// never downloaded), driven by playwright-core. A real asflowd with --http
// and a token runs the dashboard's test flow; the test logs in through the
// token prompt, watches the run's page while it runs (the bars move, the
// running instances change), reads a failed instance's error text, cancels
// the run from the page and checks `asflowctl runs` says cancelled. Then a
// run through a throttle key against the offline YouTube fixture answering
// 429: the page shows the key cooling down, pauses the task (`asflowctl
// throttle` agrees), resumes it, and the run finishes. It saves
// screenshots in $ASFLOW_SCREENSHOT_DIR (docs/img/ holds copies).
//   ASFLOW_BUILD=build node tests/web/dashboard_test.mjs
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const build = process.env.ASFLOW_BUILD || join(root, 'build');
const shots = process.env.ASFLOW_SCREENSHOT_DIR || join(build, 'screenshots');
const tmp = mkdtempSync(join(tmpdir(), 'asflow-web-'));
const token = `web-${process.pid}-${Date.now()}`;
const ws = join(tmp, 'ws');
mkdirSync(ws);
mkdirSync(shots, { recursive: true });
cpSync(join(root, 'tests/testdata/web/scripts'), join(ws, 'scripts'), { recursive: true });
cpSync(join(root, 'examples/youtube/scripts/transcript.py'), join(ws, 'scripts/transcript.py'));
writeFileSync(join(tmp, 'token'), `${token}\n`);

const log = join(tmp, 'asflowd.log');
const ctl = (...args) =>
  execFileSync(join(build, 'client/asflowctl'), ['--socket', join(tmp, 'd.sock'), ...args], { cwd: ws, encoding: 'utf8' });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let daemon = null;
let fixture = null;
let context = null;
let passed = 0;

async function waitFor(what, fn, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function check(what, fn) {
  fn();
  passed++;
  console.log(`ok - ${what}`);
}

async function main() {
  const out = (await import('node:fs')).openSync(log, 'w');
  daemon = spawn(join(build, 'server/asflowd'),
    ['--socket', join(tmp, 'd.sock'), '--state', join(tmp, 'state.db'), '--allow-root', tmp,
      '--http', '127.0.0.1:0', '--token-file', join(tmp, 'token')],
    { stdio: ['ignore', out, out] });
  const port = await waitFor('asflowd to listen', () => {
    const m = readFileSync(log, 'utf8').match(/serving http on 127\.0\.0\.1:(\d+)/);
    return m && m[1];
  });
  const base = `http://127.0.0.1:${port}`;
  const flow = join(root, 'tests/testdata/web/dash.flow.yaml');
  const run = ctl('run', flow, '--detach', '--keep-going', '-p', 'n=80', '-p', 'sleep=0.4').trim();

  context = await chromium.launchPersistentContext(join(tmp, 'profile'), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('dialog', (d) => d.accept());  // the cancel confirmation

  // The token prompt, then the run's page.
  const prompt = await page.goto(`${base}/runs/${run}`);
  check('a page without the token gets the prompt (401)', () => assert.equal(prompt.status(), 401));
  await page.fill('#token', 'not-the-token');
  await page.click('button[type=submit]');
  await page.waitForSelector('text=That is not the token');
  await page.fill('#token', token);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/runs/${run}`);
  await page.waitForSelector('tr.task[data-task=fetch]');
  check('the prompt leads to the run page', () => assert.ok(true));

  // The fetch bar moves.
  const finished = () => page.$eval('tr.task[data-task=fetch]', (r) => Number(r.dataset.finished));
  const first = await waitFor('a finished fetch', async () => (await finished()) > 0 && (await finished()));
  const later = await waitFor('the fetch bar to move', async () => {
    const n = await finished();
    return n > first + 2 && n;
  });
  check(`the fetch bar moves (${first} -> ${later} finished)`, () => assert.ok(later > first));

  // The running instances change.
  const running = () => page.$$eval('tr.running-row', (rows) => rows.map((r) => r.dataset.seq).sort().join(','));
  const before = await waitFor('running instances', running);
  const after = await waitFor('other running instances', async () => {
    const now = await running();
    return now && now !== before && now;
  });
  check(`the running instances change (${before} -> ${after})`, () => assert.notEqual(before, after));

  // A failed instance's error text, on the run page and on its own page.
  // (Rows are looked up afresh: the list grows while the run goes on.)
  await page.waitForSelector('tr.problem[data-state=failed]');
  const errText = await page.$eval('tr.problem[data-state=failed] .errtext', (e) => e.textContent);
  check('the failed instance shows its error', () =>
    assert.equal(errText, 'exit code 1: RateLimited: the API refused id 3 (HTTP 429)'));
  await page.screenshot({ path: join(shots, 'dashboard-run.png'), fullPage: true });

  const href = await page.$eval('tr.problem[data-state=failed] a', (a) => a.getAttribute('href'));
  await page.goto(`${base}${href}`);
  const detail = await page.waitForSelector('#instance-error');
  const full = await detail.textContent();
  check('the instance page shows the whole error text', () =>
    assert.equal(full, 'exit code 1: RateLimited: the API refused id 3 (HTTP 429)\nRateLimited: the API refused id 3 (HTTP 429)'));
  // Its attempts (issue 17): the one try, how it ended, its stderr tail.
  const attempts = await page.$$eval('#attempts tbody tr', (rows) => rows.map((r) => r.textContent));
  check('the instance page lists the attempt with its exit code, error and stderr tail', () => {
    assert.equal(attempts.length, 2);
    assert.match(attempts[0], /^1.*exit 1failedexit code 1: RateLimited: the API refused id 3 \(HTTP 429\)$/);
    assert.equal(attempts[1].trim(), 'RateLimited: the API refused id 3 (HTTP 429)');
  });
  await page.screenshot({ path: join(shots, 'dashboard-instance.png'), fullPage: true });

  // Cancel from the page; asflowctl agrees.
  await page.goto(`${base}/runs/${run}`);
  await page.waitForSelector('#live.live');
  await page.click('#cancel');
  try {
    await page.waitForSelector('#run-state[data-state=cancelled]');
  } catch (e) {
    const seen = await page.evaluate(() => ({
      live: document.querySelector('#live') && document.querySelector('#live').textContent,
      state: document.querySelector('#run-state') && document.querySelector('#run-state').dataset.state,
      visibility: document.visibilityState,
      error: document.querySelector('.error') && document.querySelector('.error').textContent,
    }));
    throw new Error(`${e.message}\npage: ${JSON.stringify(seen)}`);
  }
  const runs = ctl('runs');
  check('asflowctl runs shows the run cancelled', () =>
    assert.match(runs, new RegExp(`^${run} +cancelled +dash `, 'm')));

  // The runs table.
  await page.goto(`${base}/`);
  const row = await page.waitForSelector(`tr[data-run="${run}"]`);
  const state = await row.$eval('.badge', (b) => b.textContent);
  check('the runs table lists the run as cancelled', () => assert.equal(state, 'cancelled'));
  await page.screenshot({ path: join(shots, 'dashboard-runs.png'), fullPage: true });

  await throttleScenario(page, base);

  check('no script error on any page', () => assert.deepEqual(errors, []));
}

// The offline YouTube fixture answers the first 2 transcript requests with
// 429 and Retry-After: 3; the flow fetches 4 transcripts through the key
// yt (limit 1) with the tutorial's cooldown rule.
async function throttleScenario(page, base) {
  fixture = spawn('/usr/bin/python3', [join(root, 'examples/youtube/offline/fixture_server.py'),
    '--throttle', '2', '--window', '600', '--retry-after', '3', '--delay', '0.3'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    fixture.stdout.once('data', (d) => resolve(String(d).split('\n')[0].trim()));
    fixture.once('exit', () => reject(new Error('fixture_server.py exited')));
  });
  const flow = join(tmp, 'polite.flow.yaml');
  writeFileSync(flow, `name: polite
params: {api: ""}
throttle:
  yt: {limit: 1, rate: auto}
tasks:
  - name: fetch
    for_each: {values: [vid01, vid02, vid04, vid06], as: id}
    on: out/{id}.jsonl
    run: [python3, scripts/transcript.py, "{id}"]
    uses: [yt]
    cooldown: {stderr: "429|Too Many Requests", for: 60s, retry_after: "Retry-After: (\\\\d+)"}
`);
  const run = ctl('run', flow, '--detach', '-p', `api=${url}`).trim();
  await page.goto(`${base}/runs/${run}`);

  // The key's row says it is cooling down, and why.
  const cooling = await page.waitForSelector('tr.gate[data-gate=yt][data-state="cooling down"]', { timeout: 20000 });
  const text = await cooling.$eval('.gate-state', (e) => e.textContent);
  check(`the key shows its cooldown (${text})`, () =>
    assert.match(text, /^cooling down until \d\d:\d\d:\d\d \(429 from fetch\(id=vid0\d\)\)$/));
  const rate = await cooling.$eval('td:nth-child(4)', (e) => e.textContent);
  check(`the key's rate shows its current pace (${rate})`, () => assert.match(rate, /^auto · now \d+\.\d\d\/s$/));
  await page.screenshot({ path: join(shots, 'dashboard-throttle.png'), fullPage: true });

  // Pause the task from its row; asflowctl throttle agrees; nothing starts.
  await page.click('tr.task[data-task=fetch] button.gate-action[data-gate="polite.fetch"]');
  await page.waitForSelector('tr.gate[data-gate="polite.fetch"][data-state=paused]');
  await page.waitForSelector('tr.task[data-task=fetch] button.gate-action.resume');
  const listed = ctl('throttle');
  check('asflowctl throttle shows the task paused', () => assert.match(listed, /^task polite\.fetch\b.*\bpaused$/m));
  await waitFor('the task row to say it is paused', () =>
    page.$eval('tr.task[data-task=fetch] .note', (e) => /paused/.test(e.textContent)));
  await waitFor('the running instance to finish', async () => (await page.$$('tr.running-row')).length === 0);
  const held = await page.$eval('tr.task[data-task=fetch]', (r) => Number(r.dataset.finished));
  await sleep(1500);
  const still = await page.$eval('tr.task[data-task=fetch]', (r) => Number(r.dataset.finished));
  check(`a paused task starts nothing (${held} finished, then ${still})`, () => {
    assert.equal(still, held);
    assert.ok(held < 4);
  });

  // Resume from the page: the run finishes with every output.
  await page.click('tr.task[data-task=fetch] button.gate-action.resume');
  await page.waitForSelector('#run-state[data-state=succeeded]', { timeout: 120000 });
  const runs = ctl('runs');
  check('resumed, the run succeeds (asflowctl runs)', () =>
    assert.match(runs, new RegExp(`^${run} +succeeded +polite `, 'm')));
  const after = ctl('throttle');
  check('asflowctl throttle no longer lists the task paused', () => assert.doesNotMatch(after, /^task polite\.fetch\b.*\bpaused$/m));
}

try {
  await main();
  console.log(`${passed} passed, 0 failed`);
} catch (e) {
  console.error(`FAIL: ${e.stack || e}`);
  try { console.error(readFileSync(log, 'utf8').split('\n').slice(-20).join('\n')); } catch {}
  console.log(`${passed} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  if (context) await context.close().catch(() => {});
  if (fixture && fixture.exitCode === null) fixture.kill('SIGTERM');
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
  }
  rmSync(tmp, { recursive: true, force: true });
}
