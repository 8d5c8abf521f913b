// The OpenAI-compatible API serving the embedded policy, with the official `openai` client:
// the logprobs it returns are the policy's, and samples keep the exact tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startDaemon, type Daemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { EmbeddedBackend } from '../daemon/backends/embedded/index.ts';
import { decode } from '../daemon/backends/embedded/tokenizer.ts';
import { tempDir, until } from './helpers.ts';
import { DEFAULT_MAX_BODY_BYTES, MAX_MESSAGES } from '../daemon/api.ts';
import { INLINE_PARSE_BYTES } from '../daemon/parse-off-loop.ts';

let daemon: Daemon;
let client: OpenAI;
const headers = { 'x-clawrl-session-key': 'agent:main:emb', 'x-clawrl-opt-in': '1' };

before(async () => {
  const backend = await EmbeddedBackend.create({ model: { dim: 48, layers: 2, heads: 4, context: 256, seed: 9 } });
  daemon = await startDaemon({ dataDir: tempDir(), port: 0, log: createLogger('silent'), backend });
  client = new OpenAI({ baseURL: `${daemon.url}/v1`, apiKey: daemon.token, maxRetries: 0 });
});
after(() => daemon.close());

// A sample is stored after its response is sent: waited for as long as `until` allows a busy machine.
const sampleOf = (id: string) => until(() => daemon.store.samples.get(id), `sample ${id} to be stored`);

test('non-streaming logprobs equal the policy rescoring the same tokens', async () => {
  const res = await client.chat.completions.create(
    { model: 'clawrl-embedded', messages: [{ role: 'user', content: 'Say something.' }], max_tokens: 24, logprobs: true, top_logprobs: 2, seed: 3 },
    { headers },
  );
  const choice = res.choices[0]!;
  const returned = choice.logprobs!.content!.map((t) => t.logprob);
  assert.ok(returned.length > 0);
  assert.equal(choice.logprobs!.content![0]!.top_logprobs.length, 2);
  const sample = await sampleOf(res.id);
  assert.deepEqual(sample.logprobs, returned);
  const rescored = await (daemon.backend as EmbeddedBackend).score(sample.promptTokens, sample.responseTokens);
  assert.equal(rescored.length, returned.length);
  rescored.forEach((lp, i) => assert.ok(Math.abs(lp - returned[i]!) < 1e-4, `token ${i}: ${lp} vs ${returned[i]}`));
  assert.equal(res.usage!.completion_tokens, sample.responseTokens.length);
  assert.equal(res.system_fingerprint, 'base');
});

test('streaming: the streamed text is the sample, whose token ids decode back to it', async () => {
  const stream = await client.chat.completions.create(
    { model: 'clawrl-embedded', messages: [{ role: 'user', content: 'Stream please.' }], max_tokens: 40, stream: true, stream_options: { include_usage: true }, seed: 5 },
    { headers },
  );
  let text = '';
  let id = '';
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    id = chunk.id;
    text += chunk.choices[0]?.delta.content ?? '';
    usage = chunk.usage ?? usage;
  }
  const sample = await sampleOf(id);
  assert.equal(sample.text, text);
  // Ids 0-255 are bytes; a turn marker that ended the reply stays in the tokens, not the text.
  const bytes = sample.responseTokens.filter((t) => t < 256);
  assert.ok(sample.responseTokens.length - bytes.length <= 1);
  assert.equal(decode(bytes), text);
  assert.equal(usage!.completion_tokens, sample.responseTokens.length);
  assert.equal(usage!.prompt_tokens, sample.promptTokens.length);
});

test("an OpenClaw-sized request (50 KB system prompt, 12 tools, stream) is served with the prompt cut", async () => {
  const system = 'You are a personal agent. '.repeat(2000); // ~52 KB
  const tools = Array.from({ length: 12 }, (_, i) => ({
    type: 'function' as const,
    function: { name: `tool_${i}`, description: `Tool number ${i} does things.`, parameters: { type: 'object', properties: { arg: { type: 'string' } } } },
  }));
  const stream = await client.chat.completions.create(
    {
      model: 'clawrl-embedded',
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: 'hello' },
        { role: 'user', content: '<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>> none <<<END_OPENCLAW_INTERNAL_CONTEXT>>>' },
      ],
      tools,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 16,
    },
    { headers },
  );
  let usage: OpenAI.CompletionUsage | undefined;
  let finish: string | null = null;
  for await (const chunk of stream) {
    usage = chunk.usage ?? usage;
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.ok(finish === 'stop' || finish === 'length' || finish === 'tool_calls');
  // The embedded context is 256 tokens; a quarter is kept for the reply.
  assert.ok(usage!.prompt_tokens <= 192, `prompt of ${usage!.prompt_tokens} tokens`);
});

test('large bodies: parsed off the loop alike, and past 4,096 messages or 4 MiB a 413 naming the limit', async () => {
  const post = async (body: string) => {
    const res = await fetch(`${daemon.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${daemon.token}`, ...headers }, body });
    return { status: res.status, body: (await res.json()) as { choices?: unknown[]; error?: { message: string; param: string | null } } };
  };
  const chat = (messages: unknown[]) => JSON.stringify({ model: 'clawrl-embedded', messages, max_tokens: 2 });
  const long = 'x'.repeat(INLINE_PARSE_BYTES + 1000);

  const served = await post(chat([{ role: 'user', content: long }]));
  assert.equal(served.status, 200, 'a body over the inline size is parsed in the worker and served');
  assert.equal(served.body.choices?.length, 1);
  // The same mistake earns the same answer wherever the body was parsed.
  for (const padding of ['', long]) {
    const wrong = await post(chat([{ role: 'user', content: padding }, { role: 'robot', content: 'hi' }]));
    assert.deepEqual([wrong.status, wrong.body.error?.message], [400, 'messages[1].role must be one of system, developer, user, assistant, tool']);
    const many = await post(chat([{ role: 'system', content: padding }, ...Array.from({ length: MAX_MESSAGES }, () => ({ role: 'user', content: 'hi' }))]));
    assert.deepEqual([many.status, many.body.error?.message, many.body.error?.param], [413, `messages has ${MAX_MESSAGES + 1} entries, over the limit of ${MAX_MESSAGES}`, 'messages']);
    assert.match((await post(`{"model": "m", "messages": "${padding}`)).body.error?.message ?? '', /^the request body is not valid JSON/);
  }
  const huge = await post(chat([{ role: 'user', content: 'x'.repeat(DEFAULT_MAX_BODY_BYTES) }]));
  assert.equal(huge.status, 413);
  assert.match(huge.body.error?.message ?? '', new RegExp(`exceeds the limit of ${DEFAULT_MAX_BODY_BYTES} bytes`));
});
