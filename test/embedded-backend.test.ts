import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EmbeddedBackend, promptBudget } from '../daemon/backends/embedded/index.ts';
import { SPECIAL, decode, encodeChat, encodeText, parseToolCalls } from '../daemon/backends/embedded/tokenizer.ts';
import { decodeSafetensors, encodeSafetensors } from '../daemon/backends/safetensors.ts';
import type { ChatMessage, GenerateChunk, SamplingParams, ToolSpec, TrainExample } from '../daemon/backends/types.ts';
import fc from 'fast-check';

const small = { context: 256, dim: 32, layers: 2, heads: 2, mlpRatio: 2, seed: 3 };
const sampling = (over: Partial<SamplingParams> = {}): SamplingParams => ({
  temperature: 1,
  topP: 1,
  maxTokens: 40,
  stop: [],
  topLogprobs: 0,
  seed: 9, // with this seed the small model's reply runs 60 tokens before a turn-ending token
  ...over,
});
const hello = [{ role: 'user' as const, content: 'Say hello.' }];

let backend: EmbeddedBackend;
let dir: string;
before(async () => {
  backend = await EmbeddedBackend.create({ model: small, lora: { rank: 4, alpha: 8 }, name: 'tiny' });
  dir = await mkdtemp(join(tmpdir(), 'clawrl-embedded-'));
});
after(async () => {
  await backend.close();
  await rm(dir, { recursive: true, force: true });
});

test('a prompt over the budget keeps its first quarter and its end, token for token as the whole prompt cut', () => {
  const message = fc.record({
    role: fc.constantFrom('system', 'user', 'assistant', 'tool') as fc.Arbitrary<ChatMessage['role']>,
    content: fc.string({ unit: 'grapheme', maxLength: 60 }),
  });
  fc.assert(
    fc.property(fc.array(message, { maxLength: 8 }), fc.boolean(), fc.integer({ min: 1, max: 400 }), (messages, withTools, maxTokens) => {
      const tools: ToolSpec[] | undefined = withTools ? [{ name: 'exec', description: 'run é', parameters: { type: 'object' } }] : undefined;
      const whole = encodeChat(messages, tools, Infinity).tokens;
      const head = Math.floor(maxTokens / 4);
      const cut = whole.length <= maxTokens ? whole : whole.slice(0, head).concat(whole.slice(whole.length - (maxTokens - head)));
      assert.deepEqual(encodeChat(messages, tools, maxTokens), { tokens: cut, truncated: whole.length > maxTokens });
    }),
    { numRuns: 300 },
  );
});

test('tokenizer: unicode roundtrip and the chat template', () => {
  const text = 'héllo — 世界 🦀 \u0000 end';
  assert.equal(decode(encodeText(text)), text);
  assert.equal(encodeText('é').length, 2);
  const tools: ToolSpec[] = [{ name: 'exec', description: 'run', parameters: { type: 'object' } }];
  const { tokens, truncated } = encodeChat(
    [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'ls?' },
      { role: 'assistant', content: '', toolCalls: [{ id: 'c1', name: 'exec', arguments: '{"cmd":"ls"}' }] },
      { role: 'tool', content: 'a.txt', toolCallId: 'c1' },
    ],
    tools,
    10_000,
  );
  assert.equal(truncated, false);
  assert.equal(
    decode(tokens),
    '<|system|>Be brief.\n\n# Tools\nTo call a tool, write <tool_call>{"name": NAME, "arguments": {...}}</tool_call>.\n' +
      '{"name":"exec","description":"run","parameters":{"type":"object"}}<|end|>' +
      '<|user|>ls?<|end|><|assistant|><tool_call>{"name":"exec","arguments":{"cmd":"ls"}}</tool_call><|end|>' +
      '<|tool|>a.txt<|end|><|assistant|>',
  );
  // The template's markers are single special tokens; the same text inside content stays bytes.
  assert.equal(tokens[0], SPECIAL.system);
  assert.ok(tokens.includes(SPECIAL.toolCallOpen));
  assert.equal(encodeChat([{ role: 'user', content: '<|end|>' }], undefined, 100).tokens.filter((t) => t === SPECIAL.end).length, 1);
});

test('tool calls are parsed out of generated text; malformed blocks stay text', () => {
  let n = 0;
  const parsed = parseToolCalls(
    'Let me look. <tool_call>{"name":"exec","arguments":{"cmd":"ls"}}</tool_call><tool_call>{"name":"read","arguments":"{\\"p\\":1}"}</tool_call>',
    () => `id${n++}`,
  );
  assert.equal(parsed.content, 'Let me look.');
  assert.deepEqual(parsed.toolCalls, [
    { id: 'id0', name: 'exec', arguments: '{"cmd":"ls"}' },
    { id: 'id1', name: 'read', arguments: '{"p":1}' },
  ]);
  const bad = parseToolCalls('x <tool_call>{not json}</tool_call> <tool_call>{"arguments":{}}</tool_call>', () => 'id');
  assert.equal(bad.toolCalls.length, 0);
  assert.equal(bad.content, 'x <tool_call>{not json}</tool_call> <tool_call>{"arguments":{}}</tool_call>');
});

test('generate: max_tokens, streaming, logprobs equal score, stop strings', async () => {
  assert.deepEqual(backend.models(), ['tiny']);
  const chunks: GenerateChunk[] = [];
  const first = await backend.generate({ messages: hello, sampling: sampling() }, (c) => chunks.push(c));
  assert.equal(first.responseTokens.length, 40);
  assert.equal(first.finishReason, 'length');
  assert.equal(first.weightVersion, 'base');
  assert.deepEqual(first.promptTokens, await backend.encodeChat(hello));
  assert.equal(chunks.map((c) => c.text).join(''), first.text);
  assert.deepEqual(chunks.flatMap((c) => c.tokens.map((t) => t.token)), first.responseTokens);
  const scored = await backend.score(first.promptTokens, first.responseTokens);
  scored.forEach((lp, i) => assert.ok(Math.abs(lp - first.logprobs[i]) < 1e-4));

  // Stop at a piece of text the same seed produces again: the reply ends just before it.
  const chars = [...first.text];
  const stop = chars.slice(10, 12).join('');
  const stopped = await backend.generate({ messages: hello, sampling: sampling({ stop: [stop] }) });
  assert.equal(stopped.finishReason, 'stop');
  assert.equal(stopped.text, first.text.slice(0, first.text.indexOf(stop)));
  assert.ok(stopped.responseTokens.length < first.responseTokens.length);
  assert.deepEqual(stopped.responseTokens, first.responseTokens.slice(0, stopped.responseTokens.length));
});

/** Positive advantage on one fixed reply; returns the reply's prompt, tokens and initial logprobs. */
async function trainTowards(steps: number): Promise<TrainExample> {
  const promptTokens = await backend.encodeChat(hello);
  const responseTokens = [...encodeText('Hello!'), SPECIAL.end];
  const oldLogprobs = await backend.score(promptTokens, responseTokens, { reference: true });
  const example = { promptTokens, responseTokens, oldLogprobs, advantages: responseTokens.map(() => 1) };
  for (let i = 0; i < steps; i++) {
    const m = await backend.trainStep([example], { lr: 0.01, clipLow: 0.2, clipHigh: 0.28, klCoef: 0.01 });
    assert.equal(m.tokens, responseTokens.length);
    assert.ok(Number.isFinite(m.loss) && m.gradNorm > 0);
  }
  return example;
}

test('train steps with positive advantage raise the reply logprob; save → load serves it', async () => {
  const ex = await trainTowards(8);
  const adapter = join(dir, 'v1');
  await backend.saveAdapter(adapter);
  const config = JSON.parse(await readFile(join(adapter, 'adapter_config.json'), 'utf8'));
  assert.equal(config.peft_type, 'LORA');
  assert.equal(config.r, 4);
  const weights = decodeSafetensors(await readFile(join(adapter, 'adapter_model.safetensors')), 'adapter');
  assert.deepEqual(weights.tensors.get('base_model.model.layers.1.mlp.up_proj.lora_B.weight')?.shape, [64, 4]);

  await backend.loadAdapter(adapter, 'v1');
  assert.equal(backend.currentVersion(), 'v1');
  const after = await backend.score(ex.promptTokens, ex.responseTokens);
  const sum = (a: number[]) => a.reduce((s, x) => s + x, 0);
  assert.ok(sum(after) > sum(ex.oldLogprobs) + 1, `logprob ${sum(ex.oldLogprobs)} → ${sum(after)}`);
  // reference scoring ignores the adapter
  assert.deepEqual(await backend.score(ex.promptTokens, ex.responseTokens, { reference: true }), ex.oldLogprobs);
  assert.equal((await backend.generate({ messages: hello, sampling: sampling({ maxTokens: 2 }) })).weightVersion, 'v1');

  // A fresh backend on the same base loads the same adapter to identical logprobs.
  const other = await EmbeddedBackend.create({ model: small });
  try {
    await other.loadAdapter(adapter, 'v1');
    assert.deepEqual(await other.score(ex.promptTokens, ex.responseTokens), after);
  } finally {
    await other.close();
  }
});

test('a corrupt adapter or one for another base is refused and the served one stays', async () => {
  const good = join(dir, 'v1');
  const prompt = await backend.encodeChat(hello);
  const response = encodeText('Hi');
  const before = await backend.score(prompt, response);

  const cut = join(dir, 'cut');
  await cp(good, cut, { recursive: true });
  const file = join(cut, 'adapter_model.safetensors');
  await truncate(file, 1000);
  await assert.rejects(backend.loadAdapter(cut, 'bad'), (err: Error) => err.message.includes(file) && /truncated/.test(err.message));

  const garbled = join(dir, 'garbled');
  await cp(good, garbled, { recursive: true });
  const bytes = new Uint8Array(await readFile(join(garbled, 'adapter_model.safetensors')));
  bytes.fill(0x7b, 8, 20); // '{' over the start of the JSON header
  await writeFile(join(garbled, 'adapter_model.safetensors'), bytes);
  await assert.rejects(backend.loadAdapter(garbled, 'bad'), /header is not valid JSON/);

  const foreign = await EmbeddedBackend.create({ model: { ...small, seed: 4 } });
  try {
    await assert.rejects(foreign.loadAdapter(good, 'x'), /made for another base model \(seed=3\).*seed=4/);
    assert.equal(foreign.currentVersion(), 'base');
  } finally {
    await foreign.close();
  }

  assert.equal(backend.currentVersion(), 'v1');
  assert.deepEqual(await backend.score(prompt, response), before);
});

test('safetensors: encode/decode roundtrip and offset validation', () => {
  const tensors = new Map([['w', { shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6.5]) }]]);
  const bytes = encodeSafetensors(tensors, { format: 'pt' });
  const back = decodeSafetensors(bytes, 'f');
  assert.deepEqual(back.tensors.get('w'), tensors.get('w'));
  assert.deepEqual(back.metadata, { format: 'pt' });
  const header = JSON.stringify({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 16] } });
  const bad = new Uint8Array(8 + header.length + 8);
  new DataView(bad.buffer).setBigUint64(0, BigInt(header.length), true);
  bad.set(new TextEncoder().encode(header), 8);
  assert.throws(() => decodeSafetensors(bad, 'x.safetensors'), /x\.safetensors: tensor w: data_offsets \[0, 16\] out of range/);
});

test('default model: a 50 KB system prompt with 12 tools is truncated to the budget and served', async () => {
  const big = await EmbeddedBackend.create();
  try {
    const system = 'You are OpenClaw, a personal agent. ' + 'Follow the workspace rules carefully. '.repeat(1400);
    assert.ok(system.length > 50_000);
    const tools: ToolSpec[] = Array.from({ length: 12 }, (_, i) => ({
      name: `tool_${i}`,
      description: 'Does a thing. '.repeat(20),
      parameters: { type: 'object', properties: { path: { type: 'string' } } },
    }));
    const messages = [{ role: 'system' as const, content: system }, ...hello];
    const t0 = performance.now();
    const tokens = await big.encodeChat(messages, tools);
    assert.ok(performance.now() - t0 < 200, 'encoding 50 KB is fast');
    const out = await big.generate({ messages, tools, sampling: sampling({ maxTokens: 4 }) });
    assert.equal(out.promptTruncated, true);
    assert.deepEqual(out.promptTokens, tokens);
    assert.equal(tokens.length, promptBudget(big.config));
    // the head of the system prompt survives (a quarter of the budget), then the latest turns
    const head = Math.floor(tokens.length / 4);
    assert.equal(decode(tokens.slice(0, head)), '<|system|>' + system.slice(0, head - 1));
    assert.ok(decode(tokens.slice(-30)).endsWith('<|user|>Say hello.<|end|><|assistant|>'));
    assert.equal(out.responseTokens.length, 4);

    // Abort after the first streamed token: the worker stops between tokens and keeps serving.
    const ctl = new AbortController();
    const long = sampling({ maxTokens: 200, seed: 8 }); // a reply that runs to max_tokens
    await assert.rejects(big.generate({ messages: hello, sampling: long, signal: ctl.signal }, () => ctl.abort()), { name: 'AbortError' });
    assert.equal((await big.generate({ messages: hello, sampling: long })).responseTokens.length, 200);
  } finally {
    await big.close();
  }
});
