// Serving through an existing OpenAI-compatible server (vLLM, SGLang, llama.cpp server).
// Each request asks the server for logprobs and token ids, and records exactly what it returns.
// vLLM returns token ids with `return_token_ids` (prompt_token_ids, choices[].token_ids); other
// servers ignore the field and the sample keeps its text and logprobs without ids.
import { request as httpRequest, Agent as HttpAgent, type IncomingMessage } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import type {
  Backend,
  ChatMessage,
  FinishReason,
  GenerateChunk,
  GenerateRequest,
  GenerateResult,
  TokenLogprob,
  ToolCall,
  ToolSpec,
} from './types.ts';

export interface UpstreamOptions {
  /** Base URL of the server's OpenAI API, e.g. http://127.0.0.1:8000/v1 */
  url: string;
  /** Model name to ask the server for; defaults to the first of its /v1/models. */
  model?: string;
  apiKey?: string;
  timeoutMs?: number;
}

export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

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
  private calls: ToolCall[] = [];

  add(body: OpenAIResponse): GenerateChunk | undefined {
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

export class UpstreamBackend implements Backend {
  readonly name = 'upstream';
  readonly capabilities = { score: false, train: false };
  private readonly base: URL;
  private readonly agent: HttpAgent;
  private model: string;
  private version = 'base';

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
      const body = JSON.parse(await readAll(res)) as { data?: { id: string }[] };
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
    const stream = onChunk !== undefined;
    const { sampling } = req;
    const body = {
      ...req.passthrough,
      model: this.model,
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
    const res = await this.call('POST', 'chat/completions', body, req.signal);
    const acc = new Accumulator();
    if (!stream) {
      acc.add(JSON.parse(await readAll(res)) as OpenAIResponse);
      return acc.result(this.version);
    }
    let buffered = '';
    res.setEncoding('utf8');
    for await (const piece of res as AsyncIterable<string>) {
      buffered += piece;
      let end: number;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        for (const line of event.split('\n')) {
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]') continue;
          const chunk = acc.add(JSON.parse(data) as OpenAIResponse);
          if (chunk) onChunk(chunk);
        }
      }
    }
    return acc.result(this.version);
  }

  encodeChat(): Promise<number[]> {
    return Promise.reject(new Error('the upstream backend cannot tokenize; use --backend torch or embedded to train'));
  }

  score(): Promise<number[]> {
    return Promise.reject(new Error('the upstream backend cannot score tokens; use --backend torch or embedded'));
  }

  trainStep(): Promise<never> {
    return Promise.reject(new Error('the upstream backend serves only; train with --backend torch or embedded'));
  }

  saveAdapter(): Promise<void> {
    return this.trainStep();
  }

  async loadAdapter(_dir: string | null, version: string): Promise<void> {
    this.version = version;
  }

  async loadTrainingAdapter(): Promise<void> {}

  async close(): Promise<void> {
    this.agent.destroy();
  }

  private call(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<IncomingMessage> {
    const url = new URL(path, this.base);
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
        async (res) => {
          if (res.statusCode! < 400) return resolve(res);
          const text = await readAll(res).catch(() => '');
          let message = text.slice(0, 500);
          try {
            message = (JSON.parse(text) as OpenAIResponse).error?.message ?? message;
          } catch {
            // not JSON: keep the text
          }
          reject(new UpstreamError(`upstream ${url.href} answered ${res.statusCode}: ${message}`, res.statusCode!));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`upstream ${url.href} timed out`)));
      req.on('error', (err) => reject(err instanceof UpstreamError ? err : new UpstreamError(`upstream ${url.href} failed: ${err.message}`, 502)));
      req.end(payload);
    });
  }
}

async function readAll(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of res) parts.push(part as Buffer);
  return Buffer.concat(parts).toString('utf8');
}
