// A canary on an upstream server (the fake of vLLM's runtime LoRA API, test/fake-vllm.ts): the
// canary version is loaded beside the serving one and named only by the requests that ask for it;
// it is never unloaded as stale while it is on canary, and ending the canary lets it go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UpstreamBackend } from '../daemon/backends/upstream.ts';
import type { GenerateRequest } from '../daemon/backends/types.ts';
import { startFakeVllm } from './fake-vllm.ts';
import { tempDir, until } from './helpers.ts';

const request: GenerateRequest = { messages: [{ role: 'user', content: 'hi' }], sampling: { temperature: 1, topP: 1, maxTokens: 8, stop: [], topLogprobs: 0 } };

test('vLLM: a canary adapter serves beside the main one, by name, only to requests that ask for it', async (t) => {
  const fake = await startFakeVllm([{ text: 'ok' }], 'fake-model', { lora: 'vllm' });
  const backend = await UpstreamBackend.create({ url: fake.url, keepAdapters: 1 });
  t.after(async () => (await backend.close(), await fake.close()));
  const root = tempDir();
  const [v1, v2, v3] = ['v000001', 'v000002', 'v000003'].map((name) => {
    mkdirSync(join(root, name));
    writeFileSync(join(root, name, 'adapter_config.json'), '{"peft_type": "LORA"}');
    return join(root, name);
  });
  await backend.loadAdapter(v1!, 'v000001');
  await backend.loadCanary(v2!, 'v000002');
  const canary = await backend.generate({ ...request, canary: true });
  assert.deepEqual([fake.requests.at(-1)!.body.model, canary.weightVersion], ['clawrl-v000002', 'v000002']);
  const main = await backend.generate(request, () => {});
  assert.deepEqual([fake.requests.at(-1)!.body.model, main.weightVersion], ['clawrl-v000001', 'v000001']);
  assert.equal(backend.currentVersion(), 'v000001');

  // keepAdapters 1: a swap of the main version unloads stale names, never the canary's.
  await backend.loadAdapter(v3!, 'v000003');
  await until(() => !fake.adapters.has('clawrl-v000001') || undefined, 'v000001 to be unloaded');
  assert.ok(fake.adapters.has('clawrl-v000002'), 'the canary stays loaded');
  assert.equal((await backend.generate({ ...request, canary: true })).weightVersion, 'v000002');

  // Canary over: requests that asked for it get the main version, and its adapter can go.
  await backend.loadCanary(null, null);
  assert.equal((await backend.generate({ ...request, canary: true })).weightVersion, 'v000003');
  await until(() => !fake.adapters.has('clawrl-v000002') || undefined, 'the old canary to be unloaded');
});
