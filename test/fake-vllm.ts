// A FAKE of a vLLM OpenAI-compatible server, for tests: a real HTTP server on loopback that
// answers /v1/chat/completions from a script of replies (text or tool calls), streaming or
// not, with per-token logprobs, token ids (`return_token_ids`) and prompt token ids, as vLLM
// does. It records every request it receives.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ScriptedReply {
  text?: string;
  toolCalls?: { id: string; name: string; arguments: string }[];
}

export interface FakeVllm {
  url: string;
  requests: { headers: Record<string, string | string[] | undefined>; body: Record<string, unknown> }[];
  /** Replies used in order (the last one repeats), or chosen from each request's body. */
  script: ScriptedReply[] | ((body: Record<string, unknown>) => ScriptedReply);
  close(): Promise<void>;
}

// One "token" per character keeps the fake's token ids checkable: id = code point.
const tokenize = (text: string) => [...text].map((ch) => ({ id: ch.codePointAt(0)!, text: ch }));
const logprobOf = (id: number) => -((id % 7) + 1) / 10;

export async function startFakeVllm(script: FakeVllm['script'] = [{ text: 'Hello from the fake.' }], model = 'fake-model'): Promise<FakeVllm> {
  const fake: FakeVllm = { url: '', requests: [], script, close: async () => {} };
  let served = 0;
  const server: Server = createServer(async (req, res) => {
    const parts: Buffer[] = [];
    for await (const p of req) parts.push(p as Buffer);
    if (req.url === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ object: 'list', data: [{ id: model, object: 'model' }] }));
    }
    if (req.url !== '/v1/chat/completions') {
      res.writeHead(404);
      return res.end();
    }
    const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>;
    fake.requests.push({ headers: req.headers, body });
    const { script } = fake;
    const reply = typeof script === 'function' ? script(body) : script[Math.min(served++, script.length - 1)]!;
    const text = reply.text ?? '';
    const tokens = tokenize(text);
    const promptIds = tokenize(JSON.stringify(body.messages)).slice(0, 64).map((t) => t.id);
    const logprobs = (toks: typeof tokens) => ({
      content: toks.map((t) => ({ token: t.text, logprob: logprobOf(t.id), bytes: [...Buffer.from(t.text)], top_logprobs: [] })),
    });
    const finish = reply.toolCalls?.length ? 'tool_calls' : 'stop';
    const toolCalls = reply.toolCalls?.map((c, index) => ({ index, id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
    const usage = { prompt_tokens: promptIds.length, completion_tokens: tokens.length, total_tokens: promptIds.length + tokens.length };
    if (body.stream !== true) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(
        JSON.stringify({
          id: 'fake-1',
          object: 'chat.completion',
          model,
          prompt_token_ids: promptIds,
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: text || null, ...(toolCalls && { tool_calls: toolCalls.map(({ index: _, ...c }) => c) }) },
              logprobs: logprobs(tokens),
              token_ids: tokens.map((t) => t.id),
              finish_reason: finish,
            },
          ],
          usage,
        }),
      );
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
    const chunk = (delta: unknown, extra: Record<string, unknown> = {}) => ({ id: 'fake-1', object: 'chat.completion.chunk', model, choices: [{ index: 0, delta, finish_reason: null, ...extra }] });
    send({ ...chunk({ role: 'assistant', content: '' }), prompt_token_ids: promptIds });
    // Two tokens per chunk, split across network writes, as a real server's batching would.
    for (let i = 0; i < tokens.length; i += 2) {
      const piece = tokens.slice(i, i + 2);
      send(chunk({ content: piece.map((t) => t.text).join('') }, { logprobs: logprobs(piece), token_ids: piece.map((t) => t.id) }));
    }
    if (toolCalls) send(chunk({ tool_calls: toolCalls }));
    send(chunk({}, { finish_reason: finish }));
    if ((body.stream_options as { include_usage?: boolean } | undefined)?.include_usage) send({ id: 'fake-1', object: 'chat.completion.chunk', model, choices: [], usage });
    res.end('data: [DONE]\n\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  fake.close = () => new Promise((resolve) => server.close(() => resolve()));
  return fake;
}
