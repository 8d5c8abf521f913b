// A FAKE of a vLLM OpenAI-compatible server, for tests: a real HTTP server on loopback that
// answers /v1/chat/completions from a script of replies (text or tool calls), streaming or
// not, with per-token logprobs, token ids (`return_token_ids`) and prompt token ids, as vLLM
// does. It records every request it receives.
//
// With `lora`, it also loads and unloads LoRA adapters at runtime as vLLM
// (VLLM_ALLOW_RUNTIME_LORA_UPDATING: /v1/load_lora_adapter, requests name the adapter as their
// model) or SGLang (/load_lora_adapter, requests name it in `lora_path`) do, with their error
// shapes; a request naming an adapter that is not loaded is refused, as the real servers do.
import { existsSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface ScriptedReply {
  text?: string;
  toolCalls?: { id: string; name: string; arguments: string }[];
  /** Answer once this resolves (a long generation, that lasts until the test ends it). */
  held?: Promise<void>;
  /** Streaming: fail after the first chunk with this error event, as vLLM does when its engine fails. */
  failMidStream?: string;
  /**
   * Streaming: after the first chunk, send half of the next event and stop: 'end' ends the
   * response cleanly (only the missing [DONE] tells), 'destroy' drops the connection (a crash).
   */
  cutMidEvent?: 'end' | 'destroy';
}

export interface FakeVllm {
  url: string;
  requests: { headers: Record<string, string | string[] | undefined>; body: Record<string, unknown> }[];
  /** Replies used in order (the last one repeats), or chosen from each request's body. */
  script: ScriptedReply[] | ((body: Record<string, unknown>) => ScriptedReply);
  /** Loaded adapters: name -> path. */
  adapters: Map<string, string>;
  /** Every load/unload call, in order, with the status it got. */
  loraCalls: { op: 'load' | 'unload'; name: string; path?: string; status: number }[];
  close(): Promise<void>;
}

export interface FakeVllmOptions {
  /** Runtime LoRA loading, as vLLM or SGLang; none by default (the routes answer 404). */
  lora?: 'vllm' | 'sglang';
  /** The prompt ids a request reports (default: one per character of its messages' JSON). */
  promptIds?: (body: Record<string, unknown>) => number[];
  /** Line ending of the event stream: SSE allows all three; vLLM sends LF (the default). */
  lineEnding?: '\n' | '\r\n' | '\r';
}

// One "token" per character keeps the fake's token ids checkable: id = code point.
const tokenize = (text: string) => [...text].map((ch) => ({ id: ch.codePointAt(0)!, text: ch }));
const logprobOf = (id: number) => -((id % 7) + 1) / 10;

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

export async function startFakeVllm(script: FakeVllm['script'] = [{ text: 'Hello from the fake.' }], model = 'fake-model', opts: FakeVllmOptions = {}): Promise<FakeVllm> {
  const fake: FakeVllm = { url: '', requests: [], script, adapters: new Map(), loraCalls: [], close: async () => {} };
  const loraRoute = opts.lora === 'vllm' ? '/v1/' : opts.lora === 'sglang' ? '/' : null;
  // Each server's error shape: vLLM's error object, SGLang's {success, error_message}.
  const loraError = (res: ServerResponse, status: number, message: string) =>
    json(res, status, opts.lora === 'vllm' ? { error: { message, type: status === 404 ? 'NotFoundError' : 'BadRequestError', code: status } } : { success: false, error_message: message });
  const loraCall = (res: ServerResponse, op: 'load' | 'unload', body: { lora_name?: string; lora_path?: string }) => {
    const name = body.lora_name ?? '';
    const record = (status: number) => fake.loraCalls.push({ op, name, ...(op === 'load' && { path: body.lora_path }), status });
    if (op === 'load') {
      if (fake.adapters.has(name)) return record(400), loraError(res, 400, `The lora adapter '${name}' has already been loaded.`);
      if (!body.lora_path || !existsSync(join(body.lora_path, 'adapter_config.json'))) return record(404), loraError(res, 404, `Loading lora ${name} failed: No adapter found for ${body.lora_path}`);
      fake.adapters.set(name, body.lora_path);
    } else {
      if (!fake.adapters.delete(name)) return record(404), loraError(res, 404, `The lora adapter '${name}' cannot be found.`);
    }
    record(200);
    if (opts.lora === 'sglang') return json(res, 200, { success: true, error_message: '', loaded_adapters: Object.fromEntries(fake.adapters) });
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`Success: LoRA adapter '${name}' ${op === 'load' ? 'added' : 'removed'} successfully.`);
  };
  let served = 0;
  const server: Server = createServer(async (req, res) => {
    const parts: Buffer[] = [];
    for await (const p of req) parts.push(p as Buffer);
    if (req.url === '/v1/models') return json(res, 200, { object: 'list', data: [{ id: model, object: 'model' }] });
    const op = loraRoute && req.method === 'POST' && /^(load|unload)_lora_adapter$/.exec(req.url?.slice(loraRoute.length) ?? '')?.[1];
    if (op && req.url!.startsWith(loraRoute)) return loraCall(res, op as 'load' | 'unload', JSON.parse(Buffer.concat(parts).toString('utf8')));
    if (req.url !== '/v1/chat/completions') return json(res, 404, { detail: 'Not Found' });
    const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>;
    fake.requests.push({ headers: req.headers, body });
    // Without `lora` any model name is served (judge tests name their own).
    const adapter = opts.lora === 'sglang' ? (body.lora_path as string | undefined) : opts.lora && body.model !== model ? (body.model as string) : undefined;
    if (adapter !== undefined && !fake.adapters.has(adapter)) {
      return opts.lora === 'vllm'
        ? json(res, 404, { error: { message: `The model \`${adapter}\` does not exist.`, type: 'NotFoundError', code: 404 } })
        : json(res, 400, { error: { message: `LoRA adapter ${adapter} is not loaded`, code: 400 } });
    }
    const { script } = fake;
    const reply = typeof script === 'function' ? script(body) : script[Math.min(served++, script.length - 1)]!;
    if (reply.held) await reply.held;
    const text = reply.text ?? '';
    const tokens = tokenize(text);
    const promptIds = opts.promptIds?.(body) ?? tokenize(JSON.stringify(body.messages)).slice(0, 64).map((t) => t.id);
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
    const eol = opts.lineEnding ?? '\n';
    // An event's last line ending goes in a write of its own when it is CRLF: a reader must not
    // take the CR alone for the end of the line and the LF for an empty line after it.
    const sendRaw = (event: string) => {
      const text = `${event}${eol}${eol}`;
      if (eol.length === 1) return res.write(text);
      res.write(text.slice(0, -1));
      return res.write(text.slice(-1));
    };
    const send = (obj: unknown) => sendRaw(`data: ${JSON.stringify(obj)}`);
    const chunk = (delta: unknown, extra: Record<string, unknown> = {}) => ({ id: 'fake-1', object: 'chat.completion.chunk', model, choices: [{ index: 0, delta, finish_reason: null, ...extra }] });
    send({ ...chunk({ role: 'assistant', content: '' }), prompt_token_ids: promptIds });
    // Two tokens per chunk, split across network writes, as a real server's batching would.
    for (let i = 0; i < tokens.length; i += 2) {
      const piece = tokens.slice(i, i + 2);
      send(chunk({ content: piece.map((t) => t.text).join('') }, { logprobs: logprobs(piece), token_ids: piece.map((t) => t.id) }));
      if (reply.failMidStream) {
        send({ error: { message: reply.failMidStream, type: 'InternalServerError', code: 500 } });
        return res.end(`data: [DONE]${eol}${eol}`);
      }
      if (reply.cutMidEvent) {
        const next = `data: ${JSON.stringify(chunk({ content: 'never whole' }))}`;
        res.write(next.slice(0, next.length / 2));
        // Flushed before the cut, so the reader has the first chunk and half an event.
        return void setTimeout(() => (reply.cutMidEvent === 'end' ? res.end() : res.socket?.destroy()), 50);
      }
    }
    if (toolCalls) send(chunk({ tool_calls: toolCalls }));
    send(chunk({}, { finish_reason: finish }));
    if ((body.stream_options as { include_usage?: boolean } | undefined)?.include_usage) send({ id: 'fake-1', object: 'chat.completion.chunk', model, choices: [], usage });
    res.end(`data: [DONE]${eol}${eol}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  // Keep-alive clients (the daemon's agent) would hold server.close() open: end them too.
  fake.close = () => new Promise((resolve) => (server.close(() => resolve()), server.closeAllConnections()));
  return fake;
}
