// Scoring a turn with the judge: m votes on the step (majority) and m hint votes (OPD's hindsight
// hint), bounded by a timeout and a shared limiter. Explicit feedback decides without a call; with
// no judge model configured the rules judge votes. Its parts: evidence.ts, rules.ts, prompts.ts,
// parsing.ts, limiter.ts. Models are never run here: the caller passes `complete`, bound to
// whatever endpoint it chose.
import { baseDefaults, type Complete, type JudgeMessage, type Turn, type Vote } from './types.ts';
import { computeEvidence } from './evidence.ts';
import { feedbackScore, rulesJudge } from './rules.ts';
import { buildHintPrompt, buildJudgePrompt } from './prompts.ts';
import { chooseHint, majority, parseHint, parseVote, type ParsedHint } from './parsing.ts';
import type { Limiter } from './limiter.ts';

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
