// Retention on a large store: N stored events (1 % of them 40 days old, spread through the log)
// and N/100 samples (10 % old), then one `expireBefore` of 30 days, as `--retention-days 30` runs
// it hourly. Measures its time, the longest the event loop was blocked meanwhile, and the growth
// of the process's RSS; then how long the first open of the same store takes as a version 4 store
// (before the indexes by time and kind), which builds them. Events carry 200 characters of text,
// so 10^6 of them fit a few minutes and about 1 GB of disk. Prints a Markdown row per size.
// Run: node --import tsx bench/retention.ts [--sizes 100000,1000000]
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { open } from 'lmdb';
import { Store } from '../daemon/store.ts';
import { tempDir } from '../test/helpers.ts';
import type { Event } from '../protocol/index.ts';

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '100000,1000000' } } });
const DAY = 86_400_000;
const text = 'a line of an ordinary conversation, repeated to make the event about the size of a short message. '.repeat(2);

console.log('| events | samples | expired events | expired samples | expire s | event loop max blocked ms | RSS growth MiB | upgrade from version 4 s |');
console.log('|---|---|---|---|---|---|---|---|');
for (const size of values.sizes!.split(',').map(Number)) {
  const dir = tempDir('clawrl-bench-retention-');
  const store = await Store.open(dir);
  const now = Date.now();
  const sessions = 1000;
  await store.appendEvents('bench', Array.from({ length: sessions }, (_, i): Event => ({ kind: 'session.optin', seq: i + 1, at: now, sessionKey: `s${i}` })));
  let seq = sessions;
  for (let done = 0; done < size; ) {
    const batch: Event[] = [];
    for (let i = 0; i < 1000 && done < size; i++, done++) {
      seq++;
      batch.push({ kind: 'user.message', seq, at: seq % 100 === 0 ? now - 40 * DAY : now, sessionKey: `s${seq % sessions}`, runId: `r${seq >> 3}`, content: text });
    }
    await store.appendEvents('bench', batch);
  }
  const sampleCount = size / 100;
  for (let i = 0; i < sampleCount; i += 100) {
    await Promise.all(
      Array.from({ length: 100 }, (_, j) =>
        store.recordSample({ id: `x${i + j}`, sessionKey: `s${(i + j) % sessions}`, side: false, createdAt: (i + j) % 10 === 0 ? now - 40 * DAY : now, model: 'm', weightVersion: 'base', requestMessages: [{ role: 'user', content: text }], promptTokens: [], responseTokens: [], logprobs: [], text, toolCalls: [], finishReason: 'stop' }),
      ),
    );
  }
  global.gc?.();
  const delay = monitorEventLoopDelay({ resolution: 5 });
  let peak = process.memoryUsage().rss;
  const rssBefore = peak;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  delay.enable();
  const started = performance.now();
  const expired = await store.expireBefore(now - 30 * DAY);
  const seconds = (performance.now() - started) / 1000;
  delay.disable();
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  await store.meta.put('schemaVersion', 4);
  await store.close();
  const raw = open({ path: join(dir, 'store'), maxDbs: 32 });
  for (const name of ['eventTimes', 'sampleTimes', 'eventKinds']) await raw.openDB({ name }).clearAsync();
  await raw.close();
  const opening = performance.now();
  const upgraded = await Store.open(dir);
  const upgradeSeconds = (performance.now() - opening) / 1000;
  await upgraded.close();
  console.log(`| ${size.toLocaleString('en')} | ${sampleCount.toLocaleString('en')} | ${expired.events.toLocaleString('en')} | ${expired.turns.toLocaleString('en')} | ${seconds.toFixed(2)} | ${(delay.max / 1e6).toFixed(0)} | ${((peak - rssBefore) / 2 ** 20).toFixed(0)} | ${upgradeSeconds.toFixed(1)} |`);
  rmSync(dir, { recursive: true, force: true });
}
