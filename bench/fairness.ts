// Fairness benchmark: one authenticated client floods a real daemon (child process, real LMDB) with
// tiny frames while another sends ordinary batches and /healthz is polled. Prints the victim's ack
// latency alone and under the flood, /healthz latency, and the daemon's memory.
// Usage: node --import tsx bench/fairness.ts [--seconds 10] [--victim-ms 50]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Event } from '../protocol/index.ts';
import { TestClient, optIn, spawnDaemon, tempDir, runCli } from '../test/helpers.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, 'victim-ms': { type: 'string', default: '50' } } });
const seconds = Number(values.seconds);
const victimEveryMs = Number(values['victim-ms']);

const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

const dataDir = tempDir('clawrl-fairness-');
const daemon = await spawnDaemon(dataDir);
const token = (await runCli(dataDir, ['token'])).stdout.trim();
const pid = daemon.child.pid!;

/** The victim: a 64-event batch every victimEveryMs, each waiting for its ack. */
async function victim(client: TestClient, sessionKey: string, startSeq: number, ms: number): Promise<{ latencies: number[]; seq: number }> {
  const latencies: number[] = [];
  let seq = startSeq;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const events: Event[] = Array.from({ length: 64 }, () => ({ kind: 'user.message', seq: ++seq, at: Date.now(), sessionKey, content: 'x'.repeat(900) }));
    const sent = performance.now();
    await client.sendEvents(events);
    latencies.push(performance.now() - sent);
    await new Promise((r) => setTimeout(r, victimEveryMs));
  }
  return { latencies, seq };
}

/** /healthz every 100 ms. */
async function probe(ms: number): Promise<number[]> {
  const latencies: number[] = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const sent = performance.now();
    await fetch(`${daemon.url}/healthz`);
    latencies.push(performance.now() - sent);
    await new Promise((r) => setTimeout(r, 100));
  }
  return latencies;
}

/** The flooder: one-event frames as fast as the socket takes them, never waiting for an ack. */
async function flood(client: TestClient, sessionKey: string, ms: number): Promise<number> {
  let seq = 1;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (client.socket.bufferedAmount > 4 * 1024 * 1024) {
      await new Promise((r) => setTimeout(r, 5));
      continue;
    }
    for (let i = 0; i < 200; i++) client.send({ type: 'events', events: [{ kind: 'user.message', seq: ++seq, at: Date.now(), sessionKey, content: 'y' }] });
    await new Promise((r) => setImmediate(r));
  }
  return seq;
}

const victimClient = await TestClient.connect(daemon.wsUrl, token);
await victimClient.hello('victim');
await victimClient.sendEvents([optIn(1, 'victim')]);
const flooder = await TestClient.connect(daemon.wsUrl, token);
await flooder.hello('flooder');
await flooder.sendEvents([optIn(1, 'flooder')]);
// The flooder's acks are not read: drop them as they come.
flooder.socket.removeAllListeners('message');

// Warm-up (JIT, LMDB's first map growth), not measured.
const warm = await victim(victimClient, 'victim', 1, 2000);
const rssBefore = rssMiB(pid);
const [alone, healthAlone] = await Promise.all([victim(victimClient, 'victim', warm.seq, seconds * 500), probe(seconds * 500)]);
let rssPeak = rssBefore;
const rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, rssMiB(pid))), 200);
const [flooded, underFlood, healthFlooded] = await Promise.all([flood(flooder, 'flooder', seconds * 1000), victim(victimClient, 'victim', alone.seq, seconds * 1000), probe(seconds * 1000)]);
clearInterval(rssTimer);
flooder.close();
victimClient.close();
await daemon.stop();

const row = (name: string, xs: number[]) => `| ${name} | ${xs.length} | ${percentile(xs, 50).toFixed(1)} | ${percentile(xs, 99).toFixed(1)} | ${Math.max(...xs).toFixed(1)} |`;
console.log(`flooder sent ${flooded.toLocaleString('en')} one-event frames in ${seconds} s; daemon RSS ${rssBefore.toFixed(0)} MiB before, ${rssPeak.toFixed(0)} MiB at most during the flood`);
console.log('| measure | samples | p50 ms | p99 ms | max ms |');
console.log('|---|---|---|---|---|');
console.log(row('victim ack, alone', alone.latencies));
console.log(row('victim ack, under the flood', underFlood.latencies));
console.log(row('/healthz, alone', healthAlone));
console.log(row('/healthz, under the flood', healthFlooded));
console.log(`victim p99 under the flood ÷ alone: ${(percentile(underFlood.latencies, 99) / percentile(alone.latencies, 99)).toFixed(2)} (target ≤ 2); /healthz max under the flood ${Math.max(...healthFlooded).toFixed(1)} ms (target < 50)`);
