// The web dashboard: its access rules over plain HTTP, then the real thing in headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core) against a daemon with trained versions:
// log in, see the serving version and charts drawn from the data, browse and filter turns, roll
// back from the weights page and see the served version change. Screenshots of each page go to
// test-artifacts/ for a person to look at.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { optIn, repoRoot, tempDir, until } from './helpers.ts';
import { SESSION, closeOps, serve, startOps, trainTo } from './ops-helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(repoRoot, 'test-artifacts');
const OTHER = 'agent:main:other';

test('/ui data wants the session cookie or the token; the cookie is HttpOnly, SameSite=Strict, same-origin only', async () => {
  const ops = await startOps();
  const { url, token } = ops.daemon;
  const get = (path: string, headers: Record<string, string> = {}) => fetch(`${url}${path}`, { headers });
  for (const path of ['/ui/api/overview', '/ui/api/turns', '/ui/api/sessions']) assert.equal((await get(path)).status, 401, path);
  assert.equal((await get('/ui/api/overview', { cookie: 'clawrl_session=made-up' })).status, 401);
  assert.equal((await get('/ui/')).status, 200, 'the page itself (no data) is public');

  const login = (given: string, origin = url) =>
    fetch(`${url}/ui/login`, { method: 'POST', headers: { origin, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: given }) });
  assert.equal((await login('wrong')).status, 401);
  assert.equal((await login(token, 'http://localhost:3000')).status, 403, 'a login posted from another origin');
  const res = await login(token);
  assert.equal(res.status, 204);
  const setCookie = res.headers.get('set-cookie') ?? '';
  assert.match(setCookie, /^clawrl_session=[\w-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=\d+$/);
  assert.ok(!setCookie.includes(token), 'the cookie holds a session id, not the token');
  const cookie = setCookie.split(';')[0]!;

  const overview = (await (await get('/ui/api/overview', { cookie })).json()) as { status: { weightVersion: string } };
  assert.equal(overview.status.weightVersion, 'base');
  assert.equal((await get('/ui/api/turns', { authorization: `Bearer ${token}` })).status, 200, 'the bearer token works too');
  for (const path of ['/v1/models', '/status', '/weights']) assert.equal((await get(path, { cookie })).status, 401, `the cookie opens the dashboard, not ${path}`);
  const pin = (origin: string) => fetch(`${url}/weights/pin`, { method: 'POST', headers: { cookie, origin }, body: JSON.stringify({ version: null }) });
  assert.equal((await pin('http://localhost:3000')).status, 401, 'a state change from another origin on this host');
  assert.equal((await pin(url)).status, 200);

  await fetch(`${url}/ui/logout`, { method: 'POST', headers: { cookie, origin: url } });
  assert.equal((await get('/ui/api/overview', { cookie })).status, 401, 'logged out');
  await closeOps(ops);
});

test('/ui/api/sessions pages through the sessions in key order, by prefix, from a cursor', async () => {
  const ops = await startOps();
  const { url, token } = ops.daemon;
  // SESSION (agent:main:main) is opted in already; 120 more, plus one opted out.
  const keys = Array.from({ length: 120 }, (_, i) => `bulk:${String(i).padStart(3, '0')}`);
  await ops.client.sendEvents([...keys.map((key) => optIn(++ops.seq, key)), { kind: 'session.optout', seq: ++ops.seq, at: Date.now(), sessionKey: 'zz:out' }]);
  type Page = { total: number; optedIn: number; sessions: { sessionKey: string; optedIn: boolean; turns: number }[]; next: string | null };
  const get = async (query: string) => {
    const res = await fetch(`${url}/ui/api/sessions?${query}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: (await res.json()) as Page & { error?: { message: string } } };
  };

  const seen: string[] = [];
  let next: string | null = '';
  let pages = 0;
  while (next !== null) {
    const { body } = await get(`prefix=bulk:&limit=50${next ? `&after=${encodeURIComponent(next)}` : ''}`);
    assert.deepEqual([body.total, body.optedIn], [122, 121], 'every session is counted, whatever the page');
    seen.push(...body.sessions.map((s) => s.sessionKey));
    next = body.next;
    pages++;
  }
  assert.equal(pages, 3);
  assert.deepEqual(seen, keys, 'each session of the prefix once, in key order');

  const first = (await get('')).body;
  assert.deepEqual(first.sessions.map((s) => s.sessionKey).slice(0, 2), [SESSION, 'bulk:000'], 'no prefix: every session (agent:… sorts before bulk:…)');
  assert.equal(first.sessions.length, 50);
  const tail = (await get(`after=${encodeURIComponent('bulk:119')}`)).body;
  assert.deepEqual(tail.sessions.map((s) => [s.sessionKey, s.optedIn]), [['zz:out', false]]);
  assert.equal(tail.next, null, 'the last page says so');
  assert.deepEqual((await get('prefix=nothing:')).body.sessions, []);

  assert.equal((await get('limit=0')).body.error?.message, 'limit must be an integer from 1 to 500');
  assert.equal((await get(`after=${'a'.repeat(600)}`)).status, 400, 'a cursor longer than a key');
  await closeOps(ops);
});

/** How many pixels of a chart's canvas have a series' stroke colour: zero unless that line was drawn. */
function strokePixels(page: Page, chartId: string, rgb: [number, number, number]): Promise<number> {
  return page.evaluate(
    ([id, [r, g, b]]) => {
      const canvas = document.querySelector<HTMLCanvasElement>(`#${id} canvas`)!;
      const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i] === r && data[i + 1] === g && data[i + 2] === b) n++;
      return n;
    },
    [chartId, rgb] as const,
  );
}

test('the dashboard in Chromium: login, version and charts, turns, rollback', { skip: !existsSync(CHROMIUM) && `needs ${CHROMIUM} (apt-get install chromium)` }, async () => {
  const ops = await startOps();
  await trainTo(ops, 2);
  // A second session with one reply rated bad, served by v000002: a different point on the curve.
  await ops.client.sendEvents([optIn(++ops.seq, OTHER)]);
  await serve(ops, 'something else', OTHER);
  await ops.client.sendEvents([{ kind: 'feedback', seq: ++ops.seq, at: Date.now(), sessionKey: OTHER, rating: 'bad' }]);
  // The pipeline scores it after the ack, and the turn list below is read once, not polled.
  await until(() => [...ops.daemon.store.turnsOf(OTHER)].some((t) => t.reward !== null), 'the other session\'s turn scored');
  const { url, token } = ops.daemon;
  mkdirSync(ARTIFACTS, { recursive: true });

  const context = await chromium.launchPersistentContext(tempDir('clawrl-chromium-'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const problems: string[] = [];
  const urls: string[] = [];
  context.on('request', (r) => urls.push(r.url()));
  try {
    const page = await context.newPage();
    // Refused requests are checked one by one below; the browser's console line for each is not a script error.
    page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && problems.push(m.text()));
    page.on('pageerror', (e) => problems.push(e.message));
    const refused: string[] = [];
    page.on('response', (r) => r.status() >= 400 && refused.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`));

    await page.goto(`${url}/ui`);
    await page.locator('#login-form').waitFor();
    await page.fill('input[name=token]', 'not the token');
    await page.click('#login-form button');
    await page.locator('#login-error').waitFor();
    assert.match(await page.textContent('#login-error') ?? '', /not right/);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-login.png') });

    await page.fill('input[name=token]', token);
    await page.click('#login-form button');
    await page.locator('#current-version', { hasText: 'v000002' }).waitFor();
    const [cookie] = await context.cookies();
    assert.deepEqual([cookie?.name, cookie?.httpOnly, cookie?.sameSite], ['clawrl_session', true, 'Strict']);
    await page.locator('#chart-reward canvas').waitFor();
    await page.locator('#chart-training canvas').waitFor();
    assert.ok((await strokePixels(page, 'chart-reward', [0x25, 0x63, 0xeb])) > 50, 'the mean-reward line is drawn');
    assert.ok((await strokePixels(page, 'chart-training', [0xdc, 0x26, 0x26])) > 50, 'the loss line is drawn');
    await page.locator('#chart-health canvas').waitFor();
    assert.ok((await strokePixels(page, 'chart-health', [0x08, 0x91, 0xb2])) > 50, 'the entropy line is drawn');
    assert.equal(await page.textContent('#sessions'), '2 of 2');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-overview.png'), fullPage: true });

    await page.click('nav a[href="#turns"]');
    const rows = page.locator('#turn-table tbody tr');
    await page.locator('#turn-count', { hasText: '5 turns' }).waitFor();
    assert.equal(await page.textContent('#session-total'), '2 of 2 sessions');
    await page.selectOption('#turn-filter select[name=session]', OTHER);
    await page.locator('#turn-count', { hasText: '1 turn' }).waitFor();
    assert.deepEqual(await rows.locator('td.reward').allTextContents(), ['-1']);
    await page.selectOption('#turn-filter select[name=session]', SESSION);
    await page.selectOption('#turn-filter select[name=reward]', '1');
    await page.locator('#turn-count', { hasText: '4 turns' }).waitFor();
    assert.match(await rows.first().textContent() ?? '', /feedback: good.*\(feedback\)\+1/s);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-turns.png'), fullPage: true });

    await page.click('nav a[href="#weights"]');
    await page.locator('#weights-serving', { hasText: 'Serving v000002.' }).waitFor();
    page.once('dialog', (dialog) => void dialog.accept());
    await page.click('button[data-action=rollback][data-version=v000001]');
    await page.locator('#weights-serving', { hasText: 'Serving v000001.' }).waitFor();
    assert.equal(ops.daemon.backend!.currentVersion(), 'v000001');
    assert.equal(await serve(ops, 'which version now?'), 'v000001', 'the API serves the rolled-back version');
    assert.equal(await page.locator('tr.serving td').first().textContent(), 'v000001');
    // The served reward carries its 95 % interval, and each version its health.
    assert.match(await page.locator('tr.serving td').nth(7).textContent() ?? '', /^[-+]?\d\.\d\d \[-?\d\.\d\d, -?\d\.\d\d\] \(hit \d+ %\)$/);
    assert.match(await page.locator('tr.serving td').nth(8).textContent() ?? '', /^entropy \d+\.\d\d · distinct-2 \d\.\d\d · \d+\.\d tokens/);
    assert.equal(await page.locator('tr.serving td').nth(9).textContent(), 'kept (person): rolled back to by hand');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-weights.png'), fullPage: true });

    assert.deepEqual(problems, [], 'no script errors (CSP refusals included)');
    assert.deepEqual(refused, ['401 GET /ui/api/overview', '401 POST /ui/login'], 'refused only before logging in, and the wrong token');
    assert.deepEqual(urls.filter((u) => u.includes(token)), [], 'the token never appears in a URL');
  } finally {
    await context.close();
    await closeOps(ops);
  }
});
