// The judge's cheap evidence on a turn, read without a model: tool failures, the user's reaction
// (a correction, an approval, the request repeated), a screen action that changed nothing, and
// explicit feedback. The rules judge decides from it alone; a judge model is shown it.
import { lastRealUserIndex, type Feedback, type ToolCall, type ToolResult, type Turn } from './types.ts';

export interface ToolFailure {
  toolName: string;
  toolCallId: string;
  /** The first that applies, in this order: timeout, non-zero exit code, tool-reported error. */
  reason: 'timeout' | 'exit-code' | 'error';
  exitCode?: number;
}

/**
 * How the user's next message reacts to the action:
 * - `correction`: opens with a correction or disapproval ("no,", "that's wrong", "I said", "try
 *   again", …) or contains an unambiguous one anywhere ("not what I asked", "try again", …);
 * - `approval`: opens with clear praise ("great", "thanks", "perfect", …) and has no "but" /
 *   "however" among its first 12 words ("thanks, but …" is not approval);
 * - `repeat`: shares most of its words with the request (Jaccard similarity of the word sets
 *   ≥ 0.6, both with at least 3 distinct words): the user asked again, so the action missed.
 * Checked in that order. Only the first 4,000 characters are read: corrections come first, and
 * a pasted log must not make this cost more.
 */
export type UserReaction = 'correction' | 'approval' | 'repeat';

/**
 * A tool call meant to change the screen (a click, typing, a key, a navigation) after which the
 * screen did not change at all: the first screenshot after it is identical, cell for cell, to the
 * last one before it.
 */
export interface UnchangedScreen {
  /** The call that was meant to change the screen. */
  toolCallId: string;
  toolName: string;
  /** What it asked for: `click`, `type`, `navigate`, … */
  action: string;
  /** The call whose result carried the screenshot (the action's own, for computer-use tools). */
  screenshotCallId: string;
}

export interface Evidence {
  feedback: Feedback | null;
  toolFailures: ToolFailure[];
  unchangedScreens: UnchangedScreen[];
  /** Tool results with exit code 0 or none, no error and no timeout. */
  toolSuccesses: number;
  userReaction: UserReaction | null;
  /** Nothing followed the action (session ended or went idle). */
  noNextState: boolean;
}

const REACTION_CHARS = 4000;
const REPEAT_JACCARD = 0.6;
const REPEAT_MIN_WORDS = 3;

// Phrases are written as normalised words (lower case, apostrophes dropped): "that's" → "thats".
const CORRECTION_OPENERS = [
  'no', 'nope', 'wrong', 'incorrect', 'not quite', 'not right', 'not what i',
  'thats wrong', 'thats not', 'thats incorrect', 'that is wrong', 'that is not', 'this is wrong', 'this isnt',
  'i said', 'i asked', 'i told you', 'i meant', 'try again', 'please try again',
  'still wrong', 'still not', 'still doesnt', 'still broken',
  'that didnt', 'that doesnt', 'it didnt', 'it doesnt', 'you didnt', 'you forgot', 'you missed',
  'why did you', 'undo',
];
// "no problem", "no worries" … open with "no" but are not corrections.
const NOT_CORRECTION_AFTER_NO = new Set(['problem', 'problems', 'worries', 'worry', 'need', 'rush', 'doubt']);
const CORRECTION_ANYWHERE = [
  'not what i asked', 'not what i wanted', 'not what i meant', 'thats wrong', 'thats not right',
  'thats incorrect', 'that is wrong', 'that is not right', 'try again', 'you misunderstood',
  'i already said', 'i already told you',
];
const APPROVAL_OPENERS = [
  'great', 'thanks', 'thank you', 'thx', 'perfect', 'awesome', 'excellent', 'nice', 'cool',
  'amazing', 'brilliant', 'fantastic', 'wonderful', 'exactly', 'good job', 'good work', 'well done',
  'thats right', 'thats correct', 'thats it', 'that works', 'it works', 'looks good', 'lgtm', 'love it',
];
const APPROVAL_BLOCKERS = new Set(['but', 'however']);
const APPROVAL_BLOCKER_WINDOW = 12;

/** Lower-cased words of the head of a text, apostrophes dropped so "that's" and "thats" agree. */
function words(text: string): string[] {
  return text.slice(0, REACTION_CHARS).toLowerCase().replace(/['’‘`]/g, '').match(/[\p{L}\p{N}]+/gu) ?? [];
}

function opensWith(ws: readonly string[], phrase: string): boolean {
  const ps = phrase.split(' ');
  return ps.every((p, i) => ws[i] === p);
}

function contains(joined: string, phrase: string): boolean {
  return joined.includes(` ${phrase} `);
}

function jaccard(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  let shared = 0;
  for (const w of a) if (b.has(w)) shared++;
  return shared / (a.size + b.size - shared);
}

export function userReaction(reply: string, request: string | undefined): UserReaction | null {
  const ws = words(reply);
  if (ws.length === 0) return null;
  const joined = ` ${ws.join(' ')} `;
  const opensWithNo = ws[0] === 'no' && !NOT_CORRECTION_AFTER_NO.has(ws[1] ?? '');
  if (opensWithNo || CORRECTION_OPENERS.some((p) => p !== 'no' && opensWith(ws, p))) return 'correction';
  if (CORRECTION_ANYWHERE.some((p) => contains(joined, p))) return 'correction';
  if (
    APPROVAL_OPENERS.some((p) => opensWith(ws, p)) &&
    !ws.slice(0, APPROVAL_BLOCKER_WINDOW).some((w) => APPROVAL_BLOCKERS.has(w))
  ) {
    return 'approval';
  }
  if (request !== undefined) {
    const a = new Set(ws);
    const b = new Set(words(request));
    if (a.size >= REPEAT_MIN_WORDS && b.size >= REPEAT_MIN_WORDS && jaccard(a, b) >= REPEAT_JACCARD) return 'repeat';
  }
  return null;
}

function toolFailure(r: ToolResult): ToolFailure | null {
  const base = { toolName: r.toolName, toolCallId: r.toolCallId };
  if (r.timedOut) return { ...base, reason: 'timeout' };
  if (typeof r.exitCode === 'number' && r.exitCode !== 0) return { ...base, reason: 'exit-code', exitCode: r.exitCode };
  if (r.isError) return { ...base, reason: 'error' };
  return null;
}

// What a browser or computer-use call asks for, in its `action` or `kind` (OpenClaw's browser tool:
// `{action: "act", kind: "click"}`, `{action: "navigate"}`; computer use: `{action: "left_click"}`).
// Hovering, waiting, scrolling into view and reading are left out: they may rightly change nothing.
const SCREEN_ACTIONS = new Set([
  'click', 'clickcoords', 'left_click', 'right_click', 'middle_click', 'double_click', 'triple_click', 'left_click_drag',
  'type', 'fill', 'press', 'key', 'select', 'drag', 'scroll', 'navigate',
]);
/** Arguments longer than this are not parsed: screen actions are short. */
const MAX_ACTION_ARGS = 16_384;

/** The screen-changing action a tool call asks for, or null. */
export function screenAction(call: ToolCall): string | null {
  if (call.arguments.length > MAX_ACTION_ARGS) return null;
  let args: unknown;
  try {
    args = JSON.parse(call.arguments);
  } catch {
    return null;
  }
  if (typeof args !== 'object' || args === null) return null;
  const { action, kind, request } = args as Record<string, unknown>;
  const nested = typeof request === 'object' && request !== null ? (request as Record<string, unknown>).kind : undefined;
  for (const word of [kind, nested, action]) {
    if (typeof word === 'string' && SCREEN_ACTIONS.has(word.toLowerCase())) return word.toLowerCase();
  }
  return null;
}

/** `a` ended before `b` started, both on the plugin's clock; unknown (false) when either lacks its times. */
const endedBefore = (a: ToolResult | undefined, b: ToolResult | undefined): boolean =>
  a?.endedAt !== undefined && b?.startedAt !== undefined && a.endedAt <= b.startedAt;

/**
 * The result whose screenshot shows the screen after `action`: the action's own (a computer-use
 * tool takes one after acting), else the first of `results` with a screenshot that started after
 * the action's result ended. Call order says nothing here: OpenClaw runs the calls of one response
 * at once (its browser tool is not sequential), so a screenshot asked for beside a click can be
 * taken before the click lands. Undefined when no screenshot is known to come after it.
 */
export function screenshotAfter(action: ToolCall, results: readonly ToolResult[]): ToolResult | undefined {
  const own = results.find((r) => r.toolCallId === action.id);
  if (own?.screen) return own;
  return results.find((r) => r.screen !== undefined && endedBefore(own, r));
}

/**
 * Screen actions of this turn whose screenshot after them (`screenshotAfter`, among the turn's
 * results and then `nextState.screenAfter`, the first screenshot of a later response in the run)
 * shows nothing changed since a screenshot taken before the action. A comparison with a screenshot
 * of this same response counts only when that one ended before the action started.
 */
function unchangedScreens(calls: readonly ToolCall[], nextState: Turn['nextState']): UnchangedScreen[] {
  const own = nextState.toolResults;
  const results = nextState.screenAfter ? [...own, nextState.screenAfter] : own;
  const resultOf = new Map(own.map((r) => [r.toolCallId, r]));
  const found: UnchangedScreen[] = [];
  for (const call of calls) {
    const action = screenAction(call);
    if (action === null) continue;
    const shot = screenshotAfter(call, results);
    const screen = shot?.screen;
    if (!shot || screen?.comparedTo === undefined || screen.changedShare !== 0 || screen.hashDistance !== 0) continue;
    const comparedToThisResponse = calls.some((c) => c.id === screen.comparedTo);
    if (comparedToThisResponse && !endedBefore(resultOf.get(screen.comparedTo), resultOf.get(call.id))) continue;
    found.push({ toolCallId: call.id, toolName: call.name, action, screenshotCallId: shot.toolCallId });
  }
  return found;
}

/** The user message that produced the action (internal-context blocks skipped). */
export function userRequest(turn: Turn): string | undefined {
  const i = lastRealUserIndex(turn.context.messages);
  return i < 0 ? undefined : turn.context.messages[i]!.content;
}

export function computeEvidence(turn: Turn): Evidence {
  const ns = turn.nextState;
  const failures = ns.toolResults.map(toolFailure);
  const toolFailures = failures.filter((f): f is ToolFailure => f !== null);
  return {
    feedback: ns.feedback ?? null,
    toolFailures,
    unchangedScreens: unchangedScreens(turn.action.toolCalls, ns),
    toolSuccesses: failures.length - toolFailures.length,
    userReaction: ns.userMessage === undefined ? null : userReaction(ns.userMessage, userRequest(turn)),
    noNextState: ns.none === true,
  };
}
