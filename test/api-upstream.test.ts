// The OpenAI-compatible API through the upstream backend, against a fake vLLM server, with the
// official `openai` client.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { startDaemon, type Daemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { UpstreamBackend } from '../daemon/backends/upstream.ts';
import { UpstreamError } from '../daemon/backends/types.ts';
import { startFakeVllm, type FakeVllm } from './fake-vllm.ts';
import { tempDir, until } from './helpers.ts';

let fake: FakeVllm;
let daemon: Daemon;
let client: OpenAI;
const optedIn = { 'x-clawrl-session-key': 'agent:main:up', 'x-clawrl-session-id': 'sid-1', 'x-clawrl-run-id': 'run-1', 'x-clawrl-call-id': 'run-1:model:1', 'x-clawrl-side': '0', 'x-clawrl-opt-in': '1' };

before(async () => {
  fake = await startFakeVllm();
  const backend = await UpstreamBackend.create({ url: fake.url });
  daemon = await startDaemon({ dataDir: tempDir(), port: 0, log: createLogger('silent'), backend, maxBodyBytes: 1024 * 1024 });
  client = new OpenAI({ baseURL: `${daemon.url}/v1`, apiKey: daemon.token, maxRetries: 0 });
});
after(async () => {
  await daemon.close();
  await fake.close();
});

// A sample is stored after its response is sent: waited for as long as `until` allows a busy machine.
const sampleOf = (id: string) => until(() => daemon.store.samples.get(id), `sample ${id} to be stored`);

test('lists the upstream model', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['fake-model']);
});

test('non-streaming: text, logprobs and usage come back, and the sample keeps upstream token ids', async () => {
  fake.script = [{ text: 'Héllo there' }];
  const res = await client.chat.completions.create(
    { model: 'fake-model', messages: [{ role: 'user', content: 'hi' }], logprobs: true },
    { headers: optedIn },
  );
  assert.equal(res.choices[0]!.message.content, 'Héllo there');
  assert.equal(res.choices[0]!.finish_reason, 'stop');
  assert.equal(res.choices[0]!.logprobs!.content!.length, 11);
  assert.equal(res.usage!.completion_tokens, 11);
  const sample = await sampleOf(res.id);
  assert.deepEqual(sample.responseTokens, [...'Héllo there'].map((c) => c.codePointAt(0)));
  assert.equal(sample.logprobs.length, 11);
  assert.ok(sample.promptTokens.length > 0);
  assert.equal(sample.sessionKey, 'agent:main:up');
  assert.equal(sample.callId, 'run-1:model:1');
  // The daemon asked upstream for what it records.
  const sent = fake.requests.at(-1)!.body;
  assert.equal(sent.logprobs, true);
  assert.equal(sent.return_token_ids, true);
  assert.equal(sent.model, 'fake-model');
});

test('streaming with include_usage: chunks, tool calls passed through, usage last', async () => {
  fake.script = [{ text: 'Let me run it.', toolCalls: [{ id: 'call_1', name: 'exec', arguments: '{"command":"false"}' }] }];
  const stream = await client.chat.completions.create(
    {
      model: 'fake-model',
      messages: [{ role: 'user', content: 'run false' }],
      stream: true,
      stream_options: { include_usage: true },
      tools: [{ type: 'function', function: { name: 'exec', parameters: { type: 'object' } } }],
      tool_choice: 'auto',
    },
    { headers: optedIn },
  );
  let text = '';
  let id = '';
  let finish: string | null = null;
  let usage: unknown;
  const calls: { id?: string; name?: string; args: string }[] = [];
  for await (const chunk of stream) {
    id = chunk.id;
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    text += choice.delta.content ?? '';
    for (const c of choice.delta.tool_calls ?? []) {
      const call = (calls[c.index] ??= { args: '' });
      call.id ??= c.id;
      call.name ??= c.function?.name;
      call.args += c.function?.arguments ?? '';
    }
    finish = choice.finish_reason ?? finish;
  }
  assert.equal(text, 'Let me run it.');
  assert.deepEqual(calls, [{ id: 'call_1', name: 'exec', args: '{"command":"false"}' }]);
  assert.equal(finish, 'tool_calls');
  // The fake counts one prompt token per character of the messages' JSON, at most 64.
  const promptTokens = Math.min(64, [...JSON.stringify(fake.requests.at(-1)!.body.messages)].length);
  assert.deepEqual(usage, { prompt_tokens: promptTokens, completion_tokens: 14, total_tokens: promptTokens + 14 });
  // tool_choice is not modelled by the daemon: it is passed through.
  assert.equal(fake.requests.at(-1)!.body.tool_choice, 'auto');
  const sample = await sampleOf(id);
  assert.deepEqual(sample.toolCalls, [{ id: 'call_1', name: 'exec', arguments: '{"command":"false"}' }]);
  assert.equal(sample.responseTokens.length, 14);
});

test('a session that did not opt in is served but nothing is stored', async () => {
  fake.script = [{ text: 'private' }];
  const res = await client.chat.completions.create(
    { model: 'fake-model', messages: [{ role: 'user', content: 'secret' }] },
    { headers: { ...optedIn, 'x-clawrl-session-key': 'agent:main:private', 'x-clawrl-opt-in': '0' } },
  );
  assert.equal(res.choices[0]!.message.content, 'private');
  const plain = await client.chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: 'no headers' }] });
  await daemon.samplesRecorded();
  assert.equal(daemon.store.samples.get(res.id), undefined);
  assert.equal(daemon.store.samples.get(plain.id), undefined);
});

test('bad requests get OpenAI-shaped errors with the right status', async () => {
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${daemon.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${daemon.token}`, 'content-type': 'application/json', ...headers },
      body,
    });
  const cases: [Promise<Response>, number, RegExp][] = [
    [post('{not json'), 400, /not valid JSON/],
    [post(JSON.stringify({ model: 'm' })), 400, /messages must be a non-empty array/],
    [post(JSON.stringify({ model: 'm', messages: [{ role: 'wizard', content: 'x' }] })), 400, /messages\[0\].role must be one of/],
    [post(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }], temperature: 9 })), 400, /temperature must be a number from 0 to 2/],
    [post(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }], n: 3 })), 400, /only n = 1/],
    [post(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }], top_logprobs: 3 })), 400, /requires logprobs/],
    [post(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(2 * 1024 * 1024) }] })), 413, /exceeds the limit/],
    [post('{}', { authorization: 'Bearer nope' }), 401, /bearer token/],
    [fetch(`${daemon.url}/v1/nothing`, { headers: { authorization: `Bearer ${daemon.token}` } }), 404, /no route/],
  ];
  for (const [pending, status, message] of cases) {
    const res = await pending;
    assert.equal(res.status, status);
    const body = (await res.json()) as { error: { message: string; type: string } };
    assert.match(body.error.message, message);
    assert.equal(typeof body.error.type, 'string');
  }
});

test('without a backend /v1 answers 503; an upstream failure is a 502 naming it', async () => {
  const bare = await startDaemon({ dataDir: tempDir(), port: 0, log: createLogger('silent') });
  const res = await fetch(`${bare.url}/v1/models`, { headers: { authorization: `Bearer ${bare.token}` } });
  assert.equal(res.status, 503);
  await bare.close();

  const dead = await UpstreamBackend.create({ url: 'http://127.0.0.1:9/v1', model: 'x' });
  const broken = await startDaemon({ dataDir: tempDir(), port: 0, log: createLogger('silent'), backend: dead });
  const r = await fetch(`${broken.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${broken.token}` },
    body: JSON.stringify({ model: 'x', messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(r.status, 502);
  assert.match(((await r.json()) as { error: { message: string } }).error.message, /upstream http:\/\/127.0.0.1:9\/v1\/chat\/completions failed/);
  await broken.close();
});

test('streams with LF, CRLF or CR line endings all come back whole, with every token', async () => {
  const text = 'Line endings, all three.';
  for (const lineEnding of ['\n', '\r\n', '\r'] as const) {
    const server = await startFakeVllm([{ text, toolCalls: [{ id: 'call_9', name: 'exec', arguments: '{"command":"ls"}' }] }], 'fake-model', { lineEnding });
    const backend = await UpstreamBackend.create({ url: server.url });
    try {
      const chunks: string[] = [];
      const result = await backend.generate(
        { messages: [{ role: 'user', content: 'hi' }], sampling: { temperature: 1, topP: 1, maxTokens: 64, stop: [], topLogprobs: 0 } },
        (chunk) => chunks.push(chunk.text),
      );
      const name = JSON.stringify(lineEnding);
      assert.equal(chunks.join(''), text, name);
      assert.equal(result.text, text, name);
      assert.deepEqual(result.responseTokens, [...text].map((c) => c.codePointAt(0)), name);
      assert.equal(result.logprobs.length, text.length, name);
      assert.deepEqual(result.toolCalls, [{ id: 'call_9', name: 'exec', arguments: '{"command":"ls"}' }], name);
      assert.equal(result.finishReason, 'tool_calls', name);
    } finally {
      await backend.close();
      await server.close();
    }
  }
});

test('a stream cut mid-event is an error naming upstream, not a short reply', async () => {
  for (const cutMidEvent of ['end', 'destroy'] as const) {
    const server = await startFakeVllm([{ text: 'This reply is cut short.', cutMidEvent }]);
    const backend = await UpstreamBackend.create({ url: server.url });
    const cut = await startDaemon({ dataDir: tempDir(), port: 0, log: createLogger('silent'), backend });
    try {
      const chunks: string[] = [];
      await assert.rejects(
        backend.generate({ messages: [{ role: 'user', content: 'hi' }], sampling: { temperature: 1, topP: 1, maxTokens: 64, stop: [], topLogprobs: 0 } }, (c) => chunks.push(c.text)),
        cutMidEvent === 'end' ? /ended its stream mid-reply \(no finish_reason and no \[DONE\]\)/ : /broke off its stream mid-reply/,
      );
      assert.deepEqual(chunks, ['Th']);
      // Through /v1 the client gets the first chunk, then the error in-band, and nothing is stored.
      const res = await fetch(`${cut.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${cut.token}`, ...optedIn },
        body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }], stream: true }),
      });
      assert.equal(res.status, 200);
      const body = await res.text();
      assert.match(body, /"content":"Th"/);
      assert.match(body, /data: \{"error":\{"message":"upstream http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions (ended|broke off) its stream mid-reply/);
      assert.doesNotMatch(body, /^data: \[DONE\]/m);
      await cut.samplesRecorded();
      assert.equal(cut.store.samples.getCount(), 0);
    } finally {
      await cut.close();
      await server.close();
    }
  }
});

test('an upstream reply that is not JSON is an error that quotes it, streaming or not', async () => {
  // A server that answers 200 with an HTML page, or streams events of it.
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d)).on('end', () => {
      const stream = (JSON.parse(body) as { stream?: boolean }).stream;
      res.writeHead(200, { 'content-type': stream ? 'text/event-stream' : 'text/html' });
      res.end(stream ? 'data: <html>busy</html>\n\n' : '<html>busy</html>');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const backend = await UpstreamBackend.create({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, model: 'm' });
  const request = { messages: [{ role: 'user' as const, content: 'hi' }], sampling: { temperature: 1, topP: 1, maxTokens: 8, stop: [], topLogprobs: 0 } };
  try {
    await assert.rejects(backend.generate(request), (err: Error) => err instanceof UpstreamError && err.status === 502 && /sent a reply that is not JSON: "<html>busy<\/html>"/.test(err.message));
    await assert.rejects(backend.generate(request, () => {}), /sent a reply that is not JSON: "<html>busy<\/html>"/);
  } finally {
    await backend.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
