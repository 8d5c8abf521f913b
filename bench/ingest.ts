// Ingest benchmark: N concurrent plugin-like clients stream 1 KB events to a real daemon (child
// process, real LMDB) and measure sustained events/s and ack latency (send of a batch → its ack).
// Two modes per client count: closed loop (each client keeps --window frames in flight: the
// maximum rate) and open loop (--rate events/s shared by the clients, sent on a timer: the ack
// latency a plugin sees at that load). During each run, a child process measures the disk's own
// 64 KiB write + fdatasync latency in the daemon's data dir, so the ack tail is compared with the
// disk's in the same seconds. Before each run, the same events are stored at the same load by
// lmdb-js alone (decode, three puts an event, one durable commit a frame: the shared probe's
// design), which is the floor any daemon on LMDB could reach on this disk; and after it, the
// same clients send the same load to a bare ws server that does only that (bench/ws-lmdb-floor.ts,
// its own process), the floor of any daemon on WebSocket and LMDB on these cores.
// Each daemon is new, so each client first sends --warmup-seconds' worth of events (at --rate)
// the same way and waits for their acks, unmeasured: in its first second a fresh daemon compiles
// its code paths and grows its store, its acks wait up to ~170 ms, and the backlog that leaves
// drains for seconds at 20,000/s; measured, it would be the paced runs' p99.
// Usage: npm run bench:ingest [-- --events 200000 --batch 64 --window 4 --rate 20000 --warmup-seconds 1]
import { spawn } from 'node:child_process';
import { pack, unpack } from 'msgpackr';
import { once } from 'node:events';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TestClient, optIn, spawnDaemon, tempDir, runCli } from '../test/helpers.ts';
import { openFloorStore } from './ws-lmdb-floor.ts';
import type { Event } from '../protocol/index.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '64' },
    window: { type: 'string', default: '4' },
    clients: { type: 'string', default: '1,8' },
    rate: { type: 'string', default: '20000' },
    'warmup-seconds': { type: 'string', default: '1' },
  },
});
const totalEvents = Number(values.events);
const batchSize = Number(values.batch);
const window = Number(values.window);
const payload = 'x'.repeat(1024 - 80); // ~1 KB per event once encoded with its fields

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** When the measured part of a run began (its first measured frame sent) and ended (its last ack). */
interface Measured {
  from?: number;
  to: number;
}

/**
 * `paceMs` > 0 sends one batch per paceMs (open loop); 0 keeps `window` batches in flight. The
 * first `warmup` events are sent the same way and acked before the measured `count` begin, so no
 * backlog of the warm-up is measured.
 */
async function runClient(wsUrl: string, token: string, id: string, warmup: number, count: number, paceMs: number, latencies: number[], measured: Measured): Promise<void> {
  const client = await TestClient.connect(wsUrl, token);
  await client.hello(id);
  await client.sendEvents([optIn(1, id)]);
  let seq = 1;
  /** Sends events through seq `last`; resolves once all are acked. */
  const phase = (last: number, measure: boolean) =>
    new Promise<void>((resolve) => {
      const sentAt = new Map<number, number>();
      let inFlight = 0;
      const sendBatch = () => {
        const events: Event[] = [];
        for (let i = 0; i < batchSize && seq < last; i++) {
          seq++;
          // Runs of 8 events, as a plugin's are (the store indexes a run's events).
          events.push({ kind: 'user.message', seq, at: Date.now(), sessionKey: id, runId: `run${seq >> 3}`, content: payload });
        }
        sentAt.set(seq, performance.now());
        if (measure) measured.from ??= performance.now();
        inFlight++;
        client.send({ type: 'events', events });
      };
      const pump = () => {
        while (paceMs === 0 && inFlight < window && seq < last) sendBatch();
      };
      // Timers drift late: each tick sends every frame due by then, so the offered rate is the rate asked for.
      const paceFrom = performance.now();
      let paced = 0;
      const timer =
        paceMs > 0
          ? setInterval(() => {
              for (; paced <= (performance.now() - paceFrom) / paceMs && seq < last; paced++) sendBatch();
            }, paceMs)
          : undefined;
      const onMessage = () => {
        for (const m of client.received.splice(0)) {
          if (m.type !== 'ack') throw new Error(`unexpected ${JSON.stringify(m)}`);
          const t = sentAt.get(m.seq);
          if (t === undefined) continue;
          if (measure) latencies.push(performance.now() - t);
          sentAt.delete(m.seq);
          inFlight--;
          if (m.seq >= last) {
            if (measure) measured.to = Math.max(measured.to, performance.now());
            clearInterval(timer);
            client.socket.off('message', onMessage);
            return resolve();
          }
        }
        pump();
      };
      client.socket.on('message', onMessage);
      pump();
    });
  await phase(1 + warmup, false);
  await phase(1 + warmup + count, true);
  client.close();
}

// The disk's own latency, measured beside the daemon until stopped: writes of 64 KiB, each made durable.
const FSYNC_PROBE = `
const fs = require('node:fs'); const fd = fs.openSync(process.argv[1], 'w'); const buf = Buffer.alloc(65536, 7); const lat = [];
let stop = false; process.stdin.on('data', () => (stop = true)); process.stdin.resume();
const step = () => { if (stop) { process.stdout.write(JSON.stringify(lat)); process.exit(0); }
  const t = process.hrtime.bigint(); fs.writeSync(fd, buf, 0, buf.length, 0); fs.fdatasyncSync(fd); lat.push(Number(process.hrtime.bigint() - t) / 1e6);
  setTimeout(step, 5); };
step();`;

function startFsyncProbe(dir: string): () => Promise<number[]> {
  const child = spawn(process.execPath, ['-e', FSYNC_PROBE, join(dir, 'fsync-probe.bin')], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  return async () => {
    child.stdin.write('stop');
    await new Promise((resolve) => child.once('exit', resolve));
    return (JSON.parse(out) as number[]).sort((a, b) => a - b);
  };
}

/**
 * lmdb-js alone storing `count` events in frames of batchSize: closed loop with `window` frames
 * in flight when paceMs is 0, else one frame per paceMs. Each frame is decoded, its events put
 * with two index keys, and committed durably. Returns the commit latencies, sorted.
 */
async function lmdbFloor(dir: string, count: number, paceMs: number, inFlight: number): Promise<number[]> {
  const floor = openFloorStore(join(dir, 'floor'));
  const frames: Buffer[] = [];
  for (let seq = 0; seq < count; ) {
    const batch = [];
    for (let i = 0; i < batchSize && seq < count; i++) {
      seq++;
      batch.push({ kind: 'user.message', seq, at: Date.now(), sessionKey: 'floor', runId: `run${seq >> 3}`, content: payload });
    }
    frames.push(pack({ type: 'events', events: batch }));
  }
  const latencies: number[] = [];
  const store = (frame: Buffer) => {
    const sent = performance.now();
    const { events: batch } = unpack(frame) as { events: Event[] };
    return floor.store(batch).then(() => void latencies.push(performance.now() - sent));
  };
  const started = performance.now();
  const pending: Promise<void>[] = [];
  for (const [i, frame] of frames.entries()) {
    if (paceMs > 0) {
      const due = started + i * paceMs - performance.now();
      if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
    } else if (pending.length >= inFlight) await pending.shift();
    pending.push(store(frame));
  }
  await Promise.all(pending);
  await floor.close();
  return latencies.sort((a, b) => a - b);
}

/** Starts bench/ws-lmdb-floor.ts in its own process; resolves to its URL and a stop function. */
async function startWsFloor(dir: string): Promise<{ wsUrl: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'ws-lmdb-floor.ts'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  const wsUrl = /floor on (ws:\/\/\S+)/.exec(line.toString())?.[1];
  if (!wsUrl) throw new Error(`the ws floor said: ${line.toString()}`);
  return {
    wsUrl,
    async stop() {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/** The clients' ack latencies (sorted) and measured events/s against a server at wsUrl. */
async function runClients(wsUrl: string, token: string, n: number, warmup: number, perClient: number, paceMs: number): Promise<{ latencies: number[]; achieved: number }> {
  const latencies: number[] = [];
  const measured: Measured = { to: 0 };
  await Promise.all(Array.from({ length: n }, (_, i) => runClient(wsUrl, token, `bench-${i}`, warmup, perClient, paceMs, latencies, measured)));
  const seconds = (measured.to - measured.from!) / 1000;
  return { latencies: latencies.sort((a, b) => a - b), achieved: Math.round((perClient * n) / seconds) };
}

const rows: string[] = [];
const rate = Number(values.rate);
const modes = [{ label: 'max', pace: (_n: number) => 0 }, { label: `${rate.toLocaleString('en')}/s`, pace: (n: number) => (batchSize * n * 1000) / rate }];
for (const n of values.clients!.split(',').map(Number)) for (const mode of modes) {
  const dir = tempDir('clawrl-bench-');
  // The paced run lasts about 5 s: long enough for a stable p99, short enough to repeat.
  const perClient = mode.pace(n) > 0 ? Math.floor((rate * 5) / n) : Math.floor(totalEvents / n);
  const floor = await lmdbFloor(dir, perClient * n, mode.pace(n) / n, window * n);
  // The same load for --warmup-seconds, in whole frames.
  const warmup = Math.ceil((rate * Number(values['warmup-seconds'])) / n / batchSize) * batchSize;
  const daemon = await spawnDaemon(dir, ['--log-level', 'warn']);
  const token = (await runCli(dir, ['token'])).stdout.trim();
  const stopProbe = startFsyncProbe(dir);
  const { latencies, achieved } = await runClients(daemon.wsUrl, token, n, warmup, perClient, mode.pace(n));
  const disk = await stopProbe();
  await daemon.stop();
  const wsFloor = await startWsFloor(dir);
  const wsFloorAcks = (await runClients(wsFloor.wsUrl, token, n, warmup, perClient, mode.pace(n))).latencies;
  await wsFloor.stop();
  const p99 = percentile(latencies, 99);
  rows.push(
    `| ${n} | ${mode.label} | ${batchSize} | ${(perClient * n).toLocaleString('en')} | ${achieved.toLocaleString('en')} | ${percentile(latencies, 50).toFixed(1)} | ${p99.toFixed(1)} | ${percentile(disk, 99).toFixed(1)} | ${(p99 / percentile(disk, 99)).toFixed(1)} | ${percentile(floor, 99).toFixed(1)} | ${percentile(wsFloorAcks, 99).toFixed(1)} | ${(p99 / percentile(wsFloorAcks, 99)).toFixed(1)} |`,
  );
  console.error(rows.at(-1));
}
console.log(`| clients | load | events/frame | events | events/s | ack p50 ms | ack p99 ms | disk fdatasync p99 ms | ack p99 ÷ disk p99 | lmdb-js alone commit p99 ms | ws + lmdb-js alone ack p99 ms | ack p99 ÷ ws + lmdb-js p99 |   (closed loop: ${window} frames in flight per client)`);
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const row of rows) console.log(row);
