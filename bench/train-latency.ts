// Training while serving, on the embedded CPU policy:
//  - time from the last turn of a batch (its feedback event) to the new version serving;
//  - chat request latency p50/p99 while training steps run, against idle (target: p99 within 2x).
// Usage: node --import tsx bench/train-latency.ts [--batch 16] [--steps 3] [--max-tokens 16]
import { parseArgs } from 'node:util';
import { startDaemon, type Daemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { EmbeddedBackend } from '../daemon/backends/embedded/index.ts';
import { TestClient, optIn, tempDir } from '../test/helpers.ts';

const { values } = parseArgs({ options: { batch: { type: 'string', default: '16' }, steps: { type: 'string', default: '3' }, 'max-tokens': { type: 'string', default: '16' } } });
const batchSize = Number(values.batch);
const steps = Number(values.steps);
const maxTokens = Number(values['max-tokens']);
const session = 'bench:train';

const daemon: Daemon = await startDaemon({ dataDir: tempDir('clawrl-bench-'), port: 0, log: createLogger('warn'), backend: await EmbeddedBackend.create(), recipeOptions: { batchSize, lr: 1e-3 } });
const client = await TestClient.connect(daemon.wsUrl, daemon.token);
await client.hello('bench');
let seq = 0;
await client.sendEvents([optIn(++seq, session)]);

async function chat(record: boolean): Promise<number> {
  const start = performance.now();
  const res = await fetch(`${daemon.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${daemon.token}`, ...(record && { 'x-clawrl-session-key': session, 'x-clawrl-opt-in': '1' }) },
    body: JSON.stringify({ model: 'clawrl-embedded', messages: [{ role: 'user', content: 'Tell me something short.' }], max_tokens: maxTokens }),
  });
  if (res.status !== 200) throw new Error(`chat answered ${res.status}`);
  await res.json();
  return performance.now() - start;
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

/** Sequential requests until `until` resolves; their latencies. */
async function load(until: Promise<unknown>): Promise<number[]> {
  let done = false;
  void until.then(() => (done = true));
  const times: number[] = [];
  while (!done) times.push(await chat(false));
  return times;
}

for (let i = 0; i < 5; i++) await chat(false); // warm up
const idle = await load(new Promise((r) => setTimeout(r, 10_000)));

const swapTimes: number[] = [];
const busy: number[] = [];
for (let step = 1; step <= steps; step++) {
  for (let i = 0; i < batchSize; i++) {
    await chat(true);
    await new Promise((r) => setTimeout(r, 20)); // the sample is recorded after the reply
    if (i < batchSize - 1) await client.sendEvents([{ kind: 'feedback', seq: ++seq, at: Date.now(), sessionKey: session, rating: 'good' }]);
  }
  const lastTurnAt = performance.now();
  await client.sendEvents([{ kind: 'feedback', seq: ++seq, at: Date.now(), sessionKey: session, rating: 'good' }]);
  const version = `v${String(step).padStart(6, '0')}`;
  const swapped = (async () => {
    while (daemon.backend!.currentVersion() !== version) await new Promise((r) => setTimeout(r, 10));
    swapTimes.push(performance.now() - lastTurnAt);
  })();
  busy.push(...(await load(swapped)));
}
client.close();
await daemon.close();

console.log(`| embedded default model, batch ${batchSize}, replies of ${maxTokens} tokens | value |`);
console.log('|---|---|');
console.log(`| last turn of a batch → new version serving (mean of ${steps}) | ${(swapTimes.reduce((a, b) => a + b, 0) / swapTimes.length / 1000).toFixed(2)} s |`);
console.log(`| request latency idle, p50 / p99 (${idle.length} requests) | ${pct(idle, 50).toFixed(0)} / ${pct(idle, 99).toFixed(0)} ms |`);
console.log(`| request latency while training, p50 / p99 (${busy.length} requests) | ${pct(busy, 50).toFixed(0)} / ${pct(busy, 99).toFixed(0)} ms |`);
console.log(`| p99 while training ÷ p99 idle (target ≤ 2) | ${(pct(busy, 99) / pct(idle, 99)).toFixed(2)} |`);
