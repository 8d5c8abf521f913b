// The plain data a recipe sees. recipes/ imports nothing from daemon/ or plugin/, so these shapes
// are declared here (the next state and the train options once, for the daemon too); the daemon's
// richer records satisfy the others structurally.
import type { ScreenChange } from '../protocol/index.ts';

export interface ToolCall {
  id: string;
  name: string;
  /** JSON text, as OpenAI's `function.arguments`. */
  arguments: string;
}

export interface Message {
  role: string;
  content: string;
}

export interface ToolResult {
  toolCallId: string;
  toolName: string;
  output: string;
  isError: boolean;
  exitCode?: number;
  timedOut?: boolean;
  /** What the result's screenshot changed since the previous one of the session and tool (the plugin measured it). */
  screen?: ScreenChange;
  /** When the call started and ended, ms on the plugin's clock (from OpenClaw's `durationMs`; absent where unknown). */
  startedAt?: number;
  endedAt?: number;
}

export interface Feedback {
  rating?: 'good' | 'bad';
  /** Text of `/clawrl hint <text>`: a hindsight hint written by the user. */
  hint?: string;
}

/** Everything that followed the action (DESIGN.md keeps all of it, not only the last message). */
export interface NextState {
  userMessage?: string;
  toolResults: ToolResult[];
  /**
   * For a response with a screen action (a click, typing) and no screenshot known to come after
   * it: the first screenshot of a later response in the same run that started after the action
   * ended. Models usually look at the screen in their next response.
   */
  screenAfter?: ToolResult;
  feedback?: Feedback;
  /** The session ended or went idle: nothing followed the action. */
  none?: true;
}

export interface Turn {
  action: { text: string; toolCalls: ToolCall[] };
  /** The request messages that produced the action. */
  context: { messages: Message[] };
  nextState: NextState;
  /** Number of response tokens, i.e. the length of every per-token array for this turn. */
  responseTokens: number;
}

/** A judge's verdict on one turn: good, bad, or cannot tell. */
export type Vote = 1 | -1 | 0;

/** Per-token advantages A_t and the loss mask (1 = train on token t). Same length. */
export interface Advantages {
  advantages: number[];
  mask: number[];
}

/** One optimiser step's settings, from the recipe's defaults to the backend's trainStep. */
export interface TrainOptions {
  lr: number;
  /** Clip range [1 - clipLow, 1 + clipHigh] for the ratio π_θ/π_old. */
  clipLow: number;
  clipHigh: number;
  /** Coefficient of the KL penalty to the reference (base) policy; 0 turns it off. */
  klCoef: number;
  weightDecay?: number;
  maxGradNorm?: number;
}

/** Training defaults shared by every recipe: a step's options, the batch, and the judge's votes. */
export interface TrainDefaults extends TrainOptions {
  /** Turns per optimiser step. */
  batchSize: number;
  /** Judge votes per turn. */
  m: number;
  /** Judge sampling temperature. */
  temperature: number;
}

/** Messages sent to the judge model. */
export interface JudgeMessage {
  role: 'system' | 'user';
  content: string;
}

/** Any chat model: the daemon passes one bound to its judge endpoint. Resolves to the reply text. */
export type Complete = (
  messages: JudgeMessage[],
  opts: { temperature: number; maxTokens: number; signal: AbortSignal },
) => Promise<string>;

// OpenClaw appends a user-role block that is not from the user to every request (DESIGN.md,
// "OpenClaw facts"); anything that looks for "the user's last message" must step over it.
export const INTERNAL_CONTEXT_MARKER = '<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>';

export function isInternalContext(message: Message): boolean {
  return message.content.trimStart().startsWith(INTERNAL_CONTEXT_MARKER);
}

/** Index of the last user message that the user actually wrote, or −1. */
export function lastRealUserIndex(messages: readonly Message[]): number {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role === 'user' && !isInternalContext(m)) return i;
  }
  return -1;
}

/**
 * What every recipe starts from, taken from OpenClaw-RL's published run scripts (Qwen3-4B):
 * Adam lr 1e-5 constant, eps-clip 0.2 / eps-clip-high 0.28, KL loss coefficient 0 (the KL term
 * is off: the LoRA adapter stays near the base weights anyway, and skipping it saves a
 * reference forward pass), rollout batch 16 turns per step, judge m=3 votes at temperature 0.6.
 */
export const baseDefaults: Readonly<TrainDefaults> = Object.freeze({
  lr: 1e-5,
  clipLow: 0.2,
  clipHigh: 0.28,
  klCoef: 0,
  batchSize: 16,
  m: 3,
  temperature: 0.6,
});
