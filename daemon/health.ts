// Per-version health, measured on live traffic: what the turns each weight version served say
// about it. Read from the store (turns and the samples they were made of), so it survives a
// restart; shared by `weights list`, /status, /metrics, the dashboard and the guard (guard.ts).
//
// The statistics, and why:
// - Reward: the mean of the scored turns' rewards (+1 / 0 / −1) with a 95 % Wilson interval on
//   (reward + 1) / 2. A variable in [0, 1] with mean p has variance at most p(1 − p), so the Wilson
//   interval (exact enough for the few dozen turns a version serves, unlike the normal one, and
//   never outside [−1, 1]) is conservative for three-valued rewards.
// - Entropy: the mean surprisal −log π(y_t) of the sampled tokens, from the logprobs recorded as
//   they were generated. With y_t drawn from π it is an unbiased estimate of the per-token entropy
//   (E[−log π(y)] = H(π)); no backend has to report whole distributions. A collapsing policy puts
//   all its mass on few tokens and this falls towards 0.
// - Repetition: distinct-2, the share of distinct token bigrams among a reply's bigrams, averaged
//   over replies; a reply that loops scores near 0.
// - Reply length in tokens.
// - Drift: mean log π(y_t) − log π_base(y_t) over the served tokens of a few replies, an unbiased
//   estimate of KL(π ‖ π_base) per token for the same reason as the entropy; only where the backend
//   trains (a TrainingBackend scores with the base weights), measured by the guard in the background.
import type { Database } from 'lmdb';
import type { SampleRecord, Store, TurnChange, TurnRecord } from './store.ts';
import type { TrainingBackend } from './backends/types.ts';
import { versionNumber } from './weights.ts';

/** z of a two-sided 95 % interval. */
const Z95 = 1.959964;

export interface RewardSummary {
  /** Scored turns (a reward of +1, 0 or −1). */
  rated: number;
  mean: number | null;
  /** 95 % Wilson interval of the mean (see above); null with no rated turn. */
  low: number | null;
  high: number | null;
  /** Sum of squared rewards, for the guard's variance. */
  sumSq: number;
}

export interface VersionHealth {
  version: string;
  /** Turns this version served whose tokens were recorded (redacted replies keep none). */
  replies: number;
  reward: RewardSummary;
  /** Mean surprisal of the sampled tokens, nats per token (an entropy estimate); null with no tokens. */
  entropy: number | null;
  /** Mean distinct-2 of the replies of 2 tokens or more; null without any. */
  distinct2: number | null;
  /** Mean reply length in tokens. */
  replyTokens: number | null;
  /** Estimated KL to the base weights, nats per token; null where not measured (or base). */
  drift: number | null;
  driftReplies: number;
}

/** 95 % Wilson score interval of a proportion with `successes` (may be fractional) of `n`. */
export function wilson(successes: number, n: number, z = Z95): { low: number; high: number } {
  if (n <= 0) return { low: 0, high: 1 };
  const p = successes / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

export function rewardSummary(rated: number, sum: number, sumSq: number): RewardSummary {
  if (rated === 0) return { rated, mean: null, low: null, high: null, sumSq };
  const { low, high } = wilson((sum + rated) / 2, rated);
  return { rated, mean: sum / rated, low: 2 * low - 1, high: 2 * high - 1, sumSq };
}

/** Share of distinct bigrams among a token sequence's bigrams; null under 2 tokens. */
export function distinct2(tokens: number[]): number | null {
  if (tokens.length < 2) return null;
  const seen = new Set<number>();
  // Token ids stay far below 2^26 (vocabularies are < 300,000), so one number keys a bigram.
  for (let i = 1; i < tokens.length; i++) seen.add(tokens[i - 1]! * 67_108_864 + tokens[i]!);
  return seen.size / (tokens.length - 1);
}

/** What one reply contributes: a served reply never changes, so this is all of it a version keeps. */
interface ReplySummary {
  surprisal: number;
  tokens: number;
  distinct2: number | null;
}

/** A reply whose tokens were recorded, each with its logprob (redacted ones keep none). */
const hasTokens = (sample: SampleRecord | undefined): sample is SampleRecord => !!sample && sample.responseTokens.length > 0 && sample.logprobs.length === sample.responseTokens.length;

function replySummary(sample: SampleRecord | undefined): ReplySummary | null {
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

const empty = (): Served => ({ turns: 0, rated: 0, sum: 0, sumSq: 0, hits: 0, replies: 0, surprisal: 0, tokens: 0, distinctSum: 0, distinctN: 0 });

/** Adds (sign 1) or takes away (sign −1) what one turn, with its reply's summary, contributes. */
function count(a: Served, turn: TurnRecord, reply: ReplySummary | null, sign: 1 | -1): void {
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
    const a = served.get(turn.weightVersion) ?? empty();
    served.set(turn.weightVersion, a);
    count(a, turn, replySummary(store.sample(turn.sampleId)), 1);
  }
  return served;
}

/** What the guard (or a person) decided about a version, kept so that `weights list` can say why. */
export interface VersionVerdict {
  /** rolled-back: stopped serving; kept: a person chose to serve it again, the guard leaves it alone; promoted: a canary passed. */
  state: 'rolled-back' | 'kept' | 'promoted';
  by: 'guard' | 'person';
  reason: string;
  at: number;
}

/** Replies per version whose drift is measured: enough for a mean, cheap next to serving. */
export const DRIFT_REPLIES = 16;

export class HealthReader {
  /**
   * By version, kept from the store's turn changes (one full read at construction), so that a read
   * costs O(versions) however many turns the store keeps.
   */
  private readonly served: Map<string, Served>;
  /** version → sampleId → [Σ (log π − log π_base), tokens]; at most DRIFT_REPLIES a version, dropped with their turns. */
  private readonly drift = new Map<string, Map<string, [number, number]>>();
  /** Bumped by every change: read() builds its answer once per revision. */
  private revision = 0;
  private cached?: { revision: number; health: Map<string, VersionHealth> };
  /** version → verdict, in the store (a sub-database of its own, as hint memory keeps one). */
  readonly verdicts: Database<VersionVerdict, string>;

  constructor(private readonly store: Store) {
    this.verdicts = store.openDB('versionVerdicts');
    this.served = servedFromScratch(store);
    store.onTurnChange((change) => this.apply(change));
  }

  private apply({ before, after, sample }: TurnChange): void {
    // The store gives the sample of a new or removed turn; a turn changed in place keeps its
    // sample and version, so its reply counts the same before and after and is left out of both.
    const reply = sample ? replySummary(sample) : null;
    // Added first: taken away first, a version's only turn would take its reply sums with it.
    if (after) this.count(after, reply, 1);
    if (before) this.count(before, reply, -1);
    if (before && !after) {
      const measured = this.drift.get(before.weightVersion);
      measured?.delete(before.sampleId);
      if (measured?.size === 0) this.drift.delete(before.weightVersion);
    }
    this.revision++;
  }

  private count(turn: TurnRecord, reply: ReplySummary | null, sign: 1 | -1): void {
    const a = this.served.get(turn.weightVersion) ?? empty();
    count(a, turn, reply, sign);
    // A version whose turns are all gone is not listed, as if it never served (and its sums' rounding goes with it).
    if (a.turns === 0) this.served.delete(turn.weightVersion);
    else this.served.set(turn.weightVersion, a);
  }

  /** What each version that has turns served, by version (for VersionStatsReader). */
  servedBy(version: string): Served | undefined {
    return this.served.get(version);
  }

  /** Health of every version that served a turn, by version, oldest first; the same Map until something changes. */
  read(): Map<string, VersionHealth> {
    if (this.cached?.revision === this.revision) return this.cached.health;
    const health = new Map<string, VersionHealth>();
    for (const [version, a] of [...this.served].sort(([x], [y]) => versionNumber(x) - versionNumber(y))) {
      let driftSum = 0;
      let driftTokens = 0;
      const measured = this.drift.get(version) ?? new Map<string, [number, number]>();
      for (const [sum, tokens] of measured.values()) {
        driftSum += sum;
        driftTokens += tokens;
      }
      health.set(version, {
        version,
        replies: a.replies,
        reward: rewardSummary(a.rated, a.sum, a.sumSq),
        entropy: a.tokens > 0 ? a.surprisal / a.tokens : null,
        distinct2: a.distinctN > 0 ? a.distinctSum / a.distinctN : null,
        replyTokens: a.replies > 0 ? a.tokens / a.replies : null,
        drift: driftTokens > 0 ? driftSum / driftTokens : null,
        driftReplies: measured.size,
      });
    }
    this.cached = { revision: this.revision, health };
    return health;
  }

  /**
   * Scores up to DRIFT_REPLIES replies of a version with the base weights. Returns how many were measured now. Serving is untouched: backends score off
   * the serving path (the embedded one on its training worker).
   */
  async measureDrift(backend: TrainingBackend, version: string): Promise<number> {
    if (version === 'base') return 0;
    const measured = this.drift.get(version) ?? new Map<string, [number, number]>();
    // Nothing left to measure costs nothing; otherwise the turns are walked until enough are
    // found (no index by version: a version's replies may be anywhere in the store).
    if (measured.size >= Math.min(DRIFT_REPLIES, this.served.get(version)?.replies ?? 0)) return 0;
    let now = 0;
    for (const turn of this.store.turnsOf()) {
      if (turn.weightVersion !== version || measured.has(turn.sampleId)) continue;
      const sample = this.store.sample(turn.sampleId);
      if (!hasTokens(sample)) continue;
      const reference = await backend.score(sample.promptTokens, sample.responseTokens, { reference: true });
      // Kept only while its turn is: a turn removed meanwhile would leave an entry nothing drops.
      if (this.store.turn([turn.sessionKey, turn.turnIndex])?.sampleId !== turn.sampleId) continue;
      let sum = 0;
      sample.logprobs.forEach((l, i) => (sum += l - reference[i]!));
      measured.set(turn.sampleId, [sum, sample.responseTokens.length]);
      this.drift.set(version, measured);
      this.revision++;
      now++;
      if (measured.size >= DRIFT_REPLIES) break;
    }
    return now;
  }
}

const signed = (x: number) => (x >= 0 ? '+' : '') + x.toFixed(2);

/** One line for the CLI: reward with its interval, then the collapse and drift signals. */
export function describeHealth(h: VersionHealth): string {
  const r = h.reward;
  const reward = r.mean === null ? 'reward – (no scored turns)' : `reward ${signed(r.mean)} [${signed(r.low!)}, ${signed(r.high!)}] over ${r.rated} scored`;
  const num = (x: number | null, digits: number) => (x === null ? '–' : x.toFixed(digits));
  const drift = h.drift === null ? '' : ` · drift ${h.drift.toFixed(3)} nats/token (${h.driftReplies} replies)`;
  return `${reward} · entropy ${num(h.entropy, 2)} nats/token · distinct-2 ${num(h.distinct2, 2)} · ${num(h.replyTokens, 1)} tokens/reply (${h.replies} replies)${drift}`;
}
