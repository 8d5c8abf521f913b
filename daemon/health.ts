// Per-version health, measured on live traffic: what the turns each weight version served say
// about it. Read from the per-version sums the store keeps of its turns and their samples
// (served.ts), so it survives a restart and costs O(versions); shared by `weights list`, /status,
// /metrics, the dashboard and the guard (guard.ts).
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
import type { Store } from './store.ts';
import { hasTokens, type Served } from './served.ts';
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
  /** version → sampleId → [Σ (log π − log π_base), tokens]; at most DRIFT_REPLIES a version, dropped with their turns. */
  private readonly drift = new Map<string, Map<string, [number, number]>>();
  /** Bumped by every drift change: with the store's transaction id, what makes a read fresh. */
  private revision = 0;
  private cached?: { txn: number; revision: number; served: Map<string, Served>; health: Map<string, VersionHealth> };
  /** version → verdict, in the store (a sub-database of its own, as hint memory keeps one). */
  readonly verdicts: Database<VersionVerdict, string>;

  constructor(private readonly store: Store) {
    this.verdicts = store.openDB('versionVerdicts');
    store.onTurnChange(({ before, after }) => {
      if (!before || after) return;
      const measured = this.drift.get(before.weightVersion);
      if (!measured?.delete(before.sampleId)) return;
      if (measured.size === 0) this.drift.delete(before.weightVersion);
      this.revision++;
    });
  }

  /** Health of every version that served a turn, by version, oldest first; the same Map until something changes. */
  read(): Map<string, VersionHealth> {
    return this.current().health;
  }

  /** What the turns of `version` add up to, as of the last read (for VersionStatsReader). */
  servedBy(version: string): Served | undefined {
    return this.current().served.get(version);
  }

  /** O(versions): the sums are the store's (store.servedByVersion), kept with every turn change. */
  private current() {
    const txn = this.store.lastTxnId();
    if (this.cached?.txn === txn && this.cached.revision === this.revision) return this.cached;
    const served = this.store.servedByVersion();
    const health = new Map<string, VersionHealth>();
    for (const [version, a] of [...served].sort(([x], [y]) => versionNumber(x) - versionNumber(y))) {
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
    this.cached = { txn, revision: this.revision, served, health };
    return this.cached;
  }

  /**
   * Scores up to DRIFT_REPLIES replies of a version with the base weights. Returns how many were measured now. Serving is untouched: backends score off
   * the serving path (the embedded one on its training worker).
   */
  async measureDrift(backend: TrainingBackend, version: string): Promise<number> {
    if (version === 'base') return 0;
    const measured = this.drift.get(version) ?? new Map<string, [number, number]>();
    // Nothing left to measure costs nothing; otherwise the version's own turns are walked until enough are found.
    if (measured.size >= Math.min(DRIFT_REPLIES, this.servedBy(version)?.replies ?? 0)) return 0;
    let now = 0;
    for (const turn of this.store.turnsOfVersion(version)) {
      if (measured.has(turn.sampleId)) continue;
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
