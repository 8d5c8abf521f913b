// The OpenAI-compatible API that OpenClaw's provider talks to: GET /v1/models and
// POST /v1/chat/completions (streaming or not). Each response of an opted-in session is
// recorded as a sample with the exact tokens and logprobs the backend generated.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BackendUnavailableError, UpstreamError, type Backend, type ChatMessage, type GenerateChunk, type GenerateResult, type SamplingParams, type ToolCall, type ToolSpec } from './backends/types.ts';
import type { Logger } from './log.ts';
import { HttpError, readBody, sendError } from './http.ts';
import { MAX_ID_BYTES, MAX_VALUE_DEPTH, idFits } from '../protocol/index.ts';
import { ChatBodyParser } from './parse-off-loop.ts';
import { errorMessage } from './errors.ts';

/**
 * 4 MiB: the text of a 1M-token context, more than any model served here takes (the plugin
 * declares text-only models, so no images come). Everything a body holds is parsed, tokenized and
 * redacted at tens of ms per MiB; a 30 MB body is no chat, and its 413 names the limit.
 */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;
/** No context holds more messages; past it a body is a flood of objects, each costing parse, redaction and storage. */
export const MAX_MESSAGES = 4096;

/** Per-turn headers the clawrl plugin attaches (see plugin/provider.ts). */
export interface TurnHeaders {
  sessionKey?: string;
  sessionId?: string;
  runId?: string;
  callId?: string;
  turnId?: string;
  side: boolean;
  /** The plugin's word on the session's opt-in (it knows before its event arrives); undefined if not sent. */
  optIn?: boolean;
}

/**
 * The plugin's headers; one longer than an id may be (ids become store keys) is refused with 400.
 * The session key gets what its install adds (`keySuffix` of the x-clawrl-install header).
 */
export function readTurnHeaders(req: IncomingMessage, keySuffix: (installId: string | undefined) => string = () => ''): TurnHeaders {
  const h = (name: string) => {
    const v = req.headers[`x-clawrl-${name}`];
    if (typeof v !== 'string' || v.length === 0) return undefined;
    if (!idFits(v)) {
      throw new ApiError(400, `header x-clawrl-${name} is ${Buffer.byteLength(v)} bytes long, over the limit of ${MAX_ID_BYTES} bytes`, 'invalid_request_error', `x-clawrl-${name}`);
    }
    return v;
  };
  const sessionKey = h('session-key');
  return {
    sessionKey: sessionKey === undefined ? undefined : sessionKey + keySuffix(h('install')),
    sessionId: h('session-id'),
    runId: h('run-id'),
    callId: h('call-id'),
    turnId: h('turn-id'),
    side: h('side') === '1',
    optIn: h('opt-in') === undefined ? undefined : h('opt-in') === '1',
  };
}

export interface ServedResponse {
  id: string;
  model: string;
  request: { messages: ChatMessage[]; tools?: ToolSpec[] };
  result: GenerateResult;
  headers: TurnHeaders;
  /** From the start of generation to the end of the response. */
  durationMs: number;
}

export interface ApiOptions {
  backend: () => Backend | undefined;
  log: Logger;
  maxBodyBytes?: number;
  /** Called after each response; the daemon records samples here. Must not throw. */
  onServed: (served: ServedResponse) => void;
  /** The canary version this request's session is served by, or null for the main version (see canary.ts). */
  canaryFor?: (headers: TurnHeaders) => string | null;
  /** What an install adds to its session keys (Store.installSuffix). */
  keySuffix?: (installId: string | undefined) => string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = 'invalid_request_error',
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

/**
 * Refuses (400) a free-form value nested more than MAX_VALUE_DEPTH levels: what reads it later
 * (redaction, storage, templates, JSON for upstream) recurses, and 50,000 levels overflowed the
 * stack. No tool schema comes near the limit. Counted level by level, without recursion.
 */
function checkNesting(value: unknown, field: string): void {
  let level: unknown[] = [value];
  for (let depth = 0; level.length > 0; depth++) {
    if (depth > MAX_VALUE_DEPTH) throw new ApiError(400, `${field} nests deeper than ${MAX_VALUE_DEPTH} levels`, 'invalid_request_error', field);
    const next: unknown[] = [];
    for (const v of level) {
      if (typeof v !== 'object' || v === null) continue;
      for (const child of Object.values(v)) if (typeof child === 'object' && child !== null) next.push(child);
    }
    level = next;
  }
}

function sendApiError(res: ServerResponse, err: ApiError): void {
  sendError(res, err.status, err.message, err.type, { param: err.param, code: null });
}

/** OpenAI content may be a string, null, or an array of parts; the policy sees their text. */
function contentText(content: unknown, where: string): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part, i) => {
        if (typeof part === 'string') return part;
        const p = part as { type?: string; text?: unknown };
        if (p?.type === 'text' && typeof p.text === 'string') return p.text;
        if (p?.type === 'image_url' || p?.type === 'input_audio' || p?.type === 'file') return `[${p.type}]`;
        throw new ApiError(400, `${where}.content[${i}] is not a text part`, 'invalid_request_error', `${where}.content`);
      })
      .join('');
  }
  throw new ApiError(400, `${where}.content must be a string, an array of parts, or null`, 'invalid_request_error', `${where}.content`);
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);

function parseMessages(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) throw new ApiError(400, 'messages must be a non-empty array', 'invalid_request_error', 'messages');
  if (value.length > MAX_MESSAGES) throw new ApiError(413, `messages has ${value.length} entries, over the limit of ${MAX_MESSAGES}`, 'invalid_request_error', 'messages');
  return value.map((raw, i): ChatMessage => {
    const where = `messages[${i}]`;
    const m = raw as Record<string, unknown>;
    if (typeof m !== 'object' || m === null) throw new ApiError(400, `${where} must be an object`, 'invalid_request_error', where);
    if (typeof m.role !== 'string' || !ROLES.has(m.role)) {
      throw new ApiError(400, `${where}.role must be one of ${[...ROLES].join(', ')}`, 'invalid_request_error', `${where}.role`);
    }
    if (m.tool_calls !== undefined && m.tool_calls !== null && !Array.isArray(m.tool_calls)) {
      throw new ApiError(400, `${where}.tool_calls must be an array`, 'invalid_request_error', `${where}.tool_calls`);
    }
    checkNesting(m.content, `${where}.content`);
    const toolCalls = Array.isArray(m.tool_calls)
      ? m.tool_calls.map((c: { id?: unknown; function?: { name?: unknown; arguments?: unknown } }, j: number): ToolCall => {
          if (typeof c?.function?.name !== 'string') {
            throw new ApiError(400, `${where}.tool_calls[${j}].function.name must be a string`, 'invalid_request_error', `${where}.tool_calls`);
          }
          if (c.id !== undefined && c.id !== null && typeof c.id !== 'string') {
            throw new ApiError(400, `${where}.tool_calls[${j}].id must be a string`, 'invalid_request_error', `${where}.tool_calls`);
          }
          const args = c.function.arguments;
          checkNesting(args, `${where}.tool_calls[${j}].function.arguments`);
          return { id: c.id ?? '', name: c.function.name, arguments: typeof args === 'string' ? args : JSON.stringify(args ?? {}) };
        })
      : undefined;
    return {
      // `developer` is OpenAI's newer name for the system role.
      role: m.role === 'developer' ? 'system' : (m.role as ChatMessage['role']),
      content: contentText(m.content, where),
      ...(typeof m.name === 'string' && { name: m.name }),
      ...(toolCalls?.length && { toolCalls }),
      ...(typeof m.tool_call_id === 'string' && { toolCallId: m.tool_call_id }),
    };
  });
}

function parseTools(value: unknown): ToolSpec[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw new ApiError(400, 'tools must be an array', 'invalid_request_error', 'tools');
  return value.map((t: { type?: unknown; function?: { name?: unknown; description?: unknown; parameters?: unknown } }, i) => {
    if (t?.type !== 'function' || typeof t.function?.name !== 'string') {
      throw new ApiError(400, `tools[${i}] must be {type: "function", function: {name, ...}}`, 'invalid_request_error', 'tools');
    }
    checkNesting(t.function.parameters, `tools[${i}].function.parameters`);
    return {
      name: t.function.name,
      ...(typeof t.function.description === 'string' && { description: t.function.description }),
      ...(t.function.parameters !== undefined && { parameters: t.function.parameters }),
    };
  });
}

function numberField(body: Record<string, unknown>, name: string, fallback: number, min: number, max: number, integer = false): number {
  const v = body[name];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new ApiError(400, `${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`, 'invalid_request_error', name);
  }
  return v;
}

/** Fields the API models itself; the rest are passed through to upstream backends. */
const MODELLED = new Set([
  'model', 'messages', 'tools', 'stream', 'stream_options', 'temperature', 'top_p', 'max_tokens',
  'max_completion_tokens', 'stop', 'seed', 'logprobs', 'top_logprobs', 'n', 'user', 'store', 'metadata',
]);

export interface ParsedRequest {
  model: string;
  messages: ChatMessage[];
  tools?: ToolSpec[];
  sampling: SamplingParams;
  stream: boolean;
  includeUsage: boolean;
  logprobs: boolean;
  passthrough: Record<string, unknown>;
}

function booleanField(body: Record<string, unknown>, name: string, path = name): boolean {
  const v = body[name];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new ApiError(400, `${path} must be true or false`, 'invalid_request_error', path);
  return v;
}

/** A request body's bytes as a chat request (see parse-off-loop.ts for where this runs). */
export function parseChatBody(raw: Buffer, defaultMaxTokens: number): ParsedRequest {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new ApiError(400, `the request body is not valid JSON: ${errorMessage(err)}`);
  }
  return parseChatRequest(body, defaultMaxTokens);
}

export function parseChatRequest(body: unknown, defaultMaxTokens: number): ParsedRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'the request body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b.model !== 'string') throw new ApiError(400, 'model must be a string', 'invalid_request_error', 'model');
  const streamOptions = b.stream_options ?? {};
  if (typeof streamOptions !== 'object' || Array.isArray(streamOptions)) {
    throw new ApiError(400, 'stream_options must be an object', 'invalid_request_error', 'stream_options');
  }
  if (b.n !== undefined && b.n !== null && b.n !== 1) throw new ApiError(400, 'only n = 1 is supported', 'invalid_request_error', 'n');
  const stop = b.stop === undefined || b.stop === null ? [] : typeof b.stop === 'string' ? [b.stop] : b.stop;
  if (!Array.isArray(stop) || stop.length > 4 || !stop.every((s) => typeof s === 'string' && s.length > 0)) {
    throw new ApiError(400, 'stop must be a string or up to 4 non-empty strings', 'invalid_request_error', 'stop');
  }
  const logprobs = booleanField(b, 'logprobs');
  const topLogprobs = numberField(b, 'top_logprobs', 0, 0, 20, true);
  if (topLogprobs > 0 && !logprobs) throw new ApiError(400, 'top_logprobs requires logprobs: true', 'invalid_request_error', 'top_logprobs');
  const maxTokens = numberField(b, 'max_completion_tokens', numberField(b, 'max_tokens', defaultMaxTokens, 1, 1 << 20, true), 1, 1 << 20, true);
  // Passed on to upstream as they are, so bounded like the fields read here.
  const passthrough = Object.fromEntries(Object.entries(b).filter(([k]) => !MODELLED.has(k)));
  for (const [name, value] of Object.entries(passthrough)) checkNesting(value, name);
  return {
    model: b.model,
    messages: parseMessages(b.messages),
    tools: parseTools(b.tools),
    sampling: {
      temperature: numberField(b, 'temperature', 1, 0, 2),
      topP: numberField(b, 'top_p', 1, 0, 1),
      maxTokens,
      stop: stop as string[],
      ...(b.seed !== undefined && b.seed !== null && { seed: numberField(b, 'seed', 0, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, true) }),
      topLogprobs,
    },
    stream: booleanField(b, 'stream'),
    includeUsage: booleanField(streamOptions as Record<string, unknown>, 'include_usage', 'stream_options.include_usage'),
    logprobs,
    passthrough,
  };
}

function logprobsContent(tokens: GenerateChunk['tokens']) {
  return tokens.map((t) => ({
    token: t.text,
    logprob: t.logprob,
    bytes: [...Buffer.from(t.text, 'utf8')],
    top_logprobs: (t.top ?? []).map((a) => ({ token: a.text, logprob: a.logprob, bytes: [...Buffer.from(a.text, 'utf8')] })),
  }));
}

function toolCallsOut(calls: ToolCall[]) {
  return calls.map((c, index) => ({ index, id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
}

export function createApi(opts: ApiOptions) {
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const parser = new ChatBodyParser();

  async function chatCompletions(req: IncomingMessage, res: ServerResponse, backend: Backend): Promise<void> {
    const headers = readTurnHeaders(req, opts.keySuffix);
    const parsed = await parser.parse(await readBody(req, maxBody), 512);
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const model = parsed.model;
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    // Chosen between requests: a canary starting or ending never touches one in flight.
    const canary = opts.canaryFor?.(headers) ?? null;
    const generate = { messages: parsed.messages, tools: parsed.tools, sampling: parsed.sampling, signal: abort.signal, passthrough: parsed.passthrough, canary: canary !== null };
    const started = performance.now();

    let result: GenerateResult;
    if (!parsed.stream) {
      result = await backend.generate(generate);
      const text = JSON.stringify({
        id,
        object: 'chat.completion',
        created,
        model,
        system_fingerprint: result.weightVersion,
        choices: [
          {
            index: 0,
            message: {
              role: 'assistant',
              content: result.toolCalls.length && !result.text ? null : result.text,
              ...(result.toolCalls.length && { tool_calls: toolCallsOut(result.toolCalls).map(({ index: _, ...c }) => c) }),
            },
            logprobs: parsed.logprobs ? { content: logprobsContent(result.tokens) } : null,
            finish_reason: result.finishReason,
          },
        ],
        usage: usageOf(result),
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    } else {
      const chunkOf = (delta: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
        `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: canary ?? backend.currentVersion(), choices: [{ index: 0, delta, logprobs: null, finish_reason: null, ...extra }] })}\n\n`;
      let started = false;
      const start = () => {
        if (started) return;
        started = true;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        res.write(chunkOf({ role: 'assistant', content: '' }));
      };
      try {
        result = await backend.generate(generate, (chunk) => {
          start();
          res.write(chunkOf({ content: chunk.text }, parsed.logprobs ? { logprobs: { content: logprobsContent(chunk.tokens) } } : {}));
        });
      } catch (err) {
        if (!started) throw err;
        // Headers are gone: report in-band, as OpenAI does for mid-stream failures.
        res.end(`data: ${JSON.stringify({ error: { message: errorMessage(err), type: 'server_error' } })}\n\n`);
        return;
      }
      start();
      if (result.toolCalls.length) res.write(chunkOf({ tool_calls: toolCallsOut(result.toolCalls) }));
      res.write(chunkOf({}, { finish_reason: result.finishReason }));
      if (parsed.includeUsage) {
        res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: usageOf(result) })}\n\n`);
      }
      res.end('data: [DONE]\n\n');
    }
    opts.onServed({ id, model, request: { messages: parsed.messages, tools: parsed.tools }, result, headers, durationMs: performance.now() - started });
  }

  return async function handleV1(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    try {
      const backend = opts.backend();
      if (!backend) throw new ApiError(503, 'no policy backend is loaded yet', 'server_error');
      if (path === '/v1/models' && req.method === 'GET') {
        const text = JSON.stringify({
          object: 'list',
          data: backend.models().map((id) => ({ id, object: 'model', created: 0, owned_by: 'clawrl' })),
        });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return;
      }
      if (path === '/v1/chat/completions') {
        if (req.method !== 'POST') throw new ApiError(405, 'use POST for /v1/chat/completions');
        await chatCompletions(req, res, backend);
        return;
      }
      throw new ApiError(404, `no route for ${req.method} ${path}`, 'not_found_error');
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof ApiError) return sendApiError(res, err);
      if (err instanceof HttpError) return sendApiError(res, new ApiError(err.status, err.message));
      if (err instanceof BackendUnavailableError) return sendApiError(res, new ApiError(503, err.message, 'server_error'));
      if (err instanceof UpstreamError) return sendApiError(res, new ApiError(err.status >= 500 ? 502 : err.status, err.message, 'upstream_error'));
      opts.log.error('chat completion failed', { error: (err as Error).stack });
      sendApiError(res, new ApiError(500, `the backend failed: ${errorMessage(err)}`, 'server_error'));
    }
  };
}

function usageOf(result: GenerateResult) {
  const prompt = result.promptTokens.length;
  const completion = result.responseTokens.length || result.tokens.length;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}
