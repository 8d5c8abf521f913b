// The long fuzzing run: the suite's properties (test/fuzz-properties.ts) with many more cases.
// Usage: node --import tsx bench/fuzz.ts [--runs 20000] [--decoder-runs 1000000]
import { parseArgs } from 'node:util';
import { startDaemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { UpstreamBackend } from '../daemon/backends/upstream.ts';
import { startFakeVllm } from '../test/fake-vllm.ts';
import { TestClient, optIn, tempDir, userMessage } from '../test/helpers.ts';
import { decoderProperty, httpProperty, seqProperty, websocketProperty } from '../test/fuzz-properties.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '20000' }, 'decoder-runs': { type: 'string' } } });
const runs = Number(values.runs);
const decoderRuns = Number(values['decoder-runs'] ?? runs * 5);
const fake = await startFakeVllm([{ text: 'ok' }]);
const daemon = await startDaemon({ dataDir: tempDir('clawrl-fuzz-'), port: 0, log: createLogger('silent'), backend: await UpstreamBackend.create({ url: fake.url }) });
const setup = await TestClient.connect(daemon.wsUrl, daemon.token);
await setup.hello('fuzz-setup');
await setup.sendEvents([optIn(1, 'fuzz-known'), userMessage(2, 'fuzz-known', 'must survive')]);
setup.close();

const rows: string[] = [];
const timed = async (name: string, fn: () => number | Promise<number>) => {
  const start = performance.now();
  const tried = await fn();
  rows.push(`| ${name} | ${tried.toLocaleString('en')} | ${((performance.now() - start) / 1000).toFixed(1)} | 0 |`);
  console.error(rows.at(-1));
};
await timed('frame decoder (in process)', () => decoderProperty(decoderRuns));
await timed('WebSocket frames (real daemon)', () => websocketProperty(daemon, runs));
await timed('HTTP /v1/chat/completions bodies', () => httpProperty(daemon, Math.round(runs / 4)));
await timed('replayed / out-of-order seq sequences', () => seqProperty(daemon, Math.round(runs / 40)));
await daemon.close();
await fake.close();
console.log('| entry point | cases tried | seconds | failures |');
console.log('|---|---|---|---|');
for (const row of rows) console.log(row);
