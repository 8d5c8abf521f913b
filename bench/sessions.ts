// Many-sessions benchmark: a real daemon (child process, real LMDB) with --sessions sessions opted
// in, each with a few events, then the status, metrics and dashboard endpoints timed one request
// at a time (target: each under 50 ms), with /healthz polled beside them (it answers late only if
// one of them blocked the daemon's event loop).
// Usage: node --import tsx bench/sessions.ts [--sessions 100000] [--events 2] [--repeat 20]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { Event } from '../protocol/index.ts';
import { TestClient, optIn, runCli, spawnDaemon, tempDir } from '../test/helpers.ts';

const { values } = parseArgs({
  options: { sessions: { type: 'string', default: '100000' }, events: { type: 'string', default: '2' }, repeat: { type: 'string', default: '20' } },
});
const sessions = Number(values.sessions);
const eventsPerSession = Number(values.events);
const repeat = Number(values.repeat);
const FRAME = 2_000;

const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const key = (i: number) => `agent:bench:${String(i).padStart(7, '0')}`;

const dataDir = tempDir('clawrl-sessions-');
const daemon = await spawnDaemon(dataDir);
const token = (await runCli(dataDir, ['token'])).stdout.trim();
const client = await TestClient.connect(daemon.wsUrl, token);
await client.hello('bench-sessions');

// Each session: its opt-in, then `eventsPerSession` user messages, sent in frames of FRAME events.
const fillStart = performance.now();
let seq = 0;
let frame: Event[] = [];
for (let i = 0; i < sessions; i++) {
  frame.push(optIn(++seq, key(i)));
  for (let j = 0; j < eventsPerSession; j++) frame.push({ kind: 'user.message', seq: ++seq, at: Date.now(), sessionKey: key(i), content: `message ${j} of session ${i}` });
  if (frame.length >= FRAME || i === sessions - 1) {
    await client.sendEvents(frame);
    frame = [];
  }
}
const fillS = (performance.now() - fillStart) / 1000;
client.close();
const loadDuring = loadavg()[0]!;
// The passes the last batches nudged (turn assembly, scoring) run first: what is timed below is the endpoints.
await new Promise((r) => setTimeout(r, 3_000));

const headers = { authorization: `Bearer ${token}` };
async function time(path: string): Promise<{ ms: number; bytes: number; status: number }> {
  const start = performance.now();
  const res = await fetch(`${daemon.url}${path}`, { headers });
  const body = await res.arrayBuffer();
  return { ms: performance.now() - start, bytes: body.byteLength, status: res.status };
}

const middle = encodeURIComponent(key(Math.floor(sessions / 2)));
const endpoints = [
  '/healthz',
  '/status',
  '/metrics',
  '/ui/api/overview',
  '/ui/api/sessions',
  `/ui/api/sessions?after=${middle}&limit=100`,
  `/ui/api/sessions?prefix=${encodeURIComponent(key(sessions - 1).slice(0, -2))}`,
  '/ui/api/turns',
];
const rows: string[] = [];
let healthMax = 0;
for (const path of endpoints) {
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i < repeat; i++) {
    // /healthz beside the request: late only if the daemon's loop was blocked meanwhile.
    const [r, health] = await Promise.all([time(path), time('/healthz')]);
    if (r.status !== 200) throw new Error(`${path} answered ${r.status}`);
    times.push(r.ms);
    bytes = r.bytes;
    healthMax = Math.max(healthMax, health.ms);
  }
  rows.push(`| \`${decodeURIComponent(path)}\` | ${percentile(times, 50).toFixed(1)} | ${percentile(times, 90).toFixed(1)} | ${Math.max(...times).toFixed(1)} | ${bytes.toLocaleString('en')} |`);
}
const status = (await (await fetch(`${daemon.url}/status`, { headers })).json()) as { sessions: { total: number; optedIn: number }; counters: { eventsStored: number } };
await daemon.stop();

console.log(`${status.sessions.optedIn.toLocaleString('en')} of ${status.sessions.total.toLocaleString('en')} sessions opted in, ${status.counters.eventsStored.toLocaleString('en')} events stored in ${fillS.toFixed(1)} s; load average ${loadDuring.toFixed(2)} while filling, ${loadavg()[0]!.toFixed(2)} after; ${repeat} requests per endpoint`);
console.log('| endpoint | p50 ms | p90 ms | max ms | body bytes |');
console.log('|---|---|---|---|---|');
for (const row of rows) console.log(row);
console.log(`/healthz beside them: max ${healthMax.toFixed(1)} ms (target: every endpoint and /healthz under 50 ms)`);
