// Version stats at scale: what /status, /metrics, the dashboard and the guard pay to read the
// per-version health and served counts. A store is filled with --sizes turns (each from a served
// sample of --reply tokens, across 1,000 sessions and 10 weight versions, a third of them scored),
// then, in this process:
//   - startup: a VersionStatsReader made and read once (the readers a daemon makes at start);
//   - after one write: one more turn stored (recordSample + closeSample, itself timed), then
//     health.read(); again, then stats.read() (which reads health too). Median of --repeat.
//   - drift of a young version: a new version's first reply stored (in a session that sorts last),
//     then the guard's measureDrift for it, as after each reply until it has DRIFT_REPLIES; the
//     base model's scoring is a FAKE (-1 per token), so this times finding the version's turns.
// With --upgrade, then: the store made a schema 2 one (no per-version sums) and opened, which
// sums every turn once.
// Usage: node --import tsx bench/stats.ts [--sizes 10000,100000] [--repeat 5] [--reply 50] [--upgrade]
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { parseArgs } from 'node:util';
import { Store } from '../daemon/store.ts';
import { VersionStatsReader } from '../daemon/stats.ts';
import type { TrainingBackend } from '../daemon/backends/types.ts';
import { tempDir } from '../test/helpers.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10000,100000' },
    repeat: { type: 'string', default: '5' },
    reply: { type: 'string', default: '50' },
    upgrade: { type: 'boolean', default: false },
  },
});
const sizes = values.sizes!.split(',').map(Number);
const repeat = Number(values.repeat);
const replyTokens = Number(values.reply);
const SESSIONS = 1000;
const VERSIONS = 10;

let written = 0;
/** Stores turns [from, to): samples first, then their turns, each in one batch of concurrent writes. */
async function fill(store: Store, from: number, to: number, young?: string): Promise<void> {
  const samples = await Promise.all(
    Array.from({ length: to - from }, (_, j) => {
      const i = from + j;
      const responseTokens = Array.from({ length: replyTokens }, (_, t) => (i * 7 + t * 13) % 500);
      return store.recordSample({
        id: `s${i}`,
        sessionKey: young ? `session-zz-${young}` : `session-${i % SESSIONS}`,
        side: false,
        createdAt: i,
        model: 'm',
        weightVersion: young ?? (i % VERSIONS === 0 ? 'base' : `v${String(i % VERSIONS).padStart(6, '0')}`),
        requestMessages: [{ role: 'user', content: 'q' }],
        promptTokens: Array.from({ length: 200 }, (_, t) => t),
        responseTokens,
        logprobs: responseTokens.map((t) => -((t % 17) + 1) / 10),
        text: 'a',
        toolCalls: [],
        finishReason: 'stop',
      });
    }),
  );
  await Promise.all(
    samples.map((s) =>
      store.closeSample({
        sessionKey: s.sessionKey,
        turnIndex: s.ordinal,
        sampleId: s.id,
        createdAt: s.createdAt,
        weightVersion: s.weightVersion,
        action: { text: 'a', toolCalls: [] },
        nextState: { toolResults: [] },
        // A third scored, −1, 0 and +1 in turn.
        reward: s.createdAt % 3 === 0 ? ((s.createdAt / 3) % 3) - 1 : null,
        hint: null,
      }),
    ),
  );
  written = to;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
/** A FAKE base model for drift: it cannot run here, and only the walk to the version's turns is timed. */
const fakeScorer = { score: async (_prompt: number[], response: number[]) => response.map(() => -1) } as unknown as TrainingBackend;

console.log('| turns | startup (reader made + first read) | one turn stored | health.read() after a write | stats.read() after a write | drift of a young version after its reply |');
console.log('|---:|---:|---:|---:|---:|---:|');
const dir = tempDir('clawrl-bench-stats-');
let store = await Store.open(dir);
for (const size of sizes) {
  for (let at = written; at < size; at += 5000) await fill(store, at, Math.min(size, at + 5000));
  let start = process.hrtime.bigint();
  const stats = new VersionStatsReader(store);
  stats.read();
  const startup = ms(start);
  const write: number[] = [];
  const health: number[] = [];
  const all: number[] = [];
  const drift: number[] = [];
  for (let r = 0; r < repeat; r++) {
    start = process.hrtime.bigint();
    await fill(store, written, written + 1);
    write.push(ms(start));
    start = process.hrtime.bigint();
    stats.health.read();
    health.push(ms(start));
    await fill(store, written, written + 1);
    start = process.hrtime.bigint();
    stats.read();
    all.push(ms(start));
    const young = `v9${String(size).padStart(7, '0')}${r}`;
    await fill(store, written, written + 1, young);
    start = process.hrtime.bigint();
    await stats.health.measureDrift(fakeScorer, young);
    drift.push(ms(start));
  }
  console.log(`| ${size.toLocaleString('en')} | ${startup.toFixed(0)} ms | ${median(write).toFixed(2)} ms | ${median(health).toFixed(2)} ms | ${median(all).toFixed(2)} ms | ${median(drift).toFixed(2)} ms |`);
}
if (values.upgrade) {
  await store.close();
  const raw = open({ path: join(dir, 'store'), maxDbs: 32 });
  await raw.openDB({ name: 'versionServed' }).clearAsync();
  await raw.openDB({ name: 'meta' }).put('schemaVersion', 2);
  await raw.close();
  const start = process.hrtime.bigint();
  store = await Store.open(dir);
  console.log(`a schema 2 store of ${written.toLocaleString('en')} turns upgraded at open (every turn summed once): ${ms(start).toFixed(0)} ms`);
}
console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
await store.close();
