// Ingest benchmark: N concurrent plugin-like clients stream 1 KB events to a real daemon (child
// process, real LMDB) and measure sustained events/s and ack latency (send of a batch → its ack).
// Two modes per client count: closed loop (each client keeps --window frames in flight: the
// maximum rate) and open loop (--rate events/s shared by the clients, sent on a timer: the ack
// latency a plugin sees at that load).
// Usage: npm run bench:ingest [-- --events 200000 --batch 64 --window 4 --rate 20000]
import { parseArgs } from 'node:util';
import { TestClient, optIn, spawnDaemon, tempDir, runCli } from '../test/helpers.ts';
import type { Event } from '../protocol/index.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '64' },
    window: { type: 'string', default: '4' },
    clients: { type: 'string', default: '1,8' },
    rate: { type: 'string', default: '20000' },
  },
});
const totalEvents = Number(values.events);
const batchSize = Number(values.batch);
const window = Number(values.window);
const payload = 'x'.repeat(1024 - 80); // ~1 KB per event once encoded with its fields

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `paceMs` > 0 sends one batch per paceMs (open loop); 0 keeps `window` batches in flight. */
async function runClient(wsUrl: string, token: string, id: string, count: number, paceMs: number, latencies: number[]): Promise<void> {
  const client = await TestClient.connect(wsUrl, token);
  await client.hello(id);
  await client.sendEvents([optIn(1, id)]);
  let seq = 1;
  const sentAt = new Map<number, number>();
  let inFlight = 0;
  await new Promise<void>((resolve) => {
    const sendBatch = () => {
        const events: Event[] = [];
        for (let i = 0; i < batchSize && seq < count + 1; i++) {
          seq++;
          // Runs of 8 events, as a plugin's are (the store indexes a run's events).
          events.push({ kind: 'user.message', seq, at: Date.now(), sessionKey: id, runId: `run${seq >> 3}`, content: payload });
        }
        sentAt.set(seq, performance.now());
        inFlight++;
        client.send({ type: 'events', events });
    };
    const pump = () => {
      while (paceMs === 0 && inFlight < window && seq < count + 1) sendBatch();
    };
    const timer = paceMs > 0 ? setInterval(() => seq < count + 1 && sendBatch(), paceMs) : undefined;
    client.socket.on('message', () => {
      for (const m of client.received.splice(0)) {
        if (m.type !== 'ack') throw new Error(`unexpected ${JSON.stringify(m)}`);
        const t = sentAt.get(m.seq);
        if (t === undefined) continue;
        latencies.push(performance.now() - t);
        sentAt.delete(m.seq);
        inFlight--;
        if (m.seq >= count + 1) {
          clearInterval(timer);
          return resolve();
        }
      }
      pump();
    });
    pump();
  });
  client.close();
}

const rows: string[] = [];
const rate = Number(values.rate);
const modes = [{ label: 'max', pace: (_n: number) => 0 }, { label: `${rate.toLocaleString('en')}/s`, pace: (n: number) => (batchSize * n * 1000) / rate }];
for (const n of values.clients!.split(',').map(Number)) for (const mode of modes) {
  const dir = tempDir('clawrl-bench-');
  const daemon = await spawnDaemon(dir, ['--log-level', 'warn']);
  const token = (await runCli(dir, ['token'])).stdout.trim();
  const latencies: number[] = [];
  // The paced run lasts about 5 s: long enough for a stable p99, short enough to repeat.
  const perClient = mode.pace(n) > 0 ? Math.floor((rate * 5) / n) : Math.floor(totalEvents / n);
  const start = performance.now();
  await Promise.all(Array.from({ length: n }, (_, i) => runClient(daemon.wsUrl, token, `bench-${i}`, perClient, mode.pace(n), latencies)));
  const seconds = (performance.now() - start) / 1000;
  await daemon.stop();
  latencies.sort((a, b) => a - b);
  const achieved = Math.round((perClient * n) / seconds);
  rows.push(
    `| ${n} | ${mode.label} | ${batchSize} | ${(perClient * n).toLocaleString('en')} | ${achieved.toLocaleString('en')} | ${percentile(latencies, 50).toFixed(1)} | ${percentile(latencies, 99).toFixed(1)} |`,
  );
  console.error(rows.at(-1));
}
console.log(`| clients | load | events/frame | events | events/s | ack p50 ms | ack p99 ms |   (closed loop: ${window} frames in flight per client)`);
console.log('|---|---|---|---|---|---|---|');
for (const row of rows) console.log(row);
