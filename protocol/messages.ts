// The wire protocol between the OpenClaw plugin and the daemon. It imports nothing from the
// project: both sides build on it and it knows neither.
//
// A connection: the client sends `hello`; the server answers `welcome` (or `error` and closes).
// The client then sends `events` batches; the server answers `ack` once the events up to `seq`
// are durable. The server pushes `weights.updated` whenever a new policy version serves.
// Opt-in and opt-out travel as events, so they are ordered, spooled and acked with the events
// they govern.

export const PROTOCOL_VERSION = 1;

/** Frames larger than this are refused unless a side is configured otherwise. */
export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;

export interface ToolCallSummary {
  id: string;
  name: string;
  /** JSON text of the arguments. */
  arguments: string;
}

/** A GUI tool's image output, summarised: the pixels never leave the plugin. */
export interface ImageSummary {
  count: number;
  mimeTypes: string[];
  /** Total size of the images in bytes. */
  bytes: number;
}

interface EventBase {
  /** Monotonically increasing per client; the daemon dedups on (clientId, seq). */
  seq: number;
  /** Milliseconds since the epoch when the plugin saw it. */
  at: number;
  sessionKey: string;
  sessionId?: string;
  runId?: string;
}

export interface SessionOptEvent extends EventBase {
  kind: 'session.optin' | 'session.optout';
}

export interface ModelCallEvent extends EventBase {
  kind: 'model.call';
  callId: string;
  /** The provider's per-call turn id (sent to the daemon in a header too). */
  turnId?: string;
  provider: string;
  model: string;
  /** What started the run: 'user' for main turns; heartbeat, cron, memory flush are side turns. */
  trigger?: string;
  side: boolean;
}

export interface ModelOutputEvent extends EventBase {
  kind: 'model.output';
  assistantTexts: string[];
  toolCalls: ToolCallSummary[];
  usage?: { input?: number; output?: number; total?: number };
}

export interface ToolResultEvent extends EventBase {
  kind: 'tool.result';
  toolCallId: string;
  toolName: string;
  params: unknown;
  output: string;
  isError: boolean;
  exitCode?: number;
  timedOut?: boolean;
  durationMs?: number;
  image?: ImageSummary;
}

export interface UserMessageEvent extends EventBase {
  kind: 'user.message';
  content: string;
}

export interface RunEndEvent extends EventBase {
  kind: 'run.end';
  success: boolean;
  error?: string;
  durationMs?: number;
}

export interface SessionEndEvent extends EventBase {
  kind: 'session.end';
  reason?: string;
}

export interface FeedbackEvent extends EventBase {
  kind: 'feedback';
  rating?: 'good' | 'bad';
  hint?: string;
}

/** Hints the plugin put in front of this run's prompt: later feedback on the run confirms or contradicts them. */
export interface HintsInjectedEvent extends EventBase {
  kind: 'hints.injected';
  hintIds: string[];
}

export type Event =
  | SessionOptEvent
  | ModelCallEvent
  | ModelOutputEvent
  | ToolResultEvent
  | UserMessageEvent
  | RunEndEvent
  | SessionEndEvent
  | FeedbackEvent
  | HintsInjectedEvent;

export type EventKind = Event['kind'];

export interface HelloMessage {
  type: 'hello';
  protocol: number;
  clientId: string;
  clientVersion: string;
}

export interface EventsMessage {
  type: 'events';
  events: Event[];
}

export type ClientMessage = HelloMessage | EventsMessage;

export interface WelcomeMessage {
  type: 'welcome';
  protocol: number;
  serverVersion: string;
  /** The highest seq of this client the daemon has made durable: resend everything after it. */
  ackedSeq: number;
  weightVersion: string;
}

export interface AckMessage {
  type: 'ack';
  /** Every event of this client with seq <= this is durable (or was dropped by policy). */
  seq: number;
}

/** Why the serving version changed: a training step, a rollback, a pin or unpin by hand, or a version dropped into the folder. */
export type WeightsChange = 'trained' | 'rollback' | 'pin' | 'unpin' | 'adopted';

export interface WeightsUpdatedMessage {
  type: 'weights.updated';
  version: string;
  recipe: string;
  metrics: Record<string, number>;
  /** Absent from daemons before it was added: read as 'trained'. */
  reason?: WeightsChange;
}

export type ErrorCode =
  | 'bad_frame'
  | 'too_large'
  | 'unsupported_protocol'
  | 'not_ready'
  | 'storage_full'
  | 'limit_reached'
  | 'internal';

export interface ErrorMessage {
  type: 'error';
  code: ErrorCode;
  message: string;
}

export type ServerMessage = WelcomeMessage | AckMessage | WeightsUpdatedMessage | ErrorMessage;

export type Message = ClientMessage | ServerMessage;
