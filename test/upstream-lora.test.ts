// Serving at scale: each weight version is hot-loaded into an upstream server as a LoRA adapter
// and later requests name it. The server is a fake of vLLM's and SGLang's runtime LoRA APIs
// (test/fake-vllm.ts); the trainer behind it is the real torch worker on the tiny test model.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UpstreamBackend } from '../daemon/backends/upstream.ts';
import { SplitBackend } from '../daemon/backends/split.ts';
import { TorchBackend } from '../daemon/backends/torch/index.ts';
import type { Backend, GenerateRequest } from '../daemon/backends/types.ts';
import { startDaemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { startFakeVllm, type FakeVllm, type FakeVllmOptions } from './fake-vllm.ts';
import { TORCH_PYTHON as PYTHON, TestClient, optIn, runCli, spawnDaemon, tempDir, torchMissing, until } from './helpers.ts';

const noTorch = torchMissing();

const request: GenerateRequest = { messages: [{ role: 'user', content: 'hi' }], sampling: { temperature: 1, topP: 1, maxTokens: 8, stop: [], topLogprobs: 0 } };

/** Version folders as the trainer writes them (only the config matters to the fake server). */
function versions(root: string, names: string[]): string[] {
  return names.map((name) => {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'adapter_config.json'), '{"peft_type": "LORA"}');
    return dir;
  });
}

async function upstream(t: TestContext, lora: FakeVllmOptions['lora'], extra: Partial<Parameters<typeof UpstreamBackend.create>[0]> = {}) {
  const fake = await startFakeVllm([{ text: 'ok' }], 'fake-model', { lora });
  const backend = await UpstreamBackend.create({ url: fake.url, ...extra });
  t.after(async () => (await backend.close(), await fake.close()));
  return { fake, backend };
}

test('vLLM: each version is loaded once, requests name it, old ones are unloaded, base needs none', async (t) => {
  const { fake, backend } = await upstream(t, 'vllm');
  const [v1, v2, v3] = versions(tempDir(), ['v000001', 'v000002', 'v000003']);
  await backend.loadAdapter(v1!, 'v000001');
  assert.deepEqual(fake.loraCalls, [{ op: 'load', name: 'clawrl-v000001', path: v1, status: 200 }]);
  const result = await backend.generate(request);
  assert.equal(fake.requests.at(-1)!.body.model, 'clawrl-v000001');
  assert.equal(result.weightVersion, 'v000001');

  await backend.loadAdapter(v2!, 'v000002');
  await backend.loadAdapter(v3!, 'v000003');
  // Two kept (the serving one and the one before); v000001 went.
  await until(() => !fake.adapters.has('clawrl-v000001') || undefined, 'v000001 to be unloaded');
  assert.deepEqual([...fake.adapters.keys()], ['clawrl-v000002', 'clawrl-v000003']);
  await backend.generate(request, () => {});
  assert.equal(fake.requests.at(-1)!.body.model, 'clawrl-v000003');

  // Rolling back to a version still loaded costs no load.
  const loads = fake.loraCalls.filter((c) => c.op === 'load').length;
  await backend.loadAdapter(v2!, 'v000002');
  assert.equal(fake.loraCalls.filter((c) => c.op === 'load').length, loads);
  assert.equal((await backend.generate(request)).weightVersion, 'v000002');

  await backend.loadAdapter(null, 'base');
  const base = await backend.generate(request);
  assert.equal(fake.requests.at(-1)!.body.model, 'fake-model');
  assert.equal(base.weightVersion, 'base');
});

test('an adapter with a request in flight stays loaded until that request is done', async (t) => {
  const { fake, backend } = await upstream(t, 'vllm', { keepAdapters: 1 });
  const [v1, v2] = versions(tempDir(), ['v000001', 'v000002']);
  await backend.loadAdapter(v1!, 'v000001');
  // The reply waits for the swap, rather than for a fixed time the swap had to beat.
  let finish!: () => void;
  fake.script = [{ text: 'slow reply', held: new Promise((resolve) => (finish = resolve)) }];
  const slow = backend.generate(request);
  await until(() => fake.requests.length === 1 || undefined, 'the slow request to arrive');
  await backend.loadAdapter(v2!, 'v000002');
  assert.ok(fake.adapters.has('clawrl-v000001'), 'not unloaded under a running request');
  finish();
  const result = await slow;
  assert.equal(result.text, 'slow reply');
  assert.equal(result.weightVersion, 'v000001', 'a request keeps the version it started on');
  await until(() => !fake.adapters.has('clawrl-v000001') || undefined, 'v000001 to be unloaded after its request');
  assert.deepEqual([...fake.adapters.keys()], ['clawrl-v000002']);
});

test('a server that lost the adapter (a restart) gets it again, and the request goes through', async (t) => {
  const { fake, backend } = await upstream(t, 'vllm');
  const [v1] = versions(tempDir(), ['v000001']);
  await backend.loadAdapter(v1!, 'v000001');
  fake.adapters.clear(); // the server restarted
  const [first, second] = await Promise.all([backend.generate(request), backend.generate(request, () => {})]);
  assert.deepEqual([first.weightVersion, second.weightVersion], ['v000001', 'v000001']);
  assert.equal(fake.loraCalls.filter((c) => c.op === 'load' && c.status === 200).length, 2, 'loaded again once for both requests');
  assert.equal(fake.requests.at(-1)!.body.model, 'clawrl-v000001');

  // Lost again, and its folder is gone too: the base model serves rather than every request failing.
  fake.adapters.clear();
  rmSync(v1!, { recursive: true });
  const fallback = await backend.generate(request);
  assert.equal(fallback.weightVersion, 'base');
  assert.equal(backend.currentVersion(), 'base');
  assert.equal(fake.requests.at(-1)!.body.model, 'fake-model');
});

test('swaps without waiting land in order; a rollback waits for the unload of the same name; close unloads', async (t) => {
  const { fake, backend } = await upstream(t, 'vllm', { keepAdapters: 1 });
  const [v1, v2, v3] = versions(tempDir(), ['v000001', 'v000002', 'v000003']);
  await Promise.all([backend.loadAdapter(v1!, 'v000001'), backend.loadAdapter(v2!, 'v000002')]);
  assert.equal(backend.currentVersion(), 'v000002');
  // v000001 is being unloaded (keep 1); rolling back to it at once must end with it loaded.
  await backend.loadAdapter(v1!, 'v000001');
  assert.ok(fake.adapters.has('clawrl-v000001'), 'the rollback target is loaded at the server');
  assert.equal((await backend.generate(request)).weightVersion, 'v000001');
  await backend.loadAdapter(v3!, 'v000003');
  await backend.close();
  assert.equal(fake.adapters.size, 0, 'close unloads what this run loaded');
});

test('a reply that fails mid-stream is an error, not a shorter reply', async (t) => {
  const { fake, backend } = await upstream(t, 'vllm');
  fake.script = [{ text: 'a long reply', failMidStream: 'engine died' }];
  const chunks: string[] = [];
  await assert.rejects(backend.generate(request, (c) => chunks.push(c.text)), /upstream failed mid-reply: engine died/);
  assert.equal(chunks.join(''), 'a ', 'what came before the error was streamed');
});

test('SGLang: loaded at /load_lora_adapter and named in lora_path', async (t) => {
  const { fake, backend } = await upstream(t, 'sglang');
  const [v1] = versions(tempDir(), ['v000001']);
  await backend.loadAdapter(v1!, 'v000001');
  // The vLLM route was tried first and is missing on SGLang; the load went to SGLang's.
  assert.deepEqual(fake.loraCalls, [{ op: 'load', name: 'clawrl-v000001', path: v1, status: 200 }]);
  const result = await backend.generate(request);
  const sent = fake.requests.at(-1)!.body;
  assert.deepEqual([sent.model, sent.lora_path, result.weightVersion], ['fake-model', 'clawrl-v000001', 'v000001']);
});

test('a name left loaded by an earlier run is loaded afresh; --upstream-adapter-root maps the path', async (t) => {
  const serverRoot = tempDir();
  const [onServer] = versions(serverRoot, ['v000001']);
  const { fake, backend } = await upstream(t, 'vllm', { adapterRoot: serverRoot });
  fake.adapters.set('clawrl-v000001', '/old/run/v000001');
  await backend.loadAdapter('/daemon/side/weights/v000001', 'v000001');
  assert.deepEqual(
    fake.loraCalls.map((c) => [c.op, c.status]),
    [['load', 400], ['unload', 200], ['load', 200]],
  );
  assert.equal(fake.adapters.get('clawrl-v000001'), onServer);
});

test('a server that cannot load adapters, or a missing adapter, is a clear error and serving goes on', async (t) => {
  const plain = await upstream(t, undefined);
  const [v1] = versions(tempDir(), ['v000001']);
  await assert.rejects(plain.backend.loadAdapter(v1!, 'v000001'), /cannot load LoRA adapters at runtime.*VLLM_ALLOW_RUNTIME_LORA_UPDATING=True/);
  assert.equal(plain.backend.currentVersion(), 'base');
  assert.equal((await plain.backend.generate(request)).text, 'ok');

  const vllm = await upstream(t, 'vllm');
  await assert.rejects(vllm.backend.loadAdapter('/no/such/v000002', 'v000002'), /could not load adapter clawrl-v000002 from \/no\/such\/v000002: .*No adapter found/);
  assert.equal(vllm.backend.currentVersion(), 'base');
  assert.equal(vllm.fake.adapters.size, 0);
});

// ---------------------------------------------------------------------------------------------
// With the torch worker training behind the server.

/** The tiny test model's chat template (models.py ToyTokenizer), so the fake reports the ids the trainer would. */
const MARKER = { system: 256, user: 257, assistant: 258, tool: 259, end: 260 } as const;
const toyPromptIds = (body: Record<string, unknown>) => [
  ...(body.messages as { role: keyof typeof MARKER; content: string }[]).flatMap((m) => [MARKER[m.role], ...Buffer.from(m.content ?? ''), MARKER.end]),
  MARKER.assistant,
];
const session = 'agent:main:split';

/** A daemon serving through the fake and training on the tiny model; `again` restarts on the same data and server. */
async function splitDaemon(t: TestContext, lora: FakeVllmOptions['lora'], again?: { dataDir: string; fake: FakeVllm }) {
  const fake = again?.fake ?? (await startFakeVllm([{ text: 'ok then' }], 'fake-model', { lora, promptIds: toyPromptIds }));
  if (!again) t.after(() => fake.close());
  const training = await TorchBackend.create({ python: PYTHON, model: 'tiny-test', lora: { rank: 4, alpha: 8 }, workerArgs: ['--device', 'cpu'] });
  const backend: Backend = await SplitBackend.create(await UpstreamBackend.create({ url: fake.url }), training);
  const dataDir = again?.dataDir ?? tempDir();
  const daemon = await startDaemon({ dataDir, port: 0, log: createLogger('silent'), backend, recipeOptions: { batchSize: 2, lr: 1e-3 } });
  const client = await TestClient.connect(daemon.wsUrl, daemon.token);
  let open = true;
  const close = async () => {
    if (!open) return;
    open = false;
    client.close();
    await daemon.close();
  };
  t.after(close);
  const { ackedSeq } = await client.hello('split-test');
  if (ackedSeq === 0) await client.sendEvents([optIn(1, session)]);
  return { daemon, fake, client, seq: Math.max(ackedSeq, 1), dataDir, close };
}

/** A served reply in the opted-in session, then `/clawrl good` on it. */
async function goodTurn(h: Awaited<ReturnType<typeof splitDaemon>>, content: string) {
  const res = await fetch(`${h.daemon.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${h.daemon.token}`, 'x-clawrl-session-key': session, 'x-clawrl-opt-in': '1' },
    body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content }], max_tokens: 6 }),
  });
  assert.equal(res.status, 200);
  const { id } = (await res.json()) as { id: string };
  await until(() => h.daemon.store.samples.get(id), 'the sample');
  await h.client.sendEvents([{ kind: 'feedback', seq: ++h.seq, at: Date.now(), sessionKey: session, rating: 'good' }]);
  return id;
}

test('trained on torch, served by vLLM: the new version is hot-loaded and later samples carry it', { skip: noTorch }, async (t) => {
  const h = await splitDaemon(t, 'vllm');
  assert.ok(h.daemon.backend instanceof SplitBackend);
  await goodTurn(h, 'first');
  await goodTurn(h, 'second');
  await until(() => h.daemon.trainer!.status().steps === 1 || undefined, 'the training step', 60_000);
  const dir = join(h.dataDir, 'weights', 'v000001');
  assert.deepEqual(h.fake.loraCalls.at(-1), { op: 'load', name: 'clawrl-v000001', path: dir, status: 200 });
  assert.ok(existsSync(join(dir, 'adapter_model.safetensors')));
  assert.equal(h.daemon.trainer!.status().swapError, null);
  const id = await goodTurn(h, 'third');
  assert.equal(h.fake.requests.at(-1)!.body.model, 'clawrl-v000001');
  assert.equal(h.daemon.store.samples.get(id)!.weightVersion, 'v000001');
});

test('a server that refuses the new version: training goes on, status says why, the old one serves', { skip: noTorch }, async (t) => {
  const h = await splitDaemon(t, undefined);
  await goodTurn(h, 'first');
  await goodTurn(h, 'second');
  await until(() => h.daemon.trainer!.status().steps === 1 || undefined, 'the training step', 60_000);
  const status = h.daemon.trainer!.status();
  assert.equal(status.serving, 'base');
  assert.match(status.swapError ?? '', /^v000001: .*cannot load LoRA adapters at runtime/);
  assert.ok(h.daemon.store.versions.get('v000001'), 'the version is kept for when the server can load it');

  // A restart against the same server: the daemon starts, the base model serves, status says why.
  await h.close();
  const again = await splitDaemon(t, undefined, h);
  const restarted = again.daemon.trainer!.status();
  assert.equal(restarted.serving, 'base');
  assert.match(restarted.swapError ?? '', /^v000001: .*cannot load LoRA adapters at runtime/);
});

test('serving and training models that tokenize differently are refused at start', { skip: noTorch }, async (t) => {
  const fakeServer = await startFakeVllm([{ text: 'ok' }], 'other-model', { lora: 'vllm' });
  const training = await TorchBackend.create({ python: PYTHON, model: 'tiny-test', workerArgs: ['--device', 'cpu'] });
  const serving = await UpstreamBackend.create({ url: fakeServer.url });
  t.after(() => Promise.all([training.close(), serving.close(), fakeServer.close()]));
  await assert.rejects(SplitBackend.create(serving, training), /upstream model \(other-model\) tokenizes a chat differently from the training model.*same base model/);
});

test('`start --backend upstream --model M` serves upstream and trains with torch; a mismatch fails the start', { skip: noTorch }, async (t) => {
  const fakeServer = await startFakeVllm([{ text: 'ok' }], 'fake-model', { lora: 'vllm', promptIds: toyPromptIds });
  const dataDir = tempDir();
  const args = ['--backend', 'upstream', '--upstream-url', fakeServer.url, '--model', 'tiny-test', '--python', PYTHON];
  const daemon = await spawnDaemon(dataDir, args);
  t.after(async () => (await daemon.stop(), await fakeServer.close()));
  const status = await runCli(dataDir, ['status']);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /weights: serving base\n/);
  assert.match(status.stdout, /training: 0\/16 turns waiting, 0 steps/);
  await daemon.stop();

  const other = await startFakeVllm([{ text: 'ok' }], 'other-model');
  t.after(() => other.close());
  const refused = await runCli(tempDir(), ['start', '--port', '0', ...args.slice(0, 2), '--upstream-url', other.url, ...args.slice(4)]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /could not start the upstream backend: the upstream model \(other-model\) tokenizes a chat differently/);
});
