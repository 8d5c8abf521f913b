// What the turns each weight version served add up to: the sums behind its health (health.ts)
// and its served counts (stats.ts). The store keeps them per version, updated in the transaction
// that changes a turn, so that reading them costs O(versions) however many turns it holds.
import type { SampleRecord, Store, TurnRecord } from './store.ts';

/** Share of distinct bigrams among a token sequence's bigrams; null under 2 tokens. */
export function distinct2(tokens: number[]): number | null {
  if (tokens.length < 2) return null;
  const seen = new Set<number>();
  // Token ids stay far below 2^26 (vocabularies are < 300,000), so one number keys a bigram.
  for (let i = 1; i < tokens.length; i++) seen.add(tokens[i - 1]! * 67_108_864 + tokens[i]!);
  return seen.size / (tokens.length - 1);
}

/** What one reply contributes: a served reply never changes, so this is all of it a version keeps. */
export interface ReplySummary {
  surprisal: number;
  tokens: number;
  distinct2: number | null;
}

/** A reply whose tokens were recorded, each with its logprob (redacted ones keep none). */
export const hasTokens = (sample: SampleRecord | undefined): sample is SampleRecord => !!sample && sample.responseTokens.length > 0 && sample.logprobs.length === sample.responseTokens.length;

export function replySummary(sample: SampleRecord | undefined): ReplySummary | null {
  if (!hasTokens(sample)) return null;
  return { surprisal: -sample.logprobs.reduce((s, l) => s + l, 0), tokens: sample.responseTokens.length, distinct2: distinct2(sample.responseTokens) };
}

/** What a version's turns add up to, kept as turns come and go. */
export interface Served {
  turns: number;
  /** Scored turns, their rewards' sum and sum of squares, and those rewarded above 0. */
  rated: number;
  sum: number;
  sumSq: number;
  hits: number;
  /** Turns with recorded tokens, and the sums of their reply summaries. */
  replies: number;
  surprisal: number;
  tokens: number;
  distinctSum: number;
  distinctN: number;
}

export const emptyServed = (): Served => ({ turns: 0, rated: 0, sum: 0, sumSq: 0, hits: 0, replies: 0, surprisal: 0, tokens: 0, distinctSum: 0, distinctN: 0 });

/** Adds (sign 1) or takes away (sign −1) what one turn, with its reply's summary, contributes. */
export function countTurn(a: Served, turn: TurnRecord, reply: ReplySummary | null, sign: 1 | -1): void {
  a.turns += sign;
  if (turn.reward !== null) {
    a.rated += sign;
    a.sum += sign * turn.reward;
    a.sumSq += sign * turn.reward * turn.reward;
    if (turn.reward > 0) a.hits += sign;
  }
  if (!reply) return;
  a.replies += sign;
  a.surprisal += sign * reply.surprisal;
  a.tokens += sign * reply.tokens;
  if (reply.distinct2 !== null) {
    a.distinctSum += sign * reply.distinct2;
    a.distinctN += sign;
  }
}

/** Every turn's contribution summed from scratch, by version: one read of the whole store. */
export function servedFromScratch(store: Store): Map<string, Served> {
  const served = new Map<string, Served>();
  for (const turn of store.turnsOf()) {
    const a = served.get(turn.weightVersion) ?? emptyServed();
    served.set(turn.weightVersion, a);
    countTurn(a, turn, replySummary(store.sample(turn.sampleId)), 1);
  }
  return served;
}

