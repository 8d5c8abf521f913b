// Learning curves per weight version, read from the store: how the turns each version served
// were rewarded (is the policy getting better?), and what its training batch looked like.
// Shared by /metrics, the dashboard and `status --watch`.
import type { Store, WeightVersionRecord } from './store.ts';
import { versionNumber } from './weights.ts';
import { HealthReader, type VersionHealth, type VersionVerdict } from './health.ts';

export interface VersionStats {
  version: string;
  /** 0 for base; the x axis of the learning curves. */
  number: number;
  parent: string | null;
  recipe: string;
  createdAt: number;
  /** The turns this version's responses became; reward is over the scored ones (+1 counts as a hit). */
  served: { turns: number; scored: number; meanReward: number | null; hitRate: number | null };
  /** The batch that trained this version: turns, their mean reward, the mean advantage per trained token. */
  batch: { turns: number; meanReward: number | null; meanAdvantage: number | null };
  loss: number | null;
  trainMs: number | null;
  /** Live-traffic health (reward with its interval, entropy, repetition, length, drift); null if it served no turn. */
  health: VersionHealth | null;
  /** Why the guard rolled it back (or that a person kept it); null if neither. */
  verdict: VersionVerdict | null;
}

const BASE: WeightVersionRecord = { version: 'base', parent: null, recipe: 'base', createdAt: 0, turnIds: [], metrics: {} };

const mean = (sum: number, n: number) => (n > 0 ? sum / n : null);
const metric = (record: WeightVersionRecord, name: string) => (typeof record.metrics[name] === 'number' ? record.metrics[name] : null);

export class VersionStatsReader {
  /** A trained batch never changes, so its summary is computed once per version. */
  private readonly batches = new Map<string, VersionStats['batch']>();
  /** Several readers (a scrape, the dashboard, `status --watch`) ask often; one answer serves them until the store or the health changes. */
  private cached?: { txn: number; health: Map<string, VersionHealth>; stats: VersionStats[] };
  readonly health: HealthReader;

  constructor(private readonly store: Store) {
    this.health = new HealthReader(store);
  }

  /** base first, then every version that is recorded or served a turn, oldest first. O(versions): the served counts are the health reader's. */
  read(): VersionStats[] {
    const txn = this.store.lastTxnId();
    const health = this.health.read();
    if (this.cached?.txn === txn && this.cached.health === health) return this.cached.stats;
    const records = new Map<string, WeightVersionRecord>([['base', BASE]]);
    for (const record of this.store.versionRecords()) records.set(record.version, record);
    for (const version of health.keys()) if (!records.has(version)) records.set(version, { ...BASE, version, recipe: 'unknown' });
    const stats = [...records.values()]
      .sort((a, b) => versionNumber(a.version) - versionNumber(b.version))
      .map((record): VersionStats => {
        const s = this.health.servedBy(record.version) ?? { turns: 0, rated: 0, sum: 0, hits: 0 };
        return {
          version: record.version,
          number: versionNumber(record.version),
          parent: record.parent,
          recipe: record.recipe,
          createdAt: record.createdAt,
          served: { turns: s.turns, scored: s.rated, meanReward: mean(s.sum, s.rated), hitRate: mean(s.hits, s.rated) },
          batch: this.batchOf(record),
          loss: metric(record, 'loss'),
          trainMs: metric(record, 'durationMs'),
          health: health.get(record.version) ?? null,
          verdict: this.health.verdicts.get(record.version) ?? null,
        };
      });
    this.cached = { txn, health, stats };
    return stats;
  }

  private batchOf(record: WeightVersionRecord): VersionStats['batch'] {
    // Not cached: a version that served before it was recorded (an adopted one) has no batch yet, and may get one.
    if (record.turnIds.length === 0) return { turns: 0, meanReward: null, meanAdvantage: null };
    const known = this.batches.get(record.version);
    if (known) return known;
    let rewards = 0;
    let rewarded = 0;
    let advantage = 0;
    let tokens = 0;
    for (const id of record.turnIds) {
      const hash = id.lastIndexOf('#');
      const score = this.store.score([id.slice(0, hash), Number(id.slice(hash + 1))]);
      if (!score) continue;
      if (score.score !== null) {
        rewards += score.score;
        rewarded++;
      }
      score.advantages?.forEach((a, i) => {
        if ((score.mask?.[i] ?? 1) === 0) return;
        advantage += a;
        tokens++;
      });
    }
    const batch = { turns: record.turnIds.length, meanReward: mean(rewards, rewarded), meanAdvantage: mean(advantage, tokens) };
    this.batches.set(record.version, batch);
    return batch;
  }
}

/** How long the step in progress should take: the median training time of the last few versions. */
export function expectedStepMs(stats: VersionStats[]): number | null {
  const recent = stats
    .map((s) => s.trainMs)
    .filter((ms): ms is number => ms !== null)
    .slice(-5)
    .sort((a, b) => a - b);
  return recent.length ? recent[Math.floor(recent.length / 2)]! : null;
}
