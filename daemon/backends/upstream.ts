// Serving through an existing OpenAI-compatible server (vLLM, SGLang, llama.cpp server).
// Each request asks the server for logprobs and token ids, and records exactly what it returns.
// vLLM returns token ids with `return_token_ids` (prompt_token_ids, choices[].token_ids); other
// servers ignore the field and the sample keeps its text and logprobs without ids.
//
// New weight versions are hot-loaded into the server as LoRA adapters named `clawrl-<version>`
// (vLLM: POST /v1/load_lora_adapter, then requests name the adapter as their model; SGLang:
// POST /load_lora_adapter, then requests name it in `lora_path`). Which of the two the server is
// shows at the first load. An adapter no longer served is unloaded once its requests are done.
import { request as httpRequest, Agent as HttpAgent, type IncomingMessage } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createParser } from 'eventsource-parser';
import type { Logger } from '../log.ts';
import { UpstreamError, type ChatMessage, type FinishReason, type GenerateChunk, type GenerateRequest, type GenerateResult, type ServingBackend, type TokenLogprob, type ToolCall, type ToolSpec } from './types.ts';
import { errorMessage } from '../errors.ts';

export interface UpstreamOptions {
  /** Base URL of the server's OpenAI API, e.g. http://127.0.0.1:8000/v1 */
  url: string;
  /** Model name to ask the server for; defaults to the first of its /v1/models. */
  model?: string;
  apiKey?: string;
  timeoutMs?: number;
  /**
   * The weights folder as the server sees it, when that differs from the daemon's (a server in a
   * container, or on another host with a shared mount): version vNNNNNN loads from <this>/vNNNNNN.
   */
  adapterRoot?: string;
  /** Adapters kept loaded at the server: the serving one and the ones before it (default 2). */
  keepAdapters?: number;
  log?: Logger;
}

/** The two runtime LoRA APIs: where to load and unload (beside the OpenAI API, or above it), and how a request names the adapter. */
const LORA_APIS = {
  vllm: { path: '', adapterField: 'model' },
  sglang: { path: '../', adapterField: 'lora_path' },
} as const;
type LoraApi = keyof typeof LORA_APIS;

const LORA_HELP =
  'the upstream server cannot load LoRA adapters at runtime. vLLM: start it with --enable-lora --max-lora-rank <r> and ' +
  'the environment VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; SGLang: --enable-lora --max-lora-rank <r> --lora-target-modules all';

interface OpenAIToolCallDelta {
  index?: number;
  id?: string;
  function?: { name?: string; arguments?: string };
}

interface OpenAILogprob {
  token: string;
  logprob: number;
  top_logprobs?: { token: string; logprob: number }[];
}

interface OpenAIChoice {
  message?: { content?: string | null; tool_calls?: OpenAIToolCallDelta[] };
  delta?: { content?: string | null; tool_calls?: OpenAIToolCallDelta[] };
  logprobs?: { content?: OpenAILogprob[] | null } | null;
  finish_reason?: string | null;
  token_ids?: number[] | null;
}

interface OpenAIResponse {
  choices?: OpenAIChoice[];
  prompt_token_ids?: number[] | null;
  error?: { message?: string };
  /** Older vLLM's error shape: {object: "error", message}. */
  object?: string;
  message?: string;
}

function toOpenAIMessage(m: ChatMessage): Record<string, unknown> {
  return {
    role: m.role,
    content: m.content,
    ...(m.name !== undefined && { name: m.name }),
    ...(m.toolCallId !== undefined && { tool_call_id: m.toolCallId }),
    ...(m.toolCalls?.length && {
      tool_calls: m.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })),
    }),
  };
}

function toOpenAITool(t: ToolSpec): Record<string, unknown> {
  return { type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters } };
}

/** One streamed event at most (a chunk is a few tokens; a whole tool call's arguments fit easily). */
const MAX_EVENT_CHARS = 16 * 1024 * 1024;

/** A reply body or one streamed event; a server that sends something else gets a clear error. */
function parseReply<T = OpenAIResponse>(text: string, where: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new UpstreamError(`${where} sent a reply that is not JSON: ${JSON.stringify(text.slice(0, 200))}`, 502);
  }
}

/** `token_id:123` is how vLLM names tokens with return_tokens_as_token_ids. */
function tokenIdOf(token: string): number {
  const m = /^token_id:(\d+)$/.exec(token);
  return m ? Number(m[1]) : -1;
}

/** Folds a stream of OpenAI choices (or one whole message) into a GenerateResult. */
class Accumulator {
  text = '';
  tokens: TokenLogprob[] = [];
  tokenIds: number[] = [];
  promptTokens: number[] = [];
  finishReason: FinishReason = 'stop';
  /** A choice said why it finished: the reply is whole. */
  finished = false;
  private calls: ToolCall[] = [];

  add(body: OpenAIResponse): GenerateChunk | undefined {
    // A server that fails mid-stream sends an error event (then [DONE]): the reply is not whole.
    if (body.error || body.object === 'error') throw new UpstreamError(`upstream failed mid-reply: ${body.error?.message ?? body.message ?? 'unknown error'}`, 502);
    if (body.prompt_token_ids) this.promptTokens = body.prompt_token_ids;
    const choice = body.choices?.[0];
    if (!choice) return undefined;
    const part = choice.delta ?? choice.message ?? {};
    const text = part.content ?? '';
    this.text += text;
    for (const delta of part.tool_calls ?? []) {
      const i = delta.index ?? this.calls.length;
      const call = (this.calls[i] ??= { id: '', name: '', arguments: '' });
      if (delta.id) call.id = delta.id;
      if (delta.function?.name) call.name += delta.function.name;
      if (delta.function?.arguments) call.arguments += delta.function.arguments;
    }
    if (choice.token_ids) this.tokenIds.push(...choice.token_ids);
    const tokens = (choice.logprobs?.content ?? []).map(
      (lp): TokenLogprob => ({
        token: tokenIdOf(lp.token),
        text: lp.token,
        logprob: lp.logprob,
        ...(lp.top_logprobs?.length && { top: lp.top_logprobs.map((t) => ({ token: tokenIdOf(t.token), text: t.token, logprob: t.logprob })) }),
      }),
    );
    this.tokens.push(...tokens);
    if (choice.finish_reason) this.finished = true;
    if (choice.finish_reason === 'length' || choice.finish_reason === 'tool_calls') this.finishReason = choice.finish_reason;
    return text || tokens.length ? { text, tokens } : undefined;
  }

  result(weightVersion: string): GenerateResult {
    const toolCalls = this.calls.filter(Boolean);
    const fromLogprobs = this.tokens.map((t) => t.token);
    return {
      promptTokens: this.promptTokens,
      responseTokens: this.tokenIds.length ? this.tokenIds : fromLogprobs.every((id) => id >= 0) ? fromLogprobs : [],
      logprobs: this.tokens.map((t) => t.logprob),
      tokens: this.tokens,
      text: this.text,
      toolCalls,
      finishReason: toolCalls.length ? 'tool_calls' : this.finishReason,
      weightVersion,
      promptTruncated: false,
    };
  }
}

/** Serves only: training (and scoring given tokens) needs a trainer beside it (SplitBackend). */
export class UpstreamBackend implements ServingBackend {
  readonly name = 'upstream';
  private readonly base: URL;
  private readonly agent: HttpAgent;
  private model: string;
  private version = 'base';
  /** The adapter requests name now, and where the server reads it; null: the base model. */
  private adapter: { name: string; path: string } | null = null;
  /** A second adapter served beside it, to requests that ask for it (a canary rollout); vLLM and SGLang serve adapters by name side by side. */
  private canary: { name: string | null; version: string } | null = null;
  private loraApi: LoraApi | null = null;
  /** Adapters this daemon loaded at the server, oldest first. */
  private readonly loaded = new Set<string>();
  /** Requests in flight per adapter: an adapter is unloaded only when none uses it. */
  private readonly inFlight = new Map<string, number>();
  /** Unloads not yet answered: a load of the same name waits for its unload. */
  private readonly unloading = new Map<string, Promise<void>>();
  /** Swaps and reloads, one at a time. */
  private swaps: Promise<unknown> = Promise.resolve();
  private reloading: Promise<void> | null = null;
  private reloads = 0;

  private constructor(private readonly opts: UpstreamOptions) {
    this.base = new URL(opts.url.endsWith('/') ? opts.url : opts.url + '/');
    // Keep-alive: a fresh TCP connection per request would dominate the proxy's added latency.
    this.agent = this.base.protocol === 'https:' ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.model = opts.model ?? '';
  }

  static async create(opts: UpstreamOptions): Promise<UpstreamBackend> {
    const backend = new UpstreamBackend(opts);
    if (!backend.model) {
      const res = await backend.call('GET', 'models');
      const body = parseReply<{ data?: { id: string }[] }>(await readAll(res), `upstream ${opts.url} models`);
      const first = body.data?.[0]?.id;
      if (!first) throw new Error(`upstream ${opts.url} lists no models; pass --upstream-model`);
      backend.model = first;
    }
    return backend;
  }

  models(): string[] {
    return [this.model];
  }

  currentVersion(): string {
    return this.version;
  }

  async generate(req: GenerateRequest, onChunk?: (chunk: GenerateChunk) => void): Promise<GenerateResult> {
    // The version and adapter at the start: a swap during the request does not change its model.
    const served = req.canary && this.canary ? { version: this.canary.version, adapter: this.canary.name } : { version: this.version, adapter: this.adapter?.name ?? null };
    const reloads = this.reloads;
    try {
      return await this.generateOn(served, req, onChunk);
    } catch (err) {
      const lost = served.adapter !== null && err instanceof UpstreamError && (err.status === 404 || err.status === 400) && err.message.includes(served.adapter);
      if (!lost) throw err;
      // The server no longer has the adapter (it restarted): load it again, once, and retry
      // (nothing was streamed: the request failed at its start). A lost canary is not reloaded:
      // the retry is served by the main adapter.
      if (this.reloads === reloads) await this.reload(served.adapter!);
      return this.generateOn({ version: this.version, adapter: this.adapter?.name ?? null }, req, onChunk);
    }
  }

  private async generateOn(served: { version: string; adapter: string | null }, req: GenerateRequest, onChunk?: (chunk: GenerateChunk) => void): Promise<GenerateResult> {
    const stream = onChunk !== undefined;
    const { sampling } = req;
    const { adapter } = served;
    const body = {
      ...req.passthrough,
      model: this.model,
      ...(adapter && { [LORA_APIS[this.loraApi!].adapterField]: adapter }),
      messages: req.messages.map(toOpenAIMessage),
      ...(req.tools?.length && { tools: req.tools.map(toOpenAITool) }),
      temperature: sampling.temperature,
      top_p: sampling.topP,
      max_tokens: sampling.maxTokens,
      ...(sampling.stop.length && { stop: sampling.stop }),
      ...(sampling.seed !== undefined && { seed: sampling.seed }),
      logprobs: true,
      ...(sampling.topLogprobs > 0 && { top_logprobs: sampling.topLogprobs }),
      return_token_ids: true,
      stream,
      ...(stream && { stream_options: { include_usage: true } }),
    };
    if (adapter) this.inFlight.set(adapter, (this.inFlight.get(adapter) ?? 0) + 1);
    try {
      return await this.complete(body, served.version, req.signal, onChunk);
    } finally {
      if (adapter) this.release(adapter);
    }
  }

  private async complete(body: Record<string, unknown>, version: string, signal?: AbortSignal, onChunk?: (chunk: GenerateChunk) => void): Promise<GenerateResult> {
    const res = await this.call('POST', 'chat/completions', body, signal);
    const where = `upstream ${new URL('chat/completions', this.base).href}`;
    const acc = new Accumulator();
    if (!onChunk) {
      acc.add(parseReply(await readAll(res), where));
      return acc.result(version);
    }
    // Any of the line endings SSE allows (LF, CRLF, CR), events split across reads, multi-line data.
    let done = false;
    const parser = createParser({
      onEvent: ({ data }) => {
        if (data === '[DONE]') return void (done = true);
        const chunk = acc.add(parseReply(data, where));
        if (chunk) onChunk(chunk);
      },
      onError: (err) => {
        // Unknown fields are for other clients to ignore; an overlong event is a broken stream.
        if (err.type === 'max-buffer-size-exceeded') throw new UpstreamError(`${where} sent an event over ${MAX_EVENT_CHARS} characters`, 502);
      },
      maxBufferSize: MAX_EVENT_CHARS,
    });
    res.setEncoding('utf8');
    try {
      for await (const piece of res as AsyncIterable<string>) parser.feed(piece);
    } catch (err) {
      if (err instanceof UpstreamError || signal?.aborted) throw err;
      throw new UpstreamError(`${where} broke off its stream mid-reply: ${errorMessage(err)}`, 502);
    }
    // A stream that ends before both is cut short, and what came of it is not the whole reply.
    if (!done && !acc.finished) throw new UpstreamError(`${where} ended its stream mid-reply (no finish_reason and no [DONE])`, 502);
    return acc.result(version);
  }

  /** Hot-loads the version into the server (one swap at a time) and names it in later requests. */
  loadAdapter(dir: string | null, version: string): Promise<void> {
    return this.queue(() => this.swap(dir, version));
  }

  /** Hot-loads a canary version beside the serving one (null: stops serving it). */
  loadCanary(dir: string | null, version: string | null): Promise<void> {
    return this.queue(async () => {
      this.canary = version === null ? null : { name: dir === null ? null : await this.loadNamed(dir, version), version };
      this.unloadStale();
    });
  }

  private queue(work: () => Promise<void>): Promise<void> {
    const run = this.swaps.then(work);
    this.swaps = run.catch(() => {});
    return run;
  }

  private async swap(dir: string | null, version: string): Promise<void> {
    const adapter = dir === null ? null : { name: await this.loadNamed(dir, version), path: this.serverPath(dir) };
    const previous = this.adapter?.name;
    this.adapter = adapter;
    this.version = version;
    if (previous !== adapter?.name) this.unloadStale();
  }

  private serverPath(dir: string): string {
    return this.opts.adapterRoot ? join(this.opts.adapterRoot, basename(dir)) : dir;
  }

  /** Loads a version at the server (unless this daemon did already) and returns its adapter name. */
  private async loadNamed(dir: string, version: string): Promise<string> {
    const name = `clawrl-${version}`;
    // A name left loaded by an earlier run of the daemon may hold other weights: load it afresh.
    if (!this.loaded.has(name)) await this.loadAtServer(name, this.serverPath(dir));
    this.loaded.delete(name);
    this.loaded.add(name); // now the newest
    return name;
  }

  /** Loads the serving adapter again after the server lost it; serves the base model if it cannot. */
  private reload(name: string): Promise<void> {
    this.reloading ??= this.queue(async () => {
      const adapter = this.adapter;
      if (adapter?.name !== name) return; // swapped since: requests name the new one
      this.loaded.delete(name);
      try {
        await this.loadAtServer(name, adapter.path);
        this.loaded.add(name);
        this.opts.log?.warn('the upstream server had lost the serving adapter (a restart?); loaded it again', { adapter: name });
      } catch (err) {
        this.adapter = null;
        this.version = 'base';
        this.opts.log?.error(`the upstream server lost adapter ${name} and could not load it again: ${errorMessage(err)}; serving the base model`);
      }
    }).finally(() => {
      this.reloading = null;
      this.reloads++;
    });
    return this.reloading;
  }

  private async loadAtServer(name: string, path: string): Promise<void> {
    await this.unloading.get(name);
    const load = (api: LoraApi) => this.loraCall(api, 'load', { lora_name: name, lora_path: path });
    let api = this.loraApi;
    let res = api ? await load(api) : null;
    if (!api) {
      for (const candidate of Object.keys(LORA_APIS) as LoraApi[]) {
        res = await load(candidate);
        if (!res.missing) {
          api = candidate;
          break;
        }
      }
      if (!api) throw new UpstreamError(`cannot hot-load ${name} from ${path}: ${LORA_HELP}`, 501);
      this.loraApi = api;
      this.opts.log?.info('upstream server loads LoRA adapters at runtime', { api });
    }
    if (!res!.ok) {
      // Most often "already loaded" (by an earlier run): unload that copy and load once more.
      await this.loraCall(api, 'unload', { lora_name: name });
      res = await load(api);
    }
    if (!res!.ok) throw new UpstreamError(`upstream could not load adapter ${name} from ${path}: ${res!.message}`, 502);
  }

  /** POST to the server's load/unload endpoint; `missing` when the server has no such endpoint. */
  private async loraCall(api: LoraApi, op: 'load' | 'unload', body: Record<string, string>): Promise<{ ok: boolean; missing: boolean; message: string }> {
    const url = new URL(`${LORA_APIS[api].path}${op}_lora_adapter`, this.base);
    const res = await this.send('POST', url, body);
    const text = await readAll(res);
    if (res.statusCode! < 400) return { ok: true, missing: false, message: text };
    const message = messageInBody(text);
    // A route the server lacks answers a bare 404 ({"detail": "Not Found"}); a failed load says why.
    return { ok: false, missing: (res.statusCode === 404 || res.statusCode === 405) && message === undefined, message: message ?? text.slice(0, 500) };
  }

  private release(adapter: string): void {
    const left = (this.inFlight.get(adapter) ?? 1) - 1;
    if (left > 0) return void this.inFlight.set(adapter, left);
    this.inFlight.delete(adapter);
    this.unloadStale();
  }

  /** Unloads adapters beyond the newest keepAdapters that no request uses. */
  private unloadStale(): void {
    const keep = this.opts.keepAdapters ?? 2;
    const names = [...this.loaded];
    for (const name of names.slice(0, Math.max(0, names.length - keep))) {
      if (name !== this.adapter?.name && name !== this.canary?.name && !this.inFlight.has(name)) void this.unload(name);
    }
  }

  private unload(name: string): Promise<void> {
    this.loaded.delete(name);
    const warn = (message: string) => this.opts.log?.warn('upstream did not unload an old adapter', { adapter: name, message });
    const done = this.loraCall(this.loraApi!, 'unload', { lora_name: name })
      .then((r) => void (r.ok || warn(r.message)))
      .catch((err: unknown) => warn(errorMessage(err)))
      .finally(() => this.unloading.delete(name));
    this.unloading.set(name, done);
    return done;
  }

  async close(): Promise<void> {
    // Best effort, briefly: this run's adapters are no use to the server after it (a restarted
    // daemon loads what it serves again).
    const unloaded = this.swaps.then(() => Promise.all([...[...this.loaded].map((name) => this.unload(name)), ...this.unloading.values()]));
    await Promise.race([unloaded, sleep(2000, undefined, { ref: false })]);
    this.agent.destroy();
  }

  /** A request to the server's OpenAI API; an error status rejects with the server's message. */
  private async call(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<IncomingMessage> {
    const url = new URL(path, this.base);
    const res = await this.send(method, url, body, signal);
    if (res.statusCode! < 400) return res;
    const text = await readAll(res).catch(() => '');
    throw new UpstreamError(`upstream ${url.href} answered ${res.statusCode}: ${messageInBody(text) ?? text.slice(0, 500)}`, res.statusCode!);
  }

  private send(method: string, url: URL, body?: unknown, signal?: AbortSignal): Promise<IncomingMessage> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          agent: this.agent,
          signal,
          timeout: this.opts.timeoutMs ?? 600_000,
          headers: {
            ...(payload !== undefined && { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
            ...(this.opts.apiKey && { authorization: `Bearer ${this.opts.apiKey}` }),
          },
        },
        resolve,
      );
      req.on('timeout', () => req.destroy(new Error(`upstream ${url.href} timed out`)));
      req.on('error', (err) => reject(new UpstreamError(`upstream ${url.href} failed: ${err.message}`, 502)));
      req.end(payload);
    });
  }
}

/** The message of an error body: OpenAI's {error: {message}}, older vLLM's {message}, SGLang's {error_message}. */
function messageInBody(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { error?: { message?: string }; message?: string; error_message?: string };
    return body.error?.message ?? body.message ?? body.error_message ?? undefined;
  } catch {
    return undefined;
  }
}

async function readAll(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of res) parts.push(part as Buffer);
  return Buffer.concat(parts).toString('utf8');
}
