// Scoring a turn: cheap evidence, the judge's prompts and answer parsing, majority voting, hint
// extraction for OPD, and a rules-only judge for when no judge model is configured.
// Models are never run here: the caller passes `complete`, bound to whatever endpoint it chose.

import {
  baseDefaults,
  lastRealUserIndex,
  type Complete,
  type Feedback,
  type JudgeMessage,
  type ToolCall,
  type ToolResult,
  type Turn,
  type Vote,
} from './types.ts';

// ---------------------------------------------------------------------------------------------
// Evidence

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

/**
 * Screen actions of this turn whose next screenshot (the first result at or after the action, in
 * call order, that carries one) shows nothing changed since a screenshot taken before the action.
 * A screenshot compared with one taken after the action says nothing about it. Only one turn is
 * seen: a click whose screenshot the model asks for in its next response is not judged here.
 */
function unchangedScreens(calls: readonly ToolCall[], results: readonly ToolResult[]): UnchangedScreen[] {
  const resultOf = new Map(results.map((r) => [r.toolCallId, r]));
  const found: UnchangedScreen[] = [];
  calls.forEach((call, i) => {
    const action = screenAction(call);
    if (action === null) return;
    const next = calls.slice(i).map((c) => resultOf.get(c.id)).find((r) => r?.screen !== undefined);
    const screen = next?.screen;
    if (!next || screen?.comparedTo === undefined || screen.changedShare !== 0 || screen.hashDistance !== 0) return;
    const takenSinceAction = calls.slice(i, calls.findIndex((c) => c.id === next.toolCallId)).some((c) => c.id === screen.comparedTo);
    if (!takenSinceAction) found.push({ toolCallId: call.id, toolName: call.name, action, screenshotCallId: next.toolCallId });
  });
  return found;
}

/** The user message that produced the action (internal-context blocks skipped). */
function request(turn: Turn): string | undefined {
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
    unchangedScreens: unchangedScreens(turn.action.toolCalls, ns.toolResults),
    toolSuccesses: failures.length - toolFailures.length,
    userReaction: ns.userMessage === undefined ? null : userReaction(ns.userMessage, request(turn)),
    noNextState: ns.none === true,
  };
}

// ---------------------------------------------------------------------------------------------
// Rules judge

function feedbackScore(feedback: Feedback | null | undefined): Vote | null {
  if (feedback?.rating === 'good') return 1;
  if (feedback?.rating === 'bad') return -1;
  return null;
}

/**
 * A judge that needs no model. Policy, first match wins:
 * 1. explicit feedback: good → +1, bad → −1;
 * 2. no next state → 0;
 * 3. the user's reply: correction or repeat → −1, approval → +1 (the user saw the outcome, so
 *    this outranks exit codes: `grep` exiting 1 for "no match" can be exactly what was wanted);
 * 4. any tool timed out, exited non-zero or reported an error → −1;
 * 5. a click, keystroke or navigation after which the screen did not change at all → −1;
 * 6. otherwise 0. Tools exiting 0 do not earn +1: a command that ran is not a command that was
 *    right, and a false +1 reinforces whatever the agent did. A changed screen does not earn +1
 *    either: without pixels a wrong page or an error dialog is a change like any other. Neutral
 *    turns are masked out.
 */
export function rulesJudge(evidence: Evidence): Vote {
  const fromFeedback = feedbackScore(evidence.feedback);
  if (fromFeedback !== null) return fromFeedback;
  if (evidence.noNextState) return 0;
  if (evidence.userReaction === 'correction' || evidence.userReaction === 'repeat') return -1;
  if (evidence.userReaction === 'approval') return 1;
  if (evidence.toolFailures.length > 0) return -1;
  if (evidence.unchangedScreens.length > 0) return -1;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Prompts

// Character budgets: OpenClaw requests carry a ~50 KB system prompt and tools can print megabytes;
// the judge needs the gist, so long texts keep their head and tail.
const BUDGET = { request: 3000, action: 4000, toolArgs: 1000, toolOutput: 2000, userReply: 2000, hint: 1000 };

/** `text` cut to `budget` characters (plus a marker), keeping head and tail; never splits a surrogate pair. */
export function clipMiddle(text: string, budget: number): string {
  if (text.length <= budget) return text;
  let head = Math.ceil(budget / 2);
  let tailStart = text.length - (budget - head);
  if (/[\uD800-\uDBFF]/.test(text[head - 1] ?? '')) head--;
  if (/[\uDC00-\uDFFF]/.test(text[tailStart] ?? '')) tailStart++;
  return `${text.slice(0, head)}\n[… ${tailStart - head} characters omitted …]\n${text.slice(tailStart)}`;
}

function describeScreen(screen: NonNullable<ToolResult['screen']>): string {
  const size = `screenshot ${screen.width}x${screen.height}`;
  if (screen.comparedTo === undefined) return `${size}, the first of this tool`;
  const share = screen.changedShare === undefined ? 'a different size' : `${(screen.changedShare * 100).toFixed(1)} % of the screen changed`;
  return `${size}, ${share} since the screenshot of [${screen.comparedTo}] (perceptual hash distance ${screen.hashDistance ?? '?'} of 64)`;
}

function describeTurn(turn: Turn): string {
  const req = request(turn);
  const { action, nextState: ns } = turn;
  const out: string[] = ['## User request', req === undefined ? '(none in context)' : clipMiddle(req, BUDGET.request)];

  out.push('', '## Agent action', action.text.trim() === '' ? '(no text)' : clipMiddle(action.text, BUDGET.action));
  for (const c of action.toolCalls) out.push(`Tool call ${c.name} [${c.id}]: ${clipMiddle(c.arguments, BUDGET.toolArgs)}`);

  out.push('', '## What happened next');
  if (ns.none) out.push('Nothing: the session ended with no reply.');
  for (const r of ns.toolResults) {
    const tags = [
      typeof r.exitCode === 'number' ? `exit code ${r.exitCode}` : null,
      r.isError ? 'error' : null,
      r.timedOut ? 'timed out' : null,
      r.screen ? describeScreen(r.screen) : null,
    ].filter((t) => t !== null);
    const suffix = tags.length > 0 ? ` (${tags.join(', ')})` : '';
    out.push(`Tool result ${r.toolName} [${r.toolCallId}]${suffix}:`, clipMiddle(r.output, BUDGET.toolOutput));
  }
  if (ns.userMessage !== undefined) out.push('User replied:', clipMiddle(ns.userMessage, BUDGET.userReply));
  if (ns.feedback?.rating) out.push(`The user rated this step ${ns.feedback.rating}.`);
  if (ns.feedback?.hint) out.push(`The user's hint: ${clipMiddle(ns.feedback.hint, BUDGET.hint)}`);
  return out.join('\n');
}

const REACTION_LINES: Record<UserReaction, string> = {
  correction: "The user's reply reads as a correction or rejection.",
  approval: "The user's reply reads as approval.",
  repeat: "The user's reply repeats the request: the action probably missed it.",
};

/** One line per cheap signal, for the judge to weigh. */
export function evidenceLines(evidence: Evidence): string[] {
  const lines = evidence.toolFailures.map((f) =>
    f.reason === 'timeout'
      ? `Tool ${f.toolName} [${f.toolCallId}] timed out.`
      : f.reason === 'exit-code'
        ? `Tool ${f.toolName} [${f.toolCallId}] exited with code ${f.exitCode}.`
        : `Tool ${f.toolName} [${f.toolCallId}] reported an error.`,
  );
  for (const u of evidence.unchangedScreens) {
    lines.push(`Tool ${u.toolName} [${u.toolCallId}] was meant to change the screen (${u.action}), but the screenshot after it [${u.screenshotCallId}] shows no change at all.`);
  }
  if (evidence.toolSuccesses > 0) lines.push(`${evidence.toolSuccesses} tool call(s) finished without error.`);
  if (evidence.userReaction) lines.push(REACTION_LINES[evidence.userReaction]);
  if (evidence.feedback?.rating) lines.push(`Explicit user feedback: ${evidence.feedback.rating}.`);
  if (evidence.noNextState) lines.push('Nothing followed the action.');
  return lines;
}

const JUDGE_SYSTEM = `You review one step taken by an AI agent. You see the user's request, the agent's action (its reply and any tool calls) and what happened next (tool results, the user's reply, or both).
Judge the action by what happened next:
- good, \\boxed{1}: the next state shows the action worked and served the request (tools succeeded with useful output, or the user is satisfied or moves on);
- bad, \\boxed{-1}: the next state shows it failed or was unwanted (errors, non-zero exit codes, timeouts, the user correcting, rejecting or repeating the request);
- neutral, \\boxed{0}: the next state does not tell.
Think briefly, then end with exactly one of \\boxed{1}, \\boxed{-1} or \\boxed{0}.`;

export function buildJudgePrompt(turn: Turn, evidence: Evidence): JudgeMessage[] {
  const lines = evidenceLines(evidence);
  const signals = lines.length > 0 ? lines.map((l) => `- ${l}`).join('\n') : '- none';
  return [
    { role: 'system', content: JUDGE_SYSTEM },
    { role: 'user', content: `${describeTurn(turn)}\n\n## Signals detected automatically\n${signals}\n\nWas the action good? End with \\boxed{1}, \\boxed{-1} or \\boxed{0}.` },
  ];
}

const HINT_START = '[HINT_START]';
const HINT_END = '[HINT_END]';

const HINT_SYSTEM = `You read one step taken by an AI agent and what happened next. Decide whether what happened next (the user's reply, tool output) reveals what the agent should have done instead: a hindsight hint.
- If it does, answer \\boxed{1} and write the hint in 1-3 concrete sentences addressed to the agent, between ${HINT_START} and ${HINT_END}.
- If it does not, answer \\boxed{-1} and write no hint.`;

export function buildHintPrompt(turn: Turn): JudgeMessage[] {
  return [
    { role: 'system', content: HINT_SYSTEM },
    { role: 'user', content: `${describeTurn(turn)}\n\nDoes what happened next hold a hint? Answer \\boxed{1} with ${HINT_START}…${HINT_END}, or \\boxed{-1}.` },
  ];
}

// ---------------------------------------------------------------------------------------------
// Parsing answers

const BOXED = '\\boxed';
/** Longest box body considered; real answers are a few characters. */
const MAX_BOX_BODY = 64;
const BOX_WORDS: Record<string, Vote> = {
  '1': 1, '+1': 1, good: 1, '-1': -1, bad: -1, '0': 0, '+0': 0, '-0': 0, neutral: 0,
};

/**
 * The vote in a judge's answer: the LAST `\boxed{…}` decides (a judge that reconsiders ends with
 * its final answer, and OpenClaw-RL also takes the last). If that last box is malformed the answer
 * is invalid (null): earlier boxes are drafts, not fallbacks. Accepted bodies: 1, +1, -1 (also
 * with a Unicode minus), 0, good, bad, neutral, case-insensitive, ignoring whitespace, `$` and
 * LaTeX wrappers such as `\text{…}`. Anything else (empty, 2, 0.5, words) is null.
 * Linear time: lastIndexOf plus a bounded brace scan, no backtracking regex over the input.
 */
export function parseVote(text: string): Vote | null {
  const at = text.lastIndexOf(BOXED);
  if (at < 0) return null;
  let i = at + BOXED.length;
  while (text[i] === ' ') i++;
  if (text[i] !== '{') return null;
  const open = i;
  let depth = 0;
  for (; i < text.length && i - open <= MAX_BOX_BODY; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) break;
  }
  if (depth !== 0) return null;
  const body = text
    .slice(open + 1, i)
    .replace(/\\[a-zA-Z]+/g, '')
    .replace(/[{}\s$]/g, '')
    .replace(/\u2212/g, '-')
    .toLowerCase();
  return BOX_WORDS[body] ?? null;
}

export interface ParsedHint {
  vote: 1 | -1 | null;
  hint: string | null;
}

/** The hint judge's answer: its vote (only ±1 count; 0 is invalid here) and the last hint block. */
export function parseHint(text: string): ParsedHint {
  const v = parseVote(text);
  const end = text.lastIndexOf(HINT_END);
  const start = end < 0 ? -1 : text.lastIndexOf(HINT_START, end);
  const hint = start < 0 ? '' : text.slice(start + HINT_START.length, end).trim();
  return { vote: v === 0 ? null : v, hint: hint === '' ? null : hint };
}

/** Hints longer than this are not the 1–3 sentences asked for; they would also win "longest". */
const MAX_HINT_CHARS = 1000;
const MIN_HINT_CHARS = 10;

/**
 * The hint to distil from: among candidates with a +1 vote and a hint of more than 10 and at most
 * 1,000 characters, the longest (OpenClaw-RL picks the longest: more specific hints carry more
 * information); the first on a tie. Null if none qualifies.
 */
export function chooseHint(candidates: readonly ParsedHint[]): string | null {
  let best: string | null = null;
  for (const c of candidates) {
    const h = c.hint;
    if (c.vote !== 1 || h === null || h.length <= MIN_HINT_CHARS || h.length > MAX_HINT_CHARS) continue;
    if (best === null || h.length > best.length) best = h;
  }
  return best;
}

/** Plurality of the valid (non-null) votes; a tie for first place, or no valid vote, gives 0. */
export function majority(votes: readonly (Vote | null)[]): { score: Vote; valid: number } {
  const counts = new Map<Vote, number>([[1, 0], [-1, 0], [0, 0]]);
  let valid = 0;
  for (const v of votes) {
    if (v === null) continue;
    counts.set(v, counts.get(v)! + 1);
    valid++;
  }
  const top = Math.max(...counts.values());
  const leaders = [...counts].filter(([, n]) => n === top);
  return { score: valid > 0 && leaders.length === 1 ? leaders[0]![0] : 0, valid };
}

// ---------------------------------------------------------------------------------------------
// Running votes

/** Runs at most n tasks at a time; share one across turns so a scoring loop cannot flood the judge. */
export type Limiter = <T>(task: () => Promise<T>) => Promise<T>;

export function createLimiter(n: number): Limiter {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`limiter size must be a positive integer, got ${n}`);
  let active = 0;
  const waiting: (() => void)[] = [];
  const acquire = (): Promise<void> => {
    if (active < n) {
      active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => waiting.push(resolve));
  };
  // A finishing task hands its slot straight to the next waiter, so `active` never overshoots n.
  const release = (): void => {
    const next = waiting.shift();
    if (next) next();
    else active--;
  };
  return async (task) => {
    await acquire();
    try {
      return await task();
    } finally {
      release();
    }
  };
}

export const judgeDefaults = Object.freeze({
  m: baseDefaults.m,
  temperature: baseDefaults.temperature,
  /** Room for a thinking judge's reasoning before its box (OpenClaw-RL allows 4,096–8,192). */
  maxTokens: 4096,
  timeoutMs: 120_000,
});

export interface ScoringOptions {
  /** The judge model. Without it judgeTurn falls back to rulesJudge and extractHint to explicit hints. */
  complete?: Complete;
  m?: number;
  temperature?: number;
  maxTokens?: number;
  /** Per vote, counted from when the vote starts (not while it waits in the limiter). */
  timeoutMs?: number;
  limiter?: Limiter;
  /** Aborts every pending vote; aborted votes count as failures. */
  signal?: AbortSignal;
}

/** One judge call; null on error, timeout, abort or a non-string answer. Never throws. */
async function callOnce(complete: Complete, messages: JudgeMessage[], opts: ScoringOptions): Promise<string | null> {
  if (opts.signal?.aborted) return null;
  const temperature = opts.temperature ?? judgeDefaults.temperature;
  const maxTokens = opts.maxTokens ?? judgeDefaults.maxTokens;
  const timeoutMs = opts.timeoutMs ?? judgeDefaults.timeoutMs;
  const ac = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  // Raced against the call, so a `complete` that ignores its signal still cannot hold the vote.
  const stopped = new Promise<never>((_, reject) => {
    const stop = (reason: unknown): void => {
      ac.abort(reason);
      reject(reason);
    };
    timer = setTimeout(() => stop(new Error(`judge vote timed out after ${timeoutMs} ms`)), timeoutMs);
    onAbort = () => stop(opts.signal?.reason);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    const text: unknown = await Promise.race([complete(messages, { temperature, maxTokens, signal: ac.signal }), stopped]);
    return typeof text === 'string' ? text : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** m independent samples of the same prompt, each parsed; a failed call yields null. */
async function runVotes<T>(complete: Complete, messages: JudgeMessage[], parse: (text: string) => T, opts: ScoringOptions): Promise<(T | null)[]> {
  const m = opts.m ?? judgeDefaults.m;
  const limit: Limiter = opts.limiter ?? ((task) => task());
  const one = async (): Promise<T | null> => {
    const text = await callOnce(complete, messages, opts);
    return text === null ? null : parse(text);
  };
  return Promise.all(Array.from({ length: m }, () => limit(one)));
}

export interface JudgeResult {
  score: Vote;
  /** One entry per judge call; null where the call failed or the answer had no valid box. */
  votes: (Vote | null)[];
  valid: number;
  failures: number;
  /**
   * feedback: explicit rating, no call made; none: no next state, no call made; judge: the
   * majority of valid votes; rules: rulesJudge, because no judge is configured or no vote was
   * valid (a judge that is down should not erase a clear exit code 2).
   */
  source: 'feedback' | 'none' | 'judge' | 'rules';
}

export async function judgeTurn(turn: Turn, opts: ScoringOptions = {}): Promise<JudgeResult> {
  const evidence = computeEvidence(turn);
  const none = { votes: [], valid: 0, failures: 0 };
  const fromFeedback = feedbackScore(evidence.feedback);
  if (fromFeedback !== null) return { score: fromFeedback, ...none, source: 'feedback' };
  if (evidence.noNextState) return { score: 0, ...none, source: 'none' };
  if (!opts.complete) return { score: rulesJudge(evidence), ...none, source: 'rules' };

  const votes = await runVotes(opts.complete, buildJudgePrompt(turn, evidence), parseVote, opts);
  const { score, valid } = majority(votes);
  const counted = { votes, valid, failures: votes.length - valid };
  return valid === 0 ? { score: rulesJudge(evidence), ...counted, source: 'rules' } : { score, ...counted, source: 'judge' };
}

export interface HintResult {
  hint: string | null;
  /** One entry per judge call; `{vote: null, hint: null}` where the call failed. */
  votes: ParsedHint[];
  /** Calls that failed or answered without a valid ±1 box. */
  failures: number;
  source: 'feedback' | 'none' | 'judge';
}

/** The hindsight hint for OPD: explicit `/clawrl hint <text>` is taken as is; otherwise m judge votes and chooseHint. */
export async function extractHint(turn: Turn, opts: ScoringOptions = {}): Promise<HintResult> {
  const explicit = turn.nextState.feedback?.hint?.trim();
  if (explicit) return { hint: explicit, votes: [], failures: 0, source: 'feedback' };
  if (turn.nextState.none || !opts.complete) return { hint: null, votes: [], failures: 0, source: 'none' };

  const results = await runVotes(opts.complete, buildHintPrompt(turn), parseHint, opts);
  const votes = results.map((r) => r ?? { vote: null, hint: null });
  return { hint: chooseHint(votes), votes, failures: votes.filter((v) => v.vote === null).length, source: 'judge' };
}
