// The training loop end to end on the embedded policy: served responses + explicit feedback
// → turns → rules scores → one step per batch → new version served, with nothing refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, type Daemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { EmbeddedBackend } from '../daemon/backends/embedded/index.ts';
import type { TrainingBackend } from '../daemon/backends/types.ts';
import { Store } from '../daemon/store.ts';
import { TestClient, optIn, tempDir, until } from './helpers.ts';

const tiny = { dim: 32, layers: 1, heads: 2, context: 128, seed: 3 };
const session = 'agent:main:train';

/** A chat request; `record` sends the opted-in session's headers, so its reply becomes a sample. */
function chat(daemon: Daemon, content: string, record = true) {
  return fetch(`${daemon.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${daemon.token}`, ...(record && { 'x-clawrl-session-key': session, 'x-clawrl-opt-in': '1' }) },
    body: JSON.stringify({ model: 'clawrl-embedded', messages: [{ role: 'user', content }], max_tokens: 6 }),
  });
}

interface Harness {
  daemon: Daemon;
  backend: TrainingBackend;
  client: TestClient;
  seq: number;
  logs: string[];
}

async function harness(dataDir = tempDir(), given?: TrainingBackend, batchSize = 4): Promise<Harness> {
  const backend = given ?? (await EmbeddedBackend.create({ model: tiny }));
  const logs: string[] = [];
  const log = createLogger('info', { write: (line: string) => (logs.push(line), true) } as unknown as NodeJS.WritableStream);
  const daemon = await startDaemon({
    dataDir,
    port: 0,
    log,
    backend,
    recipeOptions: { batchSize, lr: 1e-3 },
  });
  const client = await TestClient.connect(daemon.wsUrl, daemon.token);
  const { ackedSeq } = await client.hello('trainer-test');
  const h = { daemon, backend, client, seq: ackedSeq, logs };
  if (ackedSeq === 0) await client.sendEvents([optIn(++h.seq, session)]);
  return h;
}

/** n served replies, each followed by `/clawrl good`: n trainable turns. */
async function goodTurns(h: Harness, n: number): Promise<void> {
  const turns: [string, number][] = [];
  for (let i = 0; i < n; i++) {
    const res = await chat(h.daemon, `request ${i}`);
    assert.equal(res.status, 200);
    const { id } = (await res.json()) as { id: string };
    const sample = await until(() => h.daemon.store.samples.get(id), 'the sample');
    turns.push([session, sample.ordinal]);
    await h.client.sendEvents([{ kind: 'feedback', seq: ++h.seq, at: Date.now(), sessionKey: session, rating: 'good' }]);
  }
  // Scored (a full batch may already be training: the queue alone cannot tell).
  await until(() => turns.every((key) => h.daemon.store.scores.get(key)), 'scored turns');
}

async function close(h: Harness) {
  h.client.close();
  await h.daemon.close();
}

test('a batch trains once, a new version serves, and the plugin is told', async () => {
  const h = await harness();
  await goodTurns(h, 4);
  const record = await until(() => h.daemon.trainer!.status().steps === 1 || undefined, 'the step', 30_000);
  assert.ok(record);
  assert.equal(h.daemon.backend!.currentVersion(), 'v000001');
  const update = await h.client.next((m) => m.type === 'weights.updated');
  assert.deepEqual(update.type === 'weights.updated' && [update.version, update.recipe, update.metrics.turns], ['v000001', 'binary-rl', 4]);
  const turns = [...h.daemon.store.turnsOf(session)];
  assert.equal(turns.length, 4);
  assert.ok(turns.every((t) => t.trainedIn === 'v000001' && t.reward === 1));
  assert.equal(h.daemon.trainer!.status().waiting, 0);
  const files = readFileSync(join(h.daemon.store.path, '..', 'weights', 'v000001', 'clawrl.json'), 'utf8');
  assert.equal(JSON.parse(files).turnIds.length, 4);
  // Served responses now carry the new version.
  const res = (await (await chat(h.daemon, 'after')).json()) as { system_fingerprint: string };
  assert.equal(res.system_fingerprint, 'v000001');
  await close(h);
});

test('a crash mid-step re-runs the same batch; a crash after writing the version only finishes it', async () => {
  const dir = tempDir();
  let steps = 0;
  let failNext = true;
  // Fault injection around a real backend (a new one per daemon, as after a restart): the
  // first step dies as a crash would; a step waits for `gate` before it trains.
  const flaky = async (gate?: Promise<void>): Promise<TrainingBackend> => {
    const real = await EmbeddedBackend.create({ model: tiny });
    return Object.assign(Object.create(real) as TrainingBackend, {
      trainStep: async (...args: Parameters<TrainingBackend['trainStep']>) => {
        steps++;
        if (failNext) {
          failNext = false;
          throw new Error('worker died');
        }
        await gate;
        return real.trainStep(...args);
      },
    });
  };
  let h = await harness(dir, await flaky(), 100);
  await goodTurns(h, 3);
  assert.equal(await h.daemon.trainer!.trainNow(), null, 'the failed step publishes nothing');
  const pending = h.daemon.store.meta.get('pendingBatch') as { version: string; keys: unknown[] };
  assert.deepEqual([pending.version, pending.keys.length], ['v000001', 3]);
  await close(h);

  // Restart: init() re-runs exactly that batch, in the background. While the re-run is held in
  // its step the daemon listens: /healthz and /v1 answer, and the plugin's hello (in harness) is taken.
  let release!: () => void;
  h = await harness(dir, await flaky(new Promise((resolve) => (release = resolve))), 100);
  await until(() => steps === 2, 'the re-run step to start');
  assert.equal(h.daemon.trainer!.status().step?.version, 'v000001');
  assert.equal((await fetch(`${h.daemon.url}/healthz`)).status, 200);
  assert.equal((await chat(h.daemon, 'during the re-run', false)).status, 200);
  assert.equal(h.daemon.trainer!.status().serving, 'base', 'the re-run was still held');
  release();
  await until(() => h.daemon.trainer!.status().serving === 'v000001', 'the re-run batch to serve');
  assert.equal(steps, 2);
  assert.equal(h.daemon.store.meta.get('pendingBatch'), undefined);
  assert.deepEqual([...h.daemon.store.turnsOf(session)].map((t) => t.trainedIn), ['v000001', 'v000001', 'v000001']);

  // Crash after the version folder was written but before its bookkeeping.
  await goodTurns(h, 2);
  await h.daemon.store.meta.put('pendingBatch', { version: 'v000002', parent: 'v000001', keys: [[session, 3], [session, 4]] });
  await h.daemon.store.meta.put('versionCounter', 2);
  const weights = join(dir, 'weights');
  mkdirSync(join(weights, 'v000002'));
  for (const f of ['adapter_config.json', 'adapter_model.safetensors']) copyFileSync(join(weights, 'v000001', f), join(weights, 'v000002', f));
  writeFileSync(join(weights, 'v000002', 'clawrl.json'), JSON.stringify({ version: 'v000002', parent: 'v000001', recipe: 'binary-rl', createdAt: 1, turnIds: [], metrics: {} }));
  await close(h);
  h = await harness(dir, await flaky(), 100);
  await until(() => h.daemon.trainer!.status().serving === 'v000002', 'the finished version to serve');
  assert.equal(steps, 2, 'no step was run again');
  assert.deepEqual([...h.daemon.store.turnsOf(session)].map((t) => t.trainedIn), ['v000001', 'v000001', 'v000001', 'v000002', 'v000002']);
  assert.equal(h.daemon.trainer!.status().waiting, 0);
  await close(h);
});

test('requests keep succeeding through several hot swaps, and later samples carry the new version', async () => {
  const h = await harness(tempDir(), undefined, 2);
  let stop = false;
  const results: { status: number; version: string }[] = [];
  const load = (async () => {
    while (!stop) {
      // Not recorded: only goodTurns decides what trains.
      const res = await chat(h.daemon, 'keep going', false);
      const body = (await res.json()) as { system_fingerprint?: string };
      results.push({ status: res.status, version: body.system_fingerprint ?? '?' });
    }
  })();
  for (let step = 1; step <= 3; step++) {
    await goodTurns(h, 2);
    await until(() => h.daemon.trainer!.status().steps === step || undefined, `step ${step}`, 30_000);
  }
  const finalCount = results.length;
  await until(() => results.length > finalCount + 2, 'requests after the last swap');
  stop = true;
  await load;
  assert.ok(results.length > 10, `${results.length} requests`);
  assert.deepEqual(results.filter((r) => r.status !== 200), []);
  assert.equal(results.at(-1)!.version, 'v000003');
  const seen = [...new Set(results.map((r) => r.version))];
  assert.deepEqual(seen, seen.slice().sort(), 'versions only move forward');
  await close(h);
});

test('rollback serves the old version again; a corrupt dropped-in version is rejected', async () => {
  const h = await harness(tempDir(), undefined, 2);
  await goodTurns(h, 2);
  await until(() => h.daemon.trainer!.status().steps === 1 || undefined, 'v1');
  await goodTurns(h, 2);
  await until(() => h.daemon.trainer!.status().steps === 2 || undefined, 'v2');
  const v2Logprobs = await h.backend.score([1, 2, 3], [4, 5, 6]);

  const post = (path: string, body: unknown) =>
    fetch(`${h.daemon.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${h.daemon.token}` }, body: JSON.stringify(body) });
  assert.equal((await post('/weights/rollback', { version: 'v000001' })).status, 200);
  assert.equal(h.daemon.backend!.currentVersion(), 'v000001');
  const served = (await (await chat(h.daemon, 'which version?')).json()) as { system_fingerprint: string };
  assert.equal(served.system_fingerprint, 'v000001');
  assert.notDeepEqual(await h.backend.score([1, 2, 3], [4, 5, 6]), v2Logprobs);
  const unknown = await post('/weights/rollback', { version: 'v000042' });
  assert.equal(unknown.status, 400);
  assert.match(((await unknown.json()) as { error: { message: string } }).error.message, /no weight version "v000042"/);

  // An external trainer drops a version whose adapter is cut short.
  const weights = join(h.daemon.store.path, '..', 'weights');
  const bad = join(weights, 'v000009');
  mkdirSync(bad);
  copyFileSync(join(weights, 'v000002', 'adapter_config.json'), join(bad, 'adapter_config.json'));
  const full = readFileSync(join(weights, 'v000002', 'adapter_model.safetensors'));
  writeFileSync(join(bad, 'adapter_model.safetensors'), full.subarray(0, full.length - 100));
  writeFileSync(join(bad, 'clawrl.json'), JSON.stringify({ version: 'v000009', parent: 'v000002', recipe: 'external', createdAt: 1, turnIds: [], metrics: {} }));
  await until(() => h.logs.some((l) => l.includes('rejected weight version v000009')), 'the rejection log line', 10_000);
  assert.equal(h.daemon.backend!.currentVersion(), 'v000001');
  assert.equal(h.daemon.store.versions.get('v000009'), undefined);
  await close(h);

  // The store survives: a reopened store still lists the two trained versions.
  const store = await Store.open(join(h.daemon.store.path, '..'));
  assert.deepEqual([...store.versions.getKeys()], ['v000001', 'v000002']);
  await store.close();
});
