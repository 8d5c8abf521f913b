// The dashboard's script: a plain ES module, no build step. Data comes from /ui/api/* with the
// session cookie; rollback and pin call the daemon's own /weights routes with the same cookie.
// Values from the daemon reach the page only as text (textContent), never as HTML.
/* global uPlot */
const $ = (selector) => document.querySelector(selector);
const REFRESH_MS = 3000;

class LoggedOut extends Error {}

async function request(path, init) {
  const res = await fetch(path, init);
  if (res.status === 401) {
    showLogin();
    throw new LoggedOut();
  }
  const body = await res.json();
  if (!res.ok) throw new Error(body.error?.message ?? `${path} answered ${res.status}`);
  return body;
}

const postJson = (path, body) => request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

const fixed = (n, digits = 3) => (n === null || n === undefined ? '–' : n.toFixed(digits));
const signed = (n) => (n === null || n === undefined ? '–' : n > 0 ? `+${n}` : String(n));
const seconds = (ms) => `${Math.round(ms / 1000)} s`;
const versionLabel = (n) => (n === 0 ? 'base' : `v${n}`);

// ---- login ----

function showLogin() {
  stopRefresh();
  $('#nav').hidden = true;
  for (const page of document.querySelectorAll('.page')) page.hidden = true;
  $('#login').hidden = false;
}

$('#login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const res = await fetch('/ui/login', { method: 'POST', body: new URLSearchParams(new FormData(event.target)) });
  const error = $('#login-error');
  if (res.status !== 204) {
    error.textContent = res.status === 401 ? 'That token is not right.' : `Login failed (${res.status}).`;
    error.hidden = false;
    return;
  }
  error.hidden = true;
  event.target.reset();
  $('#login').hidden = true;
  $('#nav').hidden = false;
  show();
});

$('#logout').addEventListener('click', async () => {
  await fetch('/ui/logout', { method: 'POST' });
  showLogin();
});

// ---- charts ----

const charts = new Map();

/** Draws (or redraws with new data) one uPlot chart of per-version series. */
function drawChart(id, series, data, scales) {
  const target = document.getElementById(id);
  const existing = charts.get(id);
  if (existing && existing.series.length === series.length + 1) {
    existing.setData(data);
    return;
  }
  existing?.destroy();
  const axes = [
    { values: (_u, ticks) => ticks.map(versionLabel), incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] },
    ...Object.keys(scales).map((scale, i) => ({ scale, side: i === 0 ? 3 : 1, grid: { show: i === 0 } })),
  ];
  const chart = new uPlot(
    {
      width: target.clientWidth || 480,
      height: 240,
      scales: { x: { time: false }, ...scales },
      axes,
      series: [{ label: 'version', value: (_u, v) => (v === null ? '–' : versionLabel(v)) }, ...series.map((s) => ({ spanGaps: true, width: 2, points: { size: 7 }, ...s }))],
    },
    data,
    target,
  );
  charts.set(id, chart);
}

function drawCharts(versions) {
  const x = versions.map((v) => v.number);
  drawChart(
    'chart-reward',
    [
      { label: 'mean reward', scale: 'reward', stroke: '#2563eb' },
      // The error bar: the 95 % Wilson interval of the mean reward (see daemon/health.ts).
      { label: '95 % low', scale: 'reward', stroke: '#93c5fd', width: 1, dash: [4, 4], points: { show: false } },
      { label: '95 % high', scale: 'reward', stroke: '#93c5fd', width: 1, dash: [4, 4], points: { show: false } },
      { label: 'hit rate', scale: 'reward', stroke: '#16a34a' },
    ],
    [x, versions.map((v) => v.served.meanReward), versions.map((v) => v.health?.reward.low ?? null), versions.map((v) => v.health?.reward.high ?? null), versions.map((v) => v.served.hitRate)],
    { reward: { range: [-1, 1] } },
  );
  drawChart(
    'chart-health',
    [
      { label: 'entropy (nats/token)', scale: 'nats', stroke: '#0891b2' },
      { label: 'drift to base (nats/token)', scale: 'nats', stroke: '#ea580c' },
      { label: 'distinct-2', scale: 'share', stroke: '#65a30d' },
    ],
    [x, versions.map((v) => v.health?.entropy ?? null), versions.map((v) => v.health?.drift ?? null), versions.map((v) => v.health?.distinct2 ?? null)],
    { nats: {}, share: { range: [0, 1] } },
  );
  const trained = versions.filter((v) => v.loss !== null);
  drawChart(
    'chart-training',
    [
      { label: 'loss', scale: 'value', stroke: '#dc2626' },
      { label: 'mean advantage', scale: 'value', stroke: '#9333ea' },
    ],
    [trained.map((v) => v.number), trained.map((v) => v.loss), trained.map((v) => v.batch.meanAdvantage)],
    { value: {} },
  );
}

// ---- overview ----

function renderOverview({ status, versions, step }) {
  const pinned = status.training?.pinned === status.weightVersion;
  $('#current-version').textContent = status.weightVersion;
  $('#pinned').hidden = !pinned;
  $('#connections').textContent = status.connections;
  $('#sessions').textContent = `${status.sessions.optedIn} of ${status.sessions.total}`;
  $('#scoring-queue').textContent = status.scoring.queueDepth;
  $('#training-queue').textContent = status.training ? `${status.training.waiting} / ${status.training.batchSize}` : 'off';
  $('#steps').textContent = status.training?.steps ?? '–';
  $('#step').hidden = !step;
  if (step) {
    const fraction = step.expectedMs ? Math.min(0.99, step.elapsedMs / step.expectedMs) : undefined;
    if (fraction === undefined) $('#step-progress').removeAttribute('value');
    else $('#step-progress').value = fraction;
    const eta = step.expectedMs ? `, about ${seconds(Math.max(0, step.expectedMs - step.elapsedMs))} left` : '';
    $('#step-text').textContent = `${step.phase} ${step.version} on ${step.turns} turns: ${seconds(step.elapsedMs)}${eta}`;
  }
  drawCharts(versions);
}

// ---- turns ----

function nextStateText(next) {
  const parts = [];
  if (next.userMessage !== undefined) parts.push(`user: ${next.userMessage}`);
  for (const r of next.toolResults) parts.push(`${r.toolName}${r.exitCode !== undefined ? ` (exit ${r.exitCode})` : ''}${r.isError ? ' error' : ''}: ${r.output}`);
  if (next.feedback?.rating) parts.push(`feedback: ${next.feedback.rating}`);
  if (next.feedback?.hint) parts.push(`feedback hint: ${next.feedback.hint}`);
  if (next.none) parts.push('(nothing followed)');
  return parts.join('\n');
}

function turnRow(turn) {
  const row = document.createElement('tr');
  const action = [turn.action.text, ...turn.action.toolCalls.map((c) => `${c.name}(${c.arguments})`)].filter(Boolean).join('\n');
  const votes = turn.score ? `${turn.score.votes.map((v) => (v === null ? '✗' : signed(v))).join(' ') || '–'} (${turn.score.source})` : 'unscored';
  const adv = turn.score?.advantages;
  row.append(
    el('td', `${turn.sessionKey} #${turn.turnIndex}`),
    el('td', turn.trainedIn ? `${turn.weightVersion} → ${turn.trainedIn}` : turn.weightVersion),
    el('td', action, 'text'),
    el('td', nextStateText(turn.nextState), 'text'),
    el('td', votes),
    el('td', signed(turn.reward), 'reward'),
    el('td', turn.hint ?? '', 'text'),
    el('td', adv ? `mean ${fixed(adv.mean)} [${fixed(adv.min)}, ${fixed(adv.max)}] on ${adv.trained}/${adv.tokens} tokens` : '–'),
  );
  return row;
}

/** Sessions the picker asks for at a time: a store may hold 100,000, so it holds pages, not the list. */
const SESSION_PAGE = 100;
/** Where the next page of sessions starts; null when the picker holds them all. */
let sessionsNext = null;

async function loadSessions(more = false) {
  const select = $('#turn-filter select[name=session]');
  const query = new URLSearchParams({ limit: String(SESSION_PAGE), prefix: $('#session-search').value });
  if (more) query.set('after', sessionsNext);
  const { sessions, total, next } = await request(`/ui/api/sessions?${query}`);
  const options = sessions.map((s) => {
    const option = el('option', `${s.sessionKey} (${s.turns})`);
    option.value = s.sessionKey;
    return option;
  });
  if (more) {
    select.append(...options);
  } else {
    const chosen = select.value;
    const all = el('option', 'all');
    all.value = '';
    select.replaceChildren(all, ...options);
    // The session being browsed stays chosen even when the new page does not hold it.
    if (chosen && !sessions.some((s) => s.sessionKey === chosen)) select.append(Object.assign(el('option', chosen), { value: chosen }));
    select.value = chosen;
  }
  sessionsNext = next;
  $('#session-more').hidden = next === null;
  $('#session-total').textContent = `${select.options.length - 1} of ${total} session${total === 1 ? '' : 's'}`;
}

async function loadTurns() {
  const query = new URLSearchParams([...new FormData($('#turn-filter'))].filter(([, v]) => v !== ''));
  const { turns, total } = await request(`/ui/api/turns?${query}`);
  $('#turn-count').textContent = `${total} turn${total === 1 ? '' : 's'}${total > turns.length ? `, newest ${turns.length} shown` : ''}`;
  $('#turn-table tbody').replaceChildren(...turns.map(turnRow));
}

$('#turn-filter').addEventListener('change', (event) => {
  if (event.target.id !== 'session-search') void loadTurns().catch(report);
});
// Enter in the search box would submit the form (a page load): the list follows the typing instead.
$('#turn-filter').addEventListener('submit', (event) => event.preventDefault());
$('#session-search').addEventListener('input', () => void loadSessions().catch(report));
$('#session-more').addEventListener('click', () => void loadSessions(true).catch(report));

// ---- weights ----

async function control(path, body) {
  const error = $('#weights-error');
  try {
    await postJson(path, body);
    error.hidden = true;
  } catch (err) {
    if (err instanceof LoggedOut) return;
    error.textContent = err.message;
    error.hidden = false;
  }
  await refresh();
}

function renderWeights({ status, versions }) {
  const pinned = status.training?.pinned ?? null;
  $('#weights-serving').textContent = status.training
    ? `Serving ${status.weightVersion}${pinned ? ' (pinned)' : ''}.`
    : `Serving ${status.weightVersion}; this backend cannot train, so there are no versions to roll back to.`;
  $('#unpin').hidden = !pinned;
  const rows = [...versions].reverse().map((v) => {
    const row = document.createElement('tr');
    if (v.version === status.weightVersion) row.className = 'serving';
    const buttons = el('div', undefined, 'actions');
    if (status.training && v.version !== status.weightVersion) {
      const rollback = el('button', 'Roll back to this');
      rollback.dataset.action = 'rollback';
      rollback.dataset.version = v.version;
      buttons.append(rollback);
    }
    if (status.training && v.version !== 'base' && v.version !== pinned) {
      const pin = el('button', 'Pin');
      pin.dataset.action = 'pin';
      pin.dataset.version = v.version;
      buttons.append(pin);
    }
    row.append(
      el('td', v.version),
      el('td', v.parent ?? (v.version === 'base' ? '' : 'base')),
      el('td', v.createdAt ? new Date(v.createdAt).toLocaleString() : ''),
      el('td', v.batch.turns ? `${v.batch.turns} turns, reward ${fixed(v.batch.meanReward, 2)}` : ''),
      el('td', fixed(v.loss, 4)),
      el('td', fixed(v.batch.meanAdvantage)),
      el('td', v.served.turns),
      el('td', v.served.meanReward === null ? '–' : `${fixed(v.served.meanReward, 2)} [${fixed(v.health?.reward.low, 2)}, ${fixed(v.health?.reward.high, 2)}] (hit ${Math.round(v.served.hitRate * 100)} %)`),
      el('td', v.health ? `entropy ${fixed(v.health.entropy, 2)} · distinct-2 ${fixed(v.health.distinct2, 2)} · ${fixed(v.health.replyTokens, 1)} tokens${v.health.drift === null ? '' : ` · drift ${fixed(v.health.drift, 3)}`}` : '–'),
      el('td', v.verdict ? `${v.verdict.state} (${v.verdict.by}): ${v.verdict.reason}` : ''),
      el('td'),
    );
    row.lastChild.append(buttons);
    return row;
  });
  $('#weights-table tbody').replaceChildren(...rows);
}

$('#weights-table').addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action]');
  if (!button) return;
  const { action, version } = button.dataset;
  if (action === 'rollback' && !confirm(`Serve ${version} again and continue training from it?`)) return;
  void control(action === 'rollback' ? '/weights/rollback' : '/weights/pin', { version });
});

$('#unpin').addEventListener('click', () => void control('/weights/pin', { version: null }));

// ---- navigation ----

let timer;

function stopRefresh() {
  clearInterval(timer);
  timer = undefined;
}

function report(err) {
  if (!(err instanceof LoggedOut)) console.error(err);
}

const pageName = () => (['overview', 'turns', 'weights'].includes(location.hash.slice(1)) ? location.hash.slice(1) : 'overview');

async function refresh() {
  const page = pageName();
  if (page === 'turns') return Promise.all([loadSessions(), loadTurns()]);
  const overview = await request('/ui/api/overview');
  if (page === 'overview') renderOverview(overview);
  else renderWeights(overview);
}

function show() {
  const page = pageName();
  for (const section of document.querySelectorAll('.page')) section.hidden = section.id !== `page-${page}`;
  for (const link of document.querySelectorAll('#nav a')) link.classList.toggle('active', link.hash === `#${page}`);
  stopRefresh();
  refresh()
    .then(() => {
      $('#login').hidden = true;
      $('#nav').hidden = false;
      // The turn list keeps still while being read; the live pages poll.
      if (page !== 'turns') timer = setInterval(() => void refresh().catch(report), REFRESH_MS);
    })
    .catch(report);
}

window.addEventListener('hashchange', show);
show();
