// Growth benchmark: one store grown to each size in --sizes (default 10^4 … 10^7 events) by a
// real daemon (child process, hints mode: events become samples, turns and hints, nothing
// trains), fed by --clients plugin-like clients with OpenClaw-shaped runs across --sessions
// sessions. At each size it measures:
//   - ingest rate and ack latency over the last --measure events of the growth (each client
//     keeps --window frames of --batch events in flight);
//   - the pipeline's rate over the same events: from their first send until every stage has
//     caught up with them (every model.output event looked at by the pass deriving samples, no
//     turn waiting to be scored), read from the store (read-only, from this process) every 10 ms. Ingest can
//     run ahead of the passes for a while (a fresh daemon's first 10^4 events take a second),
//     so the ingest rate alone would credit the small sizes with work done after the measure;
//   - /status and /metrics answering right after (they read the version stats), and from /metrics
//     what LMDB's commits cost this size's daemon: pages written per event stored, events per
//     commit and sync time per commit (a commit's pages are written and synced under the write lock);
//   - bytes on disk per event (the LMDB file's allocated blocks, and its live pages);
//   - how far the daemon's passes were behind when it stopped (model.output events not yet
//     derived: 0 once caught up) and the samples still open (waiting for their session's next run);
//   - with the daemon stopped, in this process on the same store: storing one more run, reading
//     the version stats, and `sessions export` and `sessions rm` of a large session (5 % of the
//     runs) with the CLI's own code (a CLI process's start would dominate at small sizes).
// Each row is printed as soon as it is measured. Goal: each measure within 20 % of its value at
// the first size. Writes bench/growth.svg.
// Usage: node --import tsx bench/growth.ts [--sizes 10000,100000,1000000,10000000] [--sessions 4000]
import { statSync, writeFileSync } from 'node:fs';
import { open } from 'lmdb';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Event } from '../protocol/index.ts';
import { Store, toExportedTurn } from '../daemon/store.ts';
import { VersionStatsReader } from '../daemon/stats.ts';
import { TestClient, optIn, runCli, spawnDaemon, tempDir, type DaemonProcess } from '../test/helpers.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10000,100000,1000000,10000000' },
    sessions: { type: 'string', default: '4000' },
    clients: { type: 'string', default: '4' },
    window: { type: 'string', default: '4' },
    batch: { type: 'string', default: '64' },
    measure: { type: 'string', default: '20000' },
    svg: { type: 'string', default: 'bench/growth.svg' },
  },
});
const sizes = values.sizes!.split(',').map(Number);
const sessionCount = Number(values.sessions);
const clientCount = Number(values.clients);
const window = Number(values.window);
const batchSize = Number(values.batch);
const measure = Number(values.measure);

// ---- OpenClaw-shaped runs, from a seeded generator (the same store every time) ----

/** mulberry32: 32-bit integer arithmetic (Math.imul), so that it does not lose bits to doubles. */
let seed = 42;
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
};
const WORDS = 'the a file build test error line function import return value config server client request session turn agent model tool output result check fix run npm node git diff commit'.split(' ');
const text = (min: number, max: number) => {
  const length = min + Math.floor(random() * (max - min));
  let out = '';
  while (out.length < length) out += `${WORDS[Math.floor(random() * WORDS.length)]} `;
  return out;
};

/**
 * A run: the user's message, two model calls with a tool call between, the run's output (its text
 * reply: the last message of a run calls no tool) and its end; sometimes a rating. ~400 bytes an
 * event. Its sample's next state is the session's next run.
 */
function runEvents(sessionKey: string, runId: string, nextSeq: () => number): Event[] {
  const at = Date.now();
  const base = () => ({ seq: nextSeq(), at, sessionKey, runId });
  const call = `${runId}:c`;
  const events: Event[] = [
    { ...base(), kind: 'user.message', content: text(80, 400) },
    { ...base(), kind: 'model.call', callId: `${call}1`, provider: 'bench', model: 'bench-model', trigger: 'user', side: false },
    { ...base(), kind: 'tool.result', toolCallId: `${call}1:t`, toolName: 'exec', params: { command: 'npm test' }, output: text(200, 2000), isError: false, exitCode: 0, durationMs: 120 },
    { ...base(), kind: 'model.call', callId: `${call}2`, provider: 'bench', model: 'bench-model', trigger: 'user', side: false },
    { ...base(), kind: 'model.output', assistantTexts: [text(100, 500)], toolCalls: [] },
    { ...base(), kind: 'run.end', success: true, durationMs: 4_000 },
  ];
  if (random() < 0.1) events.push({ ...base(), kind: 'feedback', rating: random() < 0.7 ? 'good' : 'bad' });
  return events;
}

// ---- clients: each owns every clientCount-th session and keeps `window` frames in flight ----

interface Frame {
  sentAt: number;
  ackedAt?: number;
  /** Events sent before this frame, over all clients: which growth window it belongs to. */
  startsAt: number;
}

let sent = 0;
let runs = 0;
/** The session that gets 5 % of the runs; a new one after each size (the old one is removed). */
let bigSession = 'agent:growth:big-0';
const frames: Frame[] = [];

class Client {
  private client!: TestClient;
  private seq = 0;
  private readonly optedIn = new Set<string>();
  private readonly inFlight = new Map<number, Frame>();

  constructor(readonly index: number) {}

  async connect(daemon: DaemonProcess, token: string): Promise<void> {
    this.client = await TestClient.connect(daemon.wsUrl, token);
    await this.client.hello(`growth-${this.index}`);
  }

  /** Sends until `sent` reaches target; resolves once its frames are acked. */
  fill(target: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const pump = () => {
        while (this.inFlight.size < window && sent < target) this.sendFrame();
        if (this.inFlight.size === 0 && sent >= target) resolve();
      };
      this.client.socket.on('message', () => {
        const now = performance.now();
        for (const m of this.client.received.splice(0)) {
          if (m.type !== 'ack') throw new Error(`unexpected ${JSON.stringify(m)}`);
          for (const [last, frame] of this.inFlight) {
            if (last > m.seq) break;
            frame.ackedAt = now;
            this.inFlight.delete(last);
          }
        }
        pump();
      });
      pump();
    });
  }

  private sendFrame(): void {
    const events: Event[] = [];
    const nextSeq = () => ++this.seq;
    while (events.length < batchSize) {
      const big = this.index === 0 && random() < 0.05 * clientCount;
      const sessionKey = big ? bigSession : `agent:growth:${this.index + clientCount * Math.floor(random() * (sessionCount / clientCount))}`;
      if (!this.optedIn.has(sessionKey)) {
        events.push(optIn(nextSeq(), sessionKey));
        this.optedIn.add(sessionKey);
      }
      events.push(...runEvents(sessionKey, `run-${++runs}`, nextSeq));
    }
    const frame: Frame = { sentAt: performance.now(), startsAt: sent };
    sent += events.length;
    frames.push(frame);
    this.inFlight.set(this.seq, frame);
    this.client.send({ type: 'events', events });
  }

  close(): void {
    this.client.close();
  }
}

// ---- the growth ----

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
/**
 * When the daemon's passes have caught up with everything stored: the derivation pass's saved
 * place past the last model.output event and no turn waiting for scoring, seen twice 10 ms apart
 * (a pass may be between derivation and assembly). Read from the store, read-only, without
 * disturbing the daemon. NaN when not caught up within `timeoutMs`.
 */
async function caughtUp(timeoutMs: number): Promise<number> {
  const env = open({ path: join(dataDir, 'store'), maxDbs: 32, readOnly: true });
  const meta = env.openDB<number, string>({ name: 'meta' });
  const eventKinds = env.openDB<null, [string, number]>({ name: 'eventKinds' });
  const unscored = env.openDB({ name: 'unscored' });
  const lastOutput = () => [...eventKinds.getKeys({ start: ['model.output', Infinity], end: ['model.output'], reverse: true, limit: 1 })][0]?.[1] ?? 0;
  const deadline = performance.now() + timeoutMs;
  let seen = 0;
  try {
    while (performance.now() < deadline) {
      const idle = (meta.get('eventSamplesCursor') ?? 0) >= lastOutput() && unscored.getCount() === 0;
      seen = idle ? seen + 1 : 0;
      if (seen === 2) return performance.now() - 10;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return NaN;
  } finally {
    await env.close();
  }
}

const timed = async <T>(fn: () => Promise<T> | T): Promise<[T, number]> => {
  const start = performance.now();
  const result = await fn();
  return [result, performance.now() - start];
};

interface Row {
  events: number;
  rate: number;
  /** Events/s from the measured events' first send until every stage had caught up with them. */
  pipelineRate: number;
  ackP50: number;
  ackP99: number;
  statusMs: number;
  metricsMs: number;
  /** The LMDB file's allocated blocks, and its live pages (freed pages are reused). */
  bytesPerEvent: number;
  liveBytesPerEvent: number;
  /** This size's daemon: LMDB pages written per event it stored, events per commit, sync ms per commit. */
  pagesPerEvent: number;
  eventsPerCommit: number;
  syncMsPerCommit: number;
  /** How far the daemon's passes were behind when it stopped. */
  underived: number;
  openSamples: number;
  appendMs: number;
  statsMs: number;
  exportTurnsPerS: number;
  exportTurns: number;
  rmEventsPerS: number;
  rmEvents: number;
  load: number;
}

const n = (x: number, digits = 0) => x.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const rowText = (r: Row) =>
  `| ${n(r.events)} | ${n(r.rate)} | ${n(r.pipelineRate)} | ${n(r.ackP50, 1)} | ${n(r.ackP99, 1)} | ${n(r.statusMs, 1)} / ${n(r.metricsMs, 1)} | ${n(r.bytesPerEvent)} / ${n(r.liveBytesPerEvent)} | ${n(r.pagesPerEvent, 2)} / ${n(r.eventsPerCommit)} / ${n(r.syncMsPerCommit, 1)} | ${n(r.underived)} / ${n(r.openSamples)} | ${n(r.appendMs, 1)} | ${n(r.statsMs, 1)} | ${n(r.exportTurnsPerS)} (${n(r.exportTurns)}) | ${n(r.rmEventsPerS)} (${n(r.rmEvents)}) | ${n(r.load, 2)} |`;

console.log(`${clientCount} clients × ${window} frames of ${batchSize} events in flight, ${sessionCount.toLocaleString('en')} sessions; rate and acks over the last ${measure.toLocaleString('en')} events of each size`);
console.log('| events stored | ingest events/s | pipeline events/s | ack p50 ms | ack p99 ms | /status / /metrics ms | file / live bytes per event | pages written per event / events per commit / sync ms per commit | at stop: outputs not derived / samples open | store a run ms | version stats ms | export turns/s (turns) | rm events/s (events) | load avg |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');

const dataDir = tempDir('clawrl-growth-');
let daemon = await spawnDaemon(dataDir, ['--mode', 'hints']);
const token = (await runCli(dataDir, ['token'])).stdout.trim();
const clients = Array.from({ length: clientCount }, (_, i) => new Client(i));
const rows: Row[] = [];
/** Events in the store when this size's daemon started. */
let storedBefore = 0;

for (const size of sizes) {
  for (const client of clients) await client.connect(daemon, token);
  const phaseStart = frames.length;
  await Promise.all(clients.map((client) => client.fill(size)));
  for (const client of clients) client.close();
  const windowFrames = frames.slice(phaseStart).filter((f) => f.startsAt >= sent - measure);
  const windowStart = Math.min(...windowFrames.map((f) => f.sentAt));
  // Fewer than --measure at a size below it (the first 10^4 are all there is).
  const windowEvents = sent - Math.min(...windowFrames.map((f) => f.startsAt));
  const span = (Math.max(...windowFrames.map((f) => f.ackedAt!)) - windowStart) / 1000;
  const caughtUpAt = await caughtUp(600_000);
  const pipelineSpan = (caughtUpAt - windowStart) / 1000;
  const acks = windowFrames.map((f) => f.ackedAt! - f.sentAt).sort((a, b) => a - b);
  const load = loadavg()[0]!;
  const [, statusMs] = await timed(async () => (await fetch(`${daemon.url}/status`, { headers: { authorization: `Bearer ${token}` } })).json());
  const [metrics, metricsMs] = await timed(async () => (await fetch(`${daemon.url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text());
  const counter = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
  const commits = counter('clawrl_store_commits_total');
  // Stopped once caught up (so that CLAWRL_DAEMON_NODE_ARGS=--cpu-prof writes its profile);
  // killed if the passes are still behind, whose finishing could take minutes. Acked events are
  // durable either way (LMDB commits before each ack).
  await daemon.stop(Number.isNaN(caughtUpAt) ? 'SIGKILL' : 'SIGTERM');

  const store = await Store.open(dataDir);
  const stored = store.counters().eventsStored;
  const fileBytes = statSync(join(dataDir, 'store', 'data.mdb')).blocks * 512;
  const liveBytes = store.usedBytes();
  const underived = [...store.eventsOfKind('model.output', store.mark('eventSamplesCursor'), store.eventLogPosition())].length;
  const openSamples = (store.openSamples.getStats() as { entryCount: number }).entryCount;
  let probeSeq = store.ackedSeq('growth-probe');
  const [, appendMs] = await timed(() => store.appendEvents('growth-probe', [optIn(++probeSeq, 'agent:growth:probe'), ...runEvents('agent:growth:probe', `probe-${size}`, () => ++probeSeq)]));
  const [, statsMs] = await timed(() => new VersionStatsReader(store).read());
  const [exportTurns, exportMs] = await timed(() => {
    const lines: string[] = [];
    for (const turn of store.turnsOf(bigSession)) lines.push(JSON.stringify(toExportedTurn(turn)));
    return lines.length;
  });
  const bigEvents = store.sessions.get(bigSession)?.events ?? 0;
  const [, rmMs] = await timed(() => store.removeSession(bigSession));
  await store.close();
  bigSession = `agent:growth:big-${size}`;

  rows.push({
    events: stored,
    rate: windowEvents / span,
    pipelineRate: windowEvents / pipelineSpan,
    ackP50: percentile(acks, 50),
    ackP99: percentile(acks, 99),
    statusMs,
    metricsMs,
    bytesPerEvent: fileBytes / stored,
    liveBytesPerEvent: liveBytes / stored,
    pagesPerEvent: counter('clawrl_store_pages_written_total') / (stored - storedBefore),
    eventsPerCommit: (stored - storedBefore) / commits,
    syncMsPerCommit: (1000 * counter('clawrl_store_sync_seconds_total')) / commits,
    underived,
    openSamples,
    appendMs,
    statsMs,
    exportTurnsPerS: exportTurns / (exportMs / 1000),
    exportTurns,
    rmEventsPerS: bigEvents / (rmMs / 1000),
    rmEvents: bigEvents,
    load,
  });
  console.log(rowText(rows.at(-1)!));
  storedBefore = stored;
  if (size !== sizes.at(-1)) daemon = await spawnDaemon(dataDir, ['--mode', 'hints']);
}

// ---- the plot ----

/** Each measure relative to its value at the first size (1 = flat; the band is the goal's ±20 %), on a log x axis. */
function plot(): string {
  const series: { name: string; colour: string; value: (r: Row) => number }[] = [
    { name: 'ingest events/s', colour: '#2563eb', value: (r) => r.rate },
    { name: 'pipeline events/s', colour: '#1e3a8a', value: (r) => r.pipelineRate },
    { name: 'ack p50', colour: '#dc2626', value: (r) => r.ackP50 },
    { name: 'ack p99', colour: '#f97316', value: (r) => r.ackP99 },
    { name: 'bytes/event', colour: '#16a34a', value: (r) => r.bytesPerEvent },
    { name: 'store a run', colour: '#9333ea', value: (r) => r.appendMs },
    { name: 'version stats', colour: '#a16207', value: (r) => r.statsMs },
    { name: '/status', colour: '#db2777', value: (r) => r.statusMs },
    { name: 'export turns/s', colour: '#0891b2', value: (r) => r.exportTurnsPerS },
    { name: 'rm events/s', colour: '#6b7280', value: (r) => r.rmEventsPerS },
  ];
  const W = 760, H = 420, left = 60, right = 170, top = 30, bottom = 50;
  const xs = rows.map((r) => Math.log10(r.events));
  const ratios = series.map((s) => rows.map((r) => s.value(r) / s.value(rows[0]!)));
  const yMax = Math.max(2, ...ratios.flat().filter(Number.isFinite).map((v) => Math.min(v, 1000)));
  const ys = (v: number) => top + (H - top - bottom) * (1 - Math.log10(Math.max(v, 0.01) / 0.1) / Math.log10(yMax / 0.1));
  const xOf = (x: number) => left + ((W - left - right) * (x - xs[0]!)) / Math.max(1e-9, xs.at(-1)! - xs[0]!);
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="#fff"/>`];
  out.push(`<rect x="${left}" y="${ys(1.2)}" width="${W - left - right}" height="${ys(0.8) - ys(1.2)}" fill="#dcfce7"/>`);
  for (const v of [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].filter((v) => v <= yMax)) {
    out.push(`<line x1="${left}" x2="${W - right}" y1="${ys(v)}" y2="${ys(v)}" stroke="#e5e7eb"/><text x="${left - 6}" y="${ys(v) + 4}" text-anchor="end">${v}×</text>`);
  }
  for (const [i, x] of xs.entries()) out.push(`<text x="${xOf(x)}" y="${H - bottom + 18}" text-anchor="middle">${n(rows[i]!.events)}</text>`);
  out.push(`<text x="${(left + W - right) / 2}" y="${H - 10}" text-anchor="middle">events stored (log scale)</text>`);
  out.push(`<text x="${left}" y="18">Each measure ÷ its value at ${n(rows[0]!.events)} events (green band: within 20 %)</text>`);
  for (const [k, s] of series.entries()) {
    // A measure with nothing to measure at a size (no turns to export yet) leaves its point out.
    const points = ratios[k]!.flatMap((v, i) => (Number.isFinite(v) && v > 0 ? [`${xOf(xs[i]!).toFixed(1)},${ys(v).toFixed(1)}`] : [])).join(' ');
    out.push(`<polyline points="${points}" fill="none" stroke="${s.colour}" stroke-width="2"/>`);
    out.push(`<line x1="${W - right + 12}" x2="${W - right + 32}" y1="${top + 10 + k * 18}" y2="${top + 10 + k * 18}" stroke="${s.colour}" stroke-width="2"/><text x="${W - right + 38}" y="${top + 14 + k * 18}">${s.name}</text>`);
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
if (rows.length > 1) writeFileSync(values.svg!, plot());
