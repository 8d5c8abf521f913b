// The safety net of online learning: watches the version serving and rolls it back when it is
// significantly worse than its reference or shows collapse. Training then continues from that version (the trainer's rollback reloads its
// training copy), the plugins are told (weights.updated, reason 'rollback'), the log says why,
// and `weights list` shows the verdict. A person's word wins: nothing is judged while a version
// is pinned, and a version a person rolls back to by hand is never rolled back by the guard.
// Serving never pauses for any of it: a rollback is a swap between requests.
//
// Statistics:
// - The reference of a version is its nearest ancestor that proved itself: one promoted (see
//   below) or kept by a person, else base. Not simply the parent: every turn is a training turn,
//   so a version serves about one batch of turns before the next replaces it; a bad version's
//   child, compared with its bad parent, would look fine and bake the regression in.
// - "Significantly worse": a confidence sequence for the difference of mean rewards (version −
//   reference), the normal-mixture sequential test (mSPRT) of Johari, Pekelis & Walsh ("Always valid
//   inference", 2017). The guard looks again after every scored turn; a fixed-n test looked at
//   that often would raise false alarms far above its α, while this interval holds at every look
//   at once with probability 1 − α. α = 0.05; the mixture's τ = 0.5 reward units makes the interval
//   narrowest for the 16–32 rated turns a version serves (τ² near the variance of the difference
//   then), where a drop of about 0.8 is caught. The variance of
//   each mean is floored (see VARIANCE_FLOOR) so that a handful of equal rewards does not make a
//   zero-width interval, and a test needs MIN_RATED scored turns on each side. Such a version goes
//   back to its reference.
// - Promotion: once the interval's lower end is above −MARGIN (not worse than the reference by
//   more than that, at the same α), the version is promoted and becomes its descendants' reference.
// - Collapse: the entropy estimate or distinct-2 of the version's replies against a reference,
//   the nearest ancestor with MIN_REPLIES replies (base at the root). Relative thresholds, since
//   absolute ones differ by model and tokenizer: entropy below ENTROPY_FLOOR of the reference's,
//   or distinct-2 below DISTINCT_FLOOR of the reference's, within one step: learning a preference
//   sharpens a policy step by step, a collapse falls by more than half at once. Ratings do not
//   overrule these signals: a rater who rewards repetition (bench/guard.ts's hostile user) would
//   otherwise lead the policy into collapse unopposed. Such a version goes back to its nearest
//   ancestor not rolled back.
import type { Logger } from './log.ts';
import type { TrainingBackend } from './backends/types.ts';
import type { Store } from './store.ts';
import type { Trainer } from './trainer.ts';
import type { HealthReader, VersionHealth, VersionVerdict } from './health.ts';
import { Loop } from './loop.ts';

export const ALPHA = 0.05;
export const TAU = 0.5;
/** Non-inferiority margin of a promotion, in reward units (a twentieth of the range). */
export const MARGIN = 0.1;
/** Rewards lie in [−1, 1]: variance at most 1. 0.05 is a policy right 97.5 % of the time. */
export const VARIANCE_FLOOR = 0.05;
export const MIN_RATED = 10;
export const MIN_REPLIES = 16;
export const ENTROPY_FLOOR = 0.4;
export const DISTINCT_FLOOR = 0.5;
/**
 * Batches of waiting turns after which an undecided canary serves everyone (see check): at a 0.2
 * share a canary collects the test's MIN_RATED turns in about 3 batches of 16; 4 leaves room.
 */
export const HOLD_BATCHES = 4;

export interface Comparison {
  /** Mean reward of the version minus the parent's. */
  difference: number;
  /** The always-valid 95 % interval of the difference. */
  low: number;
  high: number;
}

function meanAndVariance(h: VersionHealth): { mean: number; variance: number } {
  const { rated, mean, sumSq } = h.reward;
  const m = mean ?? 0;
  // Unbiased sample variance from the sums, floored.
  const variance = rated > 1 ? Math.max(VARIANCE_FLOOR, (sumSq - rated * m * m) / (rated - 1)) : 1;
  return { mean: m, variance };
}

/**
 * The mSPRT confidence sequence for the difference of the two mean rewards (normal approximation,
 * V = s²_v/n_v + s²_p/n_p): θ̂ ± sqrt(V(V+τ²)/τ² · (log((V+τ²)/V) − 2 log α)). Null when either
 * side has fewer than MIN_RATED scored turns.
 */
export function compareRewards(version: VersionHealth, parent: VersionHealth, alpha = ALPHA, tau = TAU): Comparison | null {
  if (version.reward.rated < MIN_RATED || parent.reward.rated < MIN_RATED) return null;
  const v = meanAndVariance(version);
  const p = meanAndVariance(parent);
  const V = v.variance / version.reward.rated + p.variance / parent.reward.rated;
  const t2 = tau * tau;
  const half = Math.sqrt(((V * (V + t2)) / t2) * (Math.log((V + t2) / V) - 2 * Math.log(alpha)));
  const difference = v.mean - p.mean;
  return { difference, low: difference - half, high: difference + half };
}

const fmt = (x: number) => (x >= 0 ? '+' : '') + x.toFixed(2);

export type Diagnosis = { kind: 'collapse' | 'worse'; reason: string } | { kind: 'promote'; reason: string } | null;

/**
 * What the guard should do with a serving version: roll it back (collapse against `collapseRef`,
 * or a reward significantly worse than `reference`), promote it, or nothing yet (null).
 */
export function diagnose(version: VersionHealth, reference: VersionHealth | undefined, collapseRef: VersionHealth | undefined): Diagnosis {
  if (collapseRef && version.replies >= MIN_REPLIES) {
    if (version.entropy !== null && collapseRef.entropy !== null && version.entropy < ENTROPY_FLOOR * collapseRef.entropy) {
      return { kind: 'collapse', reason: `collapse: entropy ${version.entropy.toFixed(3)} nats/token, under ${ENTROPY_FLOOR} × ${collapseRef.version}'s ${collapseRef.entropy.toFixed(3)} (${version.replies} replies)` };
    }
    if (version.distinct2 !== null && collapseRef.distinct2 !== null && version.distinct2 < DISTINCT_FLOOR * collapseRef.distinct2) {
      return { kind: 'collapse', reason: `collapse: distinct-2 ${version.distinct2.toFixed(2)} (repetition), under ${DISTINCT_FLOOR} × ${collapseRef.version}'s ${collapseRef.distinct2.toFixed(2)} (${version.replies} replies)` };
    }
  }
  const c = reference && compareRewards(version, reference);
  if (!c) return null;
  const summary = `reward ${fmt(version.reward.mean!)} over ${version.reward.rated} turns vs ${fmt(reference!.reward.mean!)} over ${reference!.reward.rated}; difference ${fmt(c.difference)}, always-valid 95 % interval [${fmt(c.low)}, ${fmt(c.high)}]`;
  if (c.high < 0) return { kind: 'worse', reason: `significantly worse than ${reference!.version}: ${summary}` };
  if (c.low > -MARGIN) return { kind: 'promote', reason: `not worse than ${reference!.version} by ${MARGIN} or more: ${summary}` };
  return null;
}

export interface GuardOptions {
  store: Store;
  log: Logger;
  backend: TrainingBackend;
  trainer: Trainer;
  health: HealthReader;
  pollMs?: number;
}

export interface GuardStatus {
  /** The verdict on the version serving, if any. */
  serving: VersionVerdict | null;
  /** The last automatic rollback: from, to, why. */
  lastRollback: { from: string; to: string; reason: string; at: number } | null;
}

export class Guard {
  private readonly loop: Loop<void>;
  private lastRollback: GuardStatus['lastRollback'] = null;

  constructor(private readonly opts: GuardOptions) {
    this.loop = new Loop(() => this.check().catch((err: Error) => opts.log.error('the version guard failed; it will look again', { error: err.stack })), opts.pollMs ?? 2_000);
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Looks now (after a scored turn) rather than at the next poll. */
  nudge(): Promise<void | undefined> {
    return this.loop.run();
  }

  status(): GuardStatus {
    return { serving: this.opts.health.verdicts.get(this.opts.trainer.status().serving) ?? null, lastRollback: this.lastRollback };
  }

  /** A person rolled back to `version` by hand: the guard will leave it alone. */
  async keptByPerson(version: string): Promise<void> {
    if (version === 'base') return;
    await this.opts.health.verdicts.put(version, { state: 'kept', by: 'person', reason: 'rolled back to by hand', at: Date.now() });
  }

  private parentOf(version: string): string | null {
    if (version === 'base') return null;
    return this.opts.store.version(version)?.parent ?? 'base';
  }

  /** The nearest ancestor promoted or kept by a person, else base. */
  private referenceOf(version: string): string {
    let v = this.parentOf(version) ?? 'base';
    for (; v !== 'base'; v = this.parentOf(v) ?? 'base') {
      const state = this.opts.health.verdicts.get(v)?.state;
      if (state === 'promoted' || state === 'kept') break;
    }
    return v;
  }

  /** The nearest ancestor the guard has not rolled back (base at the root). */
  private lastGood(version: string): string {
    let v = this.parentOf(version) ?? 'base';
    while (v !== 'base' && this.opts.health.verdicts.get(v)?.state === 'rolled-back') v = this.parentOf(v) ?? 'base';
    return v;
  }

  private async check(): Promise<void> {
    // Also while a step runs: versions follow each other closely, and one could serve its whole
    // life during steps. A rollback waits for the step; the version it made is then replaced.
    const { serving, pinned, canary } = this.opts.trainer.status();
    if (pinned !== null) return;
    // A canary is judged against the version serving everyone else, on the same days' traffic.
    if (canary) await this.judge(canary.version, serving, serving);
    else if (serving !== 'base') await this.judge(serving, this.referenceOf(serving), null);
    // A canary holds training. HOLD_BATCHES of turns waiting end the hold undecided: with few
    // sessions a canary may get little traffic. It then serves everyone, watched as any version.
    const now = this.opts.trainer.status();
    if (now.canary && now.waiting >= HOLD_BATCHES * now.batchSize) {
      const reason = `undecided on canary while ${now.waiting} turns waited to train (${HOLD_BATCHES} batches): serves everyone, still watched`;
      await this.opts.health.verdicts.put(now.canary.version, { state: 'promoted', by: 'guard', reason, at: Date.now() });
      await this.opts.trainer.promote(now.canary.version, reason);
    }
  }

  /** Promotes, rolls back, or leaves `version`; `canaryOf` is the main version when it is on canary. */
  private async judge(version: string, ref: string, canaryOf: string | null): Promise<void> {
    const { trainer, backend, health, log } = this.opts;
    const verdict = health.verdicts.get(version);
    if (verdict?.by === 'person' || verdict?.state === 'rolled-back') return;
    await health.measureDrift(backend, version);
    const all = health.read();
    const mine = all.get(version);
    if (!mine) return;
    // Collapse is measured against the nearest ancestor with enough replies to say what normal is.
    let collapseRef: VersionHealth | undefined;
    for (let v = this.parentOf(version); v !== null && !collapseRef; v = this.parentOf(v)) {
      const h = all.get(v);
      if (h && h.replies >= MIN_REPLIES) collapseRef = h;
    }
    const found = diagnose(mine, all.get(ref), collapseRef);
    if (!found) return;
    const at = Date.now();
    if (found.kind === 'promote') {
      if (verdict?.state !== 'promoted') await health.verdicts.put(version, { state: 'promoted', by: 'guard', reason: found.reason, at });
      if (canaryOf !== null) await trainer.promote(version, found.reason);
      return;
    }
    // A promoted version can still fall later (the interval holds at every look): it goes back too.
    const { reason } = found;
    const to = canaryOf ?? (found.kind === 'worse' ? ref : this.lastGood(version));
    await health.verdicts.put(version, { state: 'rolled-back', by: 'guard', reason, at });
    log.warn(`rolled back ${version}${canaryOf !== null ? ' (on canary)' : ''} to ${to}: ${reason}`, { version, to });
    await trainer.rollback(to);
    this.lastRollback = { from: version, to, reason, at };
  }
}
