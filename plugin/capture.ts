// Hook payloads → protocol events. Every handler is synchronous, never throws into the host and
// never touches the network: it reads what it needs, hands one event to the sink, and returns.
// Nothing of a session that has not opted in is handed on, except its opt-in state.
//
// It also tracks, per OpenClaw sessionId, the run, model call and trigger in progress, because
// the provider's per-turn headers are resolved between `model_call_started` and
// `model_call_ended` with only `sessionId` and a fresh `turnId` to go on.
//
// What a person typed (seen in openclaw@2026.9.6's gateway): `message_received` carries the exact
// text but no run id, and fires for command messages (`/clawrl good`, `/status`) too, which start
// no run; the run's prompt (`before_agent_run`) is the text again, and `llm_input`'s carries
// OpenClaw's envelope prefix (`[Wed 2026-12-02 02:23 UTC] …`). So received texts wait, and the
// next run of their session takes the ones its prompt holds: one user.message per message that
// started (or joined) a run, with its run id, and never a command. Without `message_received`
// (`agent --local`), the run's prompt is the message.
//
// A model attempt that fails (provider down, a broken stream) still fires `agent_end` and
// `llm_output` (success: true, the partial or no text), and OpenClaw retries the run under the
// same run id (or gives up). An attempt whose last model call failed did not end the run and its
// output is no answer: it sends no run.end and no model.output (its tool results were real and
// were sent).
import { MAX_VALUE_DEPTH, idFits, stripHintsBlock, type ImageSummary, type ToolCallSummary } from '../protocol/index.ts';
import type {
  AfterToolCallEvent,
  AgentEndEvent,
  BeforeAgentRunEvent,
  HookContext,
  HookHandlers,
  HookName,
  LlmOutputEvent,
  MessageReceivedEvent,
  ModelCallEvent,
  PluginApi,
  PluginLogger,
  SessionEndEvent,
  SessionStartEvent,
} from './host-types.ts';
import type { OptIns } from './optin.ts';
import { ScreenTracker, isMeasurable, type ScreenshotOptions, type Shot } from './screen.ts';
import type { NewEvent } from './spool.ts';

export interface EventSink {
  enqueue(event: NewEvent): void;
}

/** What the plugin knows about a session's current work. */
export interface SessionTrack {
  sessionKey?: string;
  runId?: string;
  /** The model call in flight (between model_call_started and model_call_ended). */
  callId?: string;
  trigger?: string;
  /** The last model call of the current attempt (since its before_agent_run) failed. */
  lastCallFailed?: boolean;
}

/** A message as the person sent it, waiting for the run it starts. */
interface Received {
  content: string;
  at: number;
}

/** Text longer than this is cut (with a marker) so one event stays far below the frame limit. */
export const MAX_TEXT_CHARS = 64 * 1024;
/** Tool params whose JSON is longer than this travel as truncated JSON text. */
const MAX_PARAMS_CHARS = 16 * 1024;
/** Sessions and runs remembered; the oldest are forgotten beyond it. */
const MAX_TRACKED = 10_000;
/** Errors logged per hook before the log goes quiet (the count still grows). */
const LOGGED_ERRORS_PER_HOOK = 5;
/** Received messages a session keeps waiting for a run; older ones are dropped. */
const MAX_WAITING_MESSAGES = 32;

/** The plugin's own command: its messages carry feedback or settings, never a user's request. */
export function isClawrlCommand(text: string): boolean {
  return /^\/clawrl(\s|$)/i.test(text.trimStart());
}

/** Heartbeats, cron runs and memory flushes are side turns: served, but not trained on. */
export function isSideTrigger(trigger: string | undefined): boolean {
  return trigger !== undefined && trigger !== 'user';
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * An id the host reported, kept only when the protocol can carry it: ids become the daemon's
 * store keys and are bounded, and an event with a longer one would be set aside whole.
 */
function id(value: unknown): string | undefined {
  const text = str(value);
  return text !== undefined && idFits(text) ? text : undefined;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function capText(text: string): string {
  if (text.length <= MAX_TEXT_CHARS) return text;
  return `${text.slice(0, MAX_TEXT_CHARS)}\n…[clawrl: ${text.length - MAX_TEXT_CHARS} more characters cut]`;
}

function jsonText(value: unknown): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return String(value);
  }
}

/** How deep a JSON text nests its arrays and maps. */
function jsonDepth(json: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[' || c === '{') deepest = Math.max(deepest, ++depth);
    else if (c === ']' || c === '}') depth--;
  }
  return deepest;
}

/**
 * Params as they are when small, plain JSON nested no deeper than the protocol allows; otherwise
 * (huge, deep, cyclic) as JSON text, cut: the tool result must still reach the daemon.
 */
function boundedParams(params: unknown): unknown {
  if (params === undefined) return undefined;
  let json: string | undefined;
  try {
    json = JSON.stringify(params);
  } catch {
    return String(params);
  }
  if (json === undefined) return undefined;
  if (json.length > MAX_PARAMS_CHARS) return capText(json.slice(0, MAX_PARAMS_CHARS));
  return jsonDepth(json) > MAX_VALUE_DEPTH ? json : params;
}

/** Decoded size of base64 text, without decoding it. */
function base64Bytes(data: string): number {
  const padding = data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0;
  return Math.max(0, Math.floor((data.length * 3) / 4) - padding);
}

/**
 * A tool result as text plus a summary of its images. OpenClaw tools return
 * `{ content: [{type:'text',text} | {type:'image',data,mimeType}], details }`; browser and canvas
 * screenshots arrive as image blocks, and only their count, types and sizes leave the plugin.
 */
export function summariseToolResult(result: unknown): { text: string; image?: ImageSummary } {
  const blocks = Array.isArray(result) ? result : isRecord(result) && Array.isArray(result.content) ? result.content : undefined;
  if (!blocks) return { text: typeof result === 'string' ? result : result === undefined ? '' : jsonText(result) };
  const texts: string[] = [];
  let image: ImageSummary | undefined;
  for (const block of blocks) {
    if (!isRecord(block)) continue;
    if (block.type === 'text' && typeof block.text === 'string') texts.push(block.text);
    else if (block.type === 'image') {
      image ??= { count: 0, mimeTypes: [], bytes: 0 };
      image.count++;
      const mime = str(block.mimeType) ?? 'application/octet-stream';
      if (!image.mimeTypes.includes(mime)) image.mimeTypes.push(mime);
      // OpenClaw's hooks see `{type: 'image', bytes, omitted: true}`: the data taken out, its size kept.
      if (typeof block.data === 'string') image.bytes += base64Bytes(block.data);
      else if (typeof block.bytes === 'number' && Number.isSafeInteger(block.bytes) && block.bytes > 0) image.bytes += block.bytes;
    }
  }
  return { text: texts.join('\n'), image };
}

/**
 * A tool result's screenshot: its last image's bytes, or, where the host took the data out of the
 * hook's copy (OpenClaw does), the PNG or JPEG file the tool named in `details.path`. Only a result
 * with an image block has one, so no other file a tool names is ever read.
 */
export function screenshotOf(result: unknown): Shot | undefined {
  const blocks = Array.isArray(result) ? result : isRecord(result) && Array.isArray(result.content) ? result.content : [];
  const last: unknown = [...blocks].reverse().find((block: unknown) => isRecord(block) && block.type === 'image');
  if (!isRecord(last)) return undefined;
  if (typeof last.data === 'string' && last.data !== '') return Buffer.from(last.data, 'base64');
  const path = isRecord(result) && isRecord(result.details) ? str(result.details.path) : undefined;
  return path !== undefined && /\.(png|jpe?g)$/i.test(path) ? { path } : undefined;
}

/** Tool calls of an assistant message (`content` blocks of type 'toolCall'). */
function toolCallsOf(message: unknown): ToolCallSummary[] {
  if (!isRecord(message) || !Array.isArray(message.content)) return [];
  const calls: ToolCallSummary[] = [];
  for (const block of message.content) {
    if (!isRecord(block) || block.type !== 'toolCall') continue;
    const args = block.arguments;
    calls.push({
      id: id(block.id) ?? '',
      name: str(block.name) ?? '',
      arguments: capText(typeof args === 'string' ? args : jsonText(args ?? {})),
    });
  }
  return calls;
}

/** The ids of a hook context, keeping only well-formed strings: they end up in events and keys. */
export function hookContext(ctx: unknown): HookContext {
  if (!isRecord(ctx)) return {};
  return {
    runId: id(ctx.runId),
    agentId: str(ctx.agentId),
    sessionKey: id(ctx.sessionKey),
    sessionId: id(ctx.sessionId),
    trigger: str(ctx.trigger),
    toolName: str(ctx.toolName),
    toolCallId: id(ctx.toolCallId),
  };
}

/** Insertion-ordered map that forgets its oldest entries beyond a size. */
class BoundedMap<K, V> extends Map<K, V> {
  override set(key: K, value: V): this {
    if (!this.has(key) && this.size >= MAX_TRACKED) this.delete(this.keys().next().value as K);
    return super.set(key, value);
  }
}

export class Capture {
  private readonly sessions = new BoundedMap<string, SessionTrack>();
  /** Last run of each session key, for `/clawrl good|bad|hint`. */
  private readonly lastRun = new BoundedMap<string, string>();
  /** Runs whose first attempt has been seen: a retry under the same run id brings no new message. */
  private readonly runsStarted = new BoundedMap<string, true>();
  /** Messages received per session key, waiting for the run that takes them. */
  private readonly received = new BoundedMap<string, Received[]>();
  /** Opted-in session keys whose opt-in has been sent since start. */
  private readonly announced = new Set<string>();
  private readonly errors = new Map<string, number>();
  /** What each screenshot changed since the last of its session and tool. */
  readonly screens: ScreenTracker;

  /** `screenshots`: the copy of each screenshot to send (the sendScreenshots setting); none by default. */
  constructor(
    private readonly sink: EventSink,
    private readonly optIns: OptIns,
    private readonly logger: Pick<PluginLogger, 'warn'>,
    screenshots?: ScreenshotOptions,
  ) {
    this.screens = new ScreenTracker(screenshots, (message) => logger.warn(message));
  }

  // --- state the provider and commands read ---

  session(sessionId: string | undefined): SessionTrack | undefined {
    return sessionId === undefined ? undefined : this.sessions.get(sessionId);
  }

  isOptedIn(sessionKey: string | undefined): boolean {
    return this.optIns.isOptedIn(sessionKey);
  }

  /** Opted-in sessions seen since start (the ones to tell about new weights). */
  activeSessionKeys(): string[] {
    return [...this.announced].filter((key) => this.optIns.isOptedIn(key));
  }

  /** `/clawrl on|off`: the opt-in state is the one thing sent for any session. */
  setOptIn(sessionKey: string, on: boolean): void {
    this.optIns.set(sessionKey, on);
    this.sink.enqueue({ kind: on ? 'session.optin' : 'session.optout', at: Date.now(), sessionKey });
    if (on) this.announced.add(sessionKey);
    else this.announced.delete(sessionKey);
  }

  /** `/clawrl good|bad|hint`: returns false when the session has not opted in. */
  feedback(sessionKey: string, feedback: { rating?: 'good' | 'bad'; hint?: string }): boolean {
    return this.emit(sessionKey, () => ({
      kind: 'feedback',
      at: Date.now(),
      sessionKey,
      runId: this.lastRun.get(sessionKey),
      rating: feedback.rating,
      hint: feedback.hint === undefined ? undefined : capText(feedback.hint),
    }));
  }

  /** Hint memory put these hints in front of the run's prompt; feedback on the run will count for them. */
  hintsInjected(sessionKey: string, sessionId: string | undefined, runId: string | undefined, hintIds: string[]): void {
    this.emit(sessionKey, (key) => ({ kind: 'hints.injected', at: Date.now(), sessionKey: key, sessionId, runId, hintIds }));
  }

  // --- hooks ---

  /** Registers the handlers with `api.on`, each wrapped so it can never throw into the host. */
  registerHooks(on: PluginApi['on']): void {
    const handlers: { [K in HookName]?: HookHandlers[K] } = {
      before_agent_run: this.guard('before_agent_run', (event: BeforeAgentRunEvent, ctx: HookContext) => this.onBeforeAgentRun(event, ctx)),
      model_call_started: this.guard('model_call_started', (event: ModelCallEvent, ctx: HookContext) => this.onModelCallStarted(event, ctx)),
      model_call_ended: this.guard('model_call_ended', (event: ModelCallEvent, ctx: HookContext) => this.onModelCallEnded(event, ctx)),
      llm_output: this.guard('llm_output', (event: LlmOutputEvent, ctx: HookContext) => this.onLlmOutput(event, ctx)),
      after_tool_call: this.guard('after_tool_call', (event: AfterToolCallEvent, ctx: HookContext) => this.onAfterToolCall(event, ctx)),
      message_received: this.guard('message_received', (event: MessageReceivedEvent, ctx: HookContext) => this.onMessageReceived(event, ctx)),
      agent_end: this.guard('agent_end', (event: AgentEndEvent, ctx: HookContext) => this.onAgentEnd(event, ctx)),
      session_start: this.guard('session_start', (event: SessionStartEvent, ctx: HookContext) => {
        this.track({ sessionKey: id(event.sessionKey) ?? ctx.sessionKey }, id(event.sessionId) ?? ctx.sessionId, undefined);
      }),
      session_end: this.guard('session_end', (event: SessionEndEvent, ctx: HookContext) => this.onSessionEnd(event, ctx)),
    };
    for (const name of Object.keys(handlers) as HookName[]) on(name, handlers[name] as HookHandlers[typeof name]);
  }

  private onBeforeAgentRun(event: BeforeAgentRunEvent, ctx: HookContext): void {
    const track = this.track(ctx, ctx.sessionId, ctx.runId);
    track.lastCallFailed = false;
    const runId = track.runId;
    // A retry of a run (same id) re-sends the conversation; side turns have no user.
    if (runId !== undefined && this.runsStarted.has(runId)) return;
    if (runId !== undefined) this.runsStarted.set(runId, true);
    if (isSideTrigger(track.trigger) || track.sessionKey === undefined) return;
    const waiting = this.received.get(track.sessionKey) ?? [];
    this.received.delete(track.sessionKey);
    // The prompt OpenClaw reports carries the hints this plugin prepended; the user did not write them.
    const prompt = stripHintsBlock(str(event.prompt) ?? '');
    const taken = waiting.filter((m) => prompt.includes(m.content.trim()));
    if (taken.length === 0 && prompt.trim() !== '') taken.push({ content: prompt, at: Date.now() });
    for (const m of taken) {
      this.emit(track.sessionKey, (key) => ({ kind: 'user.message', at: m.at, sessionKey: key, sessionId: ctx.sessionId, runId, content: capText(m.content) }));
    }
  }

  private onMessageReceived(event: MessageReceivedEvent, ctx: HookContext): void {
    const content = str(event.content);
    const sessionKey = ctx.sessionKey ?? id(event.sessionKey);
    // Only messages of an opted-in session are kept, and never the plugin's own commands.
    if (content === undefined || sessionKey === undefined || isClawrlCommand(content) || !this.optIns.isOptedIn(sessionKey)) return;
    const waiting = this.received.get(sessionKey) ?? [];
    waiting.push({ content, at: Date.now() });
    this.received.set(sessionKey, waiting.slice(-MAX_WAITING_MESSAGES));
  }

  private onModelCallStarted(event: ModelCallEvent, ctx: HookContext): void {
    const sessionId = id(event.sessionId) ?? ctx.sessionId;
    const track = this.track({ ...ctx, sessionKey: ctx.sessionKey ?? id(event.sessionKey) }, sessionId, id(event.runId) ?? ctx.runId);
    const callId = id(event.callId);
    if (callId === undefined) return;
    track.callId = callId;
    this.emit(track.sessionKey, (key) => ({
      kind: 'model.call',
      at: Date.now(),
      sessionKey: key,
      sessionId,
      runId: track.runId,
      callId,
      provider: str(event.provider) ?? '',
      model: str(event.model) ?? '',
      trigger: track.trigger,
      side: isSideTrigger(track.trigger),
    }));
  }

  private onModelCallEnded(event: ModelCallEvent, ctx: HookContext): void {
    const track = this.session(id(event.sessionId) ?? ctx.sessionId);
    if (!track) return;
    // Requests outside a model call (compaction summaries, say) must not inherit a stale call id.
    if (track.callId === id(event.callId)) track.callId = undefined;
    // Hosts that do not report an outcome are taken at their word that the call completed.
    track.lastCallFailed = event.outcome === 'error';
  }

  private onLlmOutput(event: LlmOutputEvent, ctx: HookContext): void {
    const sessionId = id(event.sessionId) ?? ctx.sessionId;
    const track = this.track(ctx, sessionId, id(event.runId) ?? ctx.runId);
    if (track.lastCallFailed) return;
    const texts = Array.isArray(event.assistantTexts) ? event.assistantTexts.filter((t): t is string => typeof t === 'string') : [];
    const usage = isRecord(event.usage)
      ? { input: num(event.usage.input), output: num(event.usage.output), total: num(event.usage.total) }
      : undefined;
    this.emit(track.sessionKey, (key) => ({
      kind: 'model.output',
      at: Date.now(),
      sessionKey: key,
      sessionId,
      runId: track.runId,
      assistantTexts: texts.map(capText),
      toolCalls: toolCallsOf(event.lastAssistant),
      usage,
    }));
  }

  /**
   * A tool result. One that carries a screenshot is sent once the screen worker has measured it
   * (milliseconds to a few hundred; MEASURE_TIMEOUT_MS at most), so the hook itself stays cheap.
   */
  private onAfterToolCall(event: AfterToolCallEvent, ctx: HookContext): void {
    const sessionId = ctx.sessionId;
    const runId = id(event.runId) ?? ctx.runId;
    const sessionKey = ctx.sessionKey ?? this.session(sessionId)?.sessionKey;
    if (sessionKey === undefined || !this.optIns.isOptedIn(sessionKey)) return;
    const { text, image } = summariseToolResult(event.result);
    const details = isRecord(event.result) && isRecord(event.result.details) ? event.result.details : undefined;
    const error = str(event.error);
    const result = {
      kind: 'tool.result' as const,
      at: Date.now(),
      sessionKey,
      sessionId,
      runId,
      toolCallId: id(event.toolCallId) ?? ctx.toolCallId ?? '',
      toolName: str(event.toolName) ?? ctx.toolName ?? '',
      params: boundedParams(event.params),
      output: capText(text || (error ?? '')),
      isError: error !== undefined || (isRecord(event.result) && event.result.isError === true),
      exitCode: num(details?.exitCode),
      timedOut: typeof details?.timedOut === 'boolean' ? details.timedOut : undefined,
      durationMs: num(event.durationMs),
      image,
    };
    const shot = image && screenshotOf(event.result);
    if (!shot || (shot instanceof Uint8Array && !isMeasurable(shot))) {
      this.emit(sessionKey, () => result);
      return;
    }
    void this.screens
      .measure(sessionId ?? sessionKey, result.toolName, result.toolCallId, shot)
      .then((screen) => this.emit(sessionKey, () => ({ ...result, screen })))
      .catch((err: unknown) => this.logger.warn(`clawrl: a tool result with a screenshot was not sent: ${err instanceof Error ? err.message : String(err)}`));
  }

  private onAgentEnd(event: AgentEndEvent, ctx: HookContext): void {
    const track = this.track(ctx, ctx.sessionId, id(event.runId) ?? ctx.runId);
    if (track.lastCallFailed) return;
    this.emit(track.sessionKey, (key) => ({
      kind: 'run.end',
      at: Date.now(),
      sessionKey: key,
      sessionId: ctx.sessionId,
      runId: track.runId,
      success: event.success === true,
      error: str(event.error),
      durationMs: num(event.durationMs),
    }));
  }

  private onSessionEnd(event: SessionEndEvent, ctx: HookContext): void {
    const sessionId = id(event.sessionId) ?? ctx.sessionId;
    const sessionKey = id(event.sessionKey) ?? ctx.sessionKey ?? this.session(sessionId)?.sessionKey;
    this.emit(sessionKey, (key) => ({ kind: 'session.end', at: Date.now(), sessionKey: key, sessionId, reason: str(event.reason) }));
    if (sessionId !== undefined) this.sessions.delete(sessionId);
    const screens = sessionId ?? sessionKey;
    if (screens !== undefined) this.screens.forget(screens);
  }

  // --- plumbing ---

  /** Updates (and returns) what is known about a session from a hook's ids. */
  private track(ctx: HookContext, sessionId: string | undefined, runId: string | undefined): SessionTrack {
    const track: SessionTrack = (sessionId !== undefined && this.sessions.get(sessionId)) || {};
    const sessionKey = ctx.sessionKey ?? track.sessionKey;
    if (runId !== undefined && runId !== track.runId) {
      track.runId = runId;
      track.callId = undefined;
    }
    if (ctx.trigger !== undefined) track.trigger = ctx.trigger;
    if (sessionKey !== undefined) {
      track.sessionKey = sessionKey;
      if (track.runId !== undefined) this.lastRun.set(sessionKey, track.runId);
    }
    if (sessionId !== undefined) this.sessions.set(sessionId, track);
    return track;
  }

  /**
   * Hands an event to the sink if its session has opted in; the event is built only then.
   * Returns whether it was sent.
   */
  private emit(sessionKey: string | undefined, build: (sessionKey: string) => NewEvent): boolean {
    if (sessionKey === undefined || !this.optIns.isOptedIn(sessionKey)) return false;
    if (!this.announced.has(sessionKey)) {
      // Opted in by default (or before a restart): say so before its first event.
      this.announced.add(sessionKey);
      this.sink.enqueue({ kind: 'session.optin', at: Date.now(), sessionKey });
    }
    this.sink.enqueue(build(sessionKey));
    return true;
  }

  private guard<E>(hook: string, fn: (event: E, ctx: HookContext) => void): (event: E, ctx: unknown) => void {
    return (event, ctx) => {
      try {
        fn((event ?? {}) as E, hookContext(ctx));
      } catch (err) {
        const n = (this.errors.get(hook) ?? 0) + 1;
        this.errors.set(hook, n);
        if (n <= LOGGED_ERRORS_PER_HOOK) {
          const more = n === LOGGED_ERRORS_PER_HOOK ? ' (further errors of this hook are not logged)' : '';
          this.logger.warn(`clawrl: ${hook} handler failed: ${err instanceof Error ? err.message : String(err)}${more}`);
        }
      }
    };
  }
}
