// The wire protocol between the OpenClaw plugin and the daemon. It imports nothing from the
// project: both sides build on it and it knows neither.
//
// A connection: the client sends `hello`; the server answers `welcome` (or `error` and closes).
// The client then sends `events` batches; the server answers `ack` once the events up to `seq`
// are durable, naming any event it refused (the plugin sets those aside). The server pushes
// `weights.updated` whenever the serving policy version changes. Opt-in and opt-out travel as
// events, so they are ordered, spooled and acked with the events they govern.
//
// Every frame and event is declared once, in the tables below: the types, the validator and the
// list of event kinds all come from them.
import { ProtocolError, check, describe, oneOf, opt, req, type Infer, type Schema } from './schema.ts';

export const PROTOCOL_VERSION = 1;

/** Frames larger than this are refused unless a side is configured otherwise. */
export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;

/** Largest batch of events in one frame; bigger batches must be split by the sender. */
export const MAX_EVENTS_PER_FRAME = 10_000;

const toolCallSummary = {
  id: req('id'),
  name: req('string'),
  /** JSON text of the arguments. */
  arguments: req('string'),
} as const satisfies Schema;

/** A GUI tool's image output, summarised: the pixels never leave the plugin. */
const imageSummary = {
  count: req('int'),
  mimeTypes: req('strings'),
  /** Total size of the images in bytes. */
  bytes: req('int'),
} as const satisfies Schema;

/**
 * What a tool result's screenshot changed since the previous screenshot of the same session and
 * tool, measured in the plugin on a downscaled luminance grid and a perceptual hash.
 */
const screenChange = {
  width: req('int'),
  height: req('int'),
  /** Share of grid cells that changed, 0-1; absent when the two screenshots differ in size. */
  changedShare: opt('number'),
  /** Hamming distance of the two 64-bit perceptual hashes, 0-64. */
  hashDistance: opt('int'),
  /** The tool call whose screenshot this one was compared with; absent for the first. */
  comparedTo: opt('id'),
  /** Only with the plugin's sendScreenshots setting: a downscaled copy, base64 JPEG. */
  screenshot: opt({ mimeType: req('string'), width: req('int'), height: req('int'), data: req('string') }),
} as const satisfies Schema;

const eventBase = {
  /** Monotonically increasing per client; the daemon dedups on (clientId, seq). */
  seq: req('int'),
  /** Milliseconds since the epoch when the plugin saw it. */
  at: req('number'),
  sessionKey: req('key'),
  sessionId: opt('id'),
  runId: opt('id'),
} as const satisfies Schema;

/** Each event kind's own fields, besides `eventBase`'s. */
const eventFields = {
  'session.optin': {},
  'session.optout': {},
  'model.call': {
    callId: req('id'),
    /** The provider's per-call turn id (sent to the daemon in a header too). */
    turnId: opt('id'),
    provider: req('string'),
    model: req('string'),
    /** What started the run: 'user' for main turns; heartbeat, cron, memory flush are side turns. */
    trigger: opt('string'),
    side: req('boolean'),
  },
  /** OpenClaw's llm_output: once per run, with the run's texts and the tool calls of its last message. */
  'model.output': {
    assistantTexts: req('strings'),
    toolCalls: req([toolCallSummary]),
    usage: opt({ input: opt('number'), output: opt('number'), total: opt('number') }),
  },
  'tool.result': {
    toolCallId: req('id'),
    toolName: req('string'),
    params: opt('any'),
    output: req('string'),
    isError: req('boolean'),
    exitCode: opt('number'),
    timedOut: opt('boolean'),
    durationMs: opt('number'),
    image: opt(imageSummary),
    screen: opt(screenChange),
  },
  'user.message': { content: req('string') },
  'run.end': { success: req('boolean'), error: opt('string'), durationMs: opt('number') },
  'session.end': { reason: opt('string') },
  feedback: { rating: opt(oneOf('good', 'bad')), hint: opt('string') },
  /** Hints the plugin put in front of this run's prompt: later feedback on the run confirms or contradicts them. */
  'hints.injected': { hintIds: req('ids') },
} as const satisfies Record<string, Schema>;

export type EventKind = keyof typeof eventFields;
export const EVENT_KINDS = Object.keys(eventFields) as EventKind[];

type EventOf<K extends EventKind> = { kind: K } & Infer<typeof eventBase> & Infer<(typeof eventFields)[K]>;
export type Event = { [K in EventKind]: EventOf<K> }[EventKind];
export type SessionOptEvent = EventOf<'session.optin' | 'session.optout'>;
export type ModelCallEvent = EventOf<'model.call'>;
export type ModelOutputEvent = EventOf<'model.output'>;
export type ToolResultEvent = EventOf<'tool.result'>;
export type UserMessageEvent = EventOf<'user.message'>;
export type RunEndEvent = EventOf<'run.end'>;
export type SessionEndEvent = EventOf<'session.end'>;
export type FeedbackEvent = EventOf<'feedback'>;
export type HintsInjectedEvent = EventOf<'hints.injected'>;
export type ToolCallSummary = Infer<typeof toolCallSummary>;
export type ImageSummary = Infer<typeof imageSummary>;
export type ScreenChange = Infer<typeof screenChange>;

/** Why the serving version changed: a training step, a rollback, a pin or unpin by hand, or a version dropped into the folder. */
export const WEIGHTS_CHANGES = oneOf('trained', 'rollback', 'pin', 'unpin', 'adopted');
export type WeightsChange = (typeof WEIGHTS_CHANGES)[number];

export const ERROR_CODES = oneOf('bad_frame', 'too_large', 'unsupported_protocol', 'not_ready', 'storage_full', 'limit_reached', 'internal');
export type ErrorCode = (typeof ERROR_CODES)[number];

const rejectedEvent = {
  seq: req('int'),
  /** What was wrong, naming the field. */
  reason: req('string'),
} as const satisfies Schema;

/** Every frame's fields besides `type`. `events` are checked one by one, to name the bad one. */
const frameFields = {
  hello: {
    protocol: req('int'),
    clientId: req('key'),
    clientVersion: req('string'),
    /** The OpenClaw install (state folder) the client runs in: its session keys are its own (absent from older plugins). */
    installId: opt('key'),
  },
  events: {},
  welcome: {
    protocol: req('int'),
    serverVersion: req('string'),
    /** The highest seq of this client the daemon has made durable: resend everything after it. */
    ackedSeq: req('int'),
    /**
     * The `at` of the event with that seq, as the daemon received it; absent when unknown. A
     * client whose own event at that seq has another `at` learns that a copy of its state folder
     * (a restored backup, a cloned volume) sends under its client id.
     */
    ackedAt: opt('number'),
    weightVersion: req('string'),
  },
  ack: {
    /** Every event of this client with seq <= this is durable, or was dropped by policy, or is listed in `rejected`. */
    seq: req('int'),
    /** Events of this batch the daemon refused and did not store: the client sets them aside instead of resending them. */
    rejected: opt([rejectedEvent]),
  },
  'weights.updated': {
    version: req('string'),
    recipe: req('string'),
    metrics: req('any'),
    /** Absent from daemons before it was added: read as 'trained'. */
    reason: opt(WEIGHTS_CHANGES),
  },
  error: { code: req('string'), message: req('string') },
} as const satisfies Record<string, Schema>;

type FrameOf<T extends keyof typeof frameFields> = { type: T } & Infer<(typeof frameFields)[T]>;
export type HelloMessage = FrameOf<'hello'>;
export type EventsMessage = { type: 'events'; events: Event[] };
export type WelcomeMessage = FrameOf<'welcome'>;
export type AckMessage = FrameOf<'ack'>;
export type RejectedEvent = Infer<typeof rejectedEvent>;
export type WeightsUpdatedMessage = FrameOf<'weights.updated'> & { metrics: Record<string, number> };
export type ErrorMessage = { type: 'error'; code: ErrorCode; message: string };

export type ClientMessage = HelloMessage | EventsMessage;
export type ServerMessage = WelcomeMessage | AckMessage | WeightsUpdatedMessage | ErrorMessage;
export type Message = ClientMessage | ServerMessage;

/** Checks one event; throws a ProtocolError naming the field that is wrong. */
export function validateEvent(value: unknown, path = 'event'): Event {
  check(value, eventBase, path);
  const kind = value.kind;
  if (typeof kind !== 'string' || !Object.hasOwn(eventFields, kind)) {
    throw new ProtocolError('bad_frame', `${path}.kind is unknown: ${JSON.stringify(String(kind)).slice(0, 80)}`);
  }
  check(value, eventFields[kind as EventKind], `${path}(${kind})`);
  return value as unknown as Event;
}

/**
 * Checks a frame's envelope, and with `events: 'each'` also every event (throwing at the first
 * bad one); with `events: 'seq'` only that each event has a seq, so the caller can check them
 * one by one and refuse just the bad ones.
 */
export function validateMessage(value: unknown, opts: { events: 'each' | 'seq' } = { events: 'each' }): Message {
  check(value, {}, 'frame');
  const type = value.type;
  if (typeof type !== 'string' || !Object.hasOwn(frameFields, type)) {
    throw new ProtocolError('bad_frame', `frame.type is unknown: ${JSON.stringify(String(type)).slice(0, 80)}`);
  }
  check(value, frameFields[type as keyof typeof frameFields], type);
  if (type === 'events') {
    const events = value.events;
    if (!Array.isArray(events)) throw new ProtocolError('bad_frame', `events.events must be an array, got ${describe(events)}`);
    if (events.length > MAX_EVENTS_PER_FRAME) {
      throw new ProtocolError('bad_frame', `events.events has ${events.length} events, more than ${MAX_EVENTS_PER_FRAME}`);
    }
    events.forEach((event, i) => (opts.events === 'each' ? validateEvent(event, `events[${i}]`) : check(event, { seq: eventBase.seq }, `events[${i}]`)));
  }
  return value as unknown as Message;
}

/**
 * An events frame's events checked one by one: the good ones, and the bad ones by seq with what
 * was wrong (a refused event is not stored, and the sender sets it aside).
 */
export function partitionEvents(events: readonly unknown[]): { valid: Event[]; rejected: RejectedEvent[] } {
  const valid: Event[] = [];
  const rejected: RejectedEvent[] = [];
  events.forEach((event, i) => {
    try {
      valid.push(validateEvent(event, `events[${i}]`));
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      rejected.push({ seq: (event as { seq: number }).seq, reason: err.message });
    }
  });
  return { valid, rejected };
}
