// The trainer loop: when enough scored turns wait (or the oldest has waited long enough), one
// clipped policy-gradient step on the backend's training copy, a new weight version written
// atomically, then a hot swap on the serving side (between requests) and weights.updated.
//
// Exactly once: the batch is recorded (`store.startBatch`) before the step and cleared in the
// same transaction that marks its turns trained (`store.finishBatch`). A crash before the version
// folder exists re-runs the same batch; a crash after it only finishes the bookkeeping.
import type { FSWatcher } from 'chokidar';
import { turnIdOf, type Store, type TurnKey, type WeightVersionRecord } from './store.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { TrainExample, TrainMetrics, TrainOptions, TrainingBackend } from './backends/types.ts';
import type { Recipe, RecipeDefaults } from '../recipes/index.ts';
import type { WeightsChange } from '../protocol/index.ts';
import { WeightsDir, versionName, versionNumber } from './weights.ts';
import { Loop } from './loop.ts';
import { inCanary } from './canary.ts';
import { errorMessage } from './errors.ts';

export interface TrainerOptions {
  store: Store;
  log: Logger;
  backend: TrainingBackend;
  weights: WeightsDir;
  recipe: Recipe;
  recipeOptions?: Partial<RecipeDefaults>;
  /** Turns per step (default: the recipe's). */
  batchSize?: number;
  /** Train a smaller batch once the oldest waiting turn has waited this long. */
  maxWaitMs?: number;
  pollMs?: number;
  /** Called after a new version serves (or is pinned away); the daemon tells the plugins. */
  onServing?: (record: WeightVersionRecord, reason: WeightsChange) => void;
  /** Times each step. */
  metrics?: Metrics;
  /**
   * Share of sessions a new version first serves, beside the current one, until the guard
   * promotes or rolls it back (see canary.ts); 0 (default) serves it to everyone at once. Only
   * where the backend serves two adapters side by side (`loadCanary`); elsewhere it is 0.
   */
  canaryShare?: number;
}

export interface StepProgress {
  version: string;
  turns: number;
  phase: 'training' | 'saving' | 'swapping';
  startedAt: number;
}

export interface TrainerStatus {
  serving: string;
  pinned: string | null;
  waiting: number;
  batchSize: number;
  steps: number;
  step: StepProgress | null;
  lastMetrics: TrainMetrics | null;
  /** Why the newest version is not serving (an upstream server refused it); null once one swaps. */
  swapError: string | null;
  /** The version on canary, with its share of sessions; null when none. */
  canary: { version: string; share: number; since: number } | null;
}

export class Trainer {
  private readonly batchSize: number;
  private readonly maxWaitMs: number;
  private readonly poll: Loop<WeightVersionRecord | null>;
  private readonly steps: Loop<WeightVersionRecord | null>;
  private watcher?: FSWatcher;
  private waitingSince?: number;
  private progress: StepProgress | null = null;
  private stepCount = 0;
  private lastMetrics: TrainMetrics | null = null;
  private swapError: string | null = null;
  private canary: TrainerStatus['canary'] = null;
  /** A rollback is switching serving and training: no step starts meanwhile. */
  private switching = false;
  private readonly canaryShare: number;

  constructor(private readonly opts: TrainerOptions) {
    this.batchSize = opts.batchSize ?? opts.recipeOptions?.batchSize ?? opts.recipe.defaults.batchSize;
    this.maxWaitMs = opts.maxWaitMs ?? 10 * 60_000;
    this.canaryShare = opts.backend.loadCanary ? (opts.canaryShare ?? 0) : 0;
    if (!opts.backend.loadCanary && (opts.canaryShare ?? 0) > 0) opts.log.warn(`the ${opts.backend.name} backend serves one version at a time: no canary, each version serves everyone at once (the guard still watches it)`);
    this.poll = new Loop(() => this.maybeTrain(), opts.pollMs);
    // A batch still pending when a step starts is one a crash or a failed step left behind.
    const step = () =>
      this.step(opts.store.servingState().pendingBatch !== undefined)
        .catch((err: Error) => {
          opts.log.error('training step failed; the batch will be retried', { error: err.stack });
          return null;
        })
        .finally(() => (this.progress = null));
    this.steps = new Loop(step);
  }

  /** The version serving is meant to be on (pinned or latest); 'base' before any. */
  servingVersion(): string {
    const { pinned, servingVersion } = this.opts.store.servingState();
    return pinned ?? servingVersion ?? 'base';
  }

  /**
   * Loads the serving and training adapters, and starts finishing or re-running a batch a crash
   * left behind: in the background, as any step runs, so the daemon listens, serves and stores
   * events meanwhile instead of being down for a whole step after a restart.
   */
  async init(): Promise<void> {
    const serving = this.servingVersion();
    const trainFrom = this.opts.store.servingState().servingVersion ?? 'base';
    // A server that refuses the version (down, no runtime LoRA) must not keep the daemon from
    // starting: the base model serves meanwhile and status says why.
    await this.serve(serving);
    await this.opts.backend.loadTrainingAdapter(this.dirOf(trainFrom));
    if (this.opts.store.servingState().pendingBatch) void this.steps.run();
    this.watcher = this.opts.weights.watch((version) => void this.adoptExternal(version));
  }

  start(): void {
    this.poll.start();
  }

  async stop(): Promise<void> {
    await this.poll.stop();
    await this.steps.stop();
    await this.watcher?.close();
  }

  status(): TrainerStatus {
    return {
      serving: this.opts.backend.currentVersion(),
      pinned: this.opts.store.servingState().pinned ?? null,
      waiting: this.waiting(),
      batchSize: this.batchSize,
      steps: this.stepCount,
      step: this.progress,
      lastMetrics: this.lastMetrics,
      swapError: this.swapError,
      canary: this.canary,
    };
  }

  private waiting(): number {
    return this.opts.store.trainQueueLength();
  }

  /** Trains when a full batch waits, or a partial one has waited maxWaitMs. */
  maybeTrain(now = Date.now()): Promise<WeightVersionRecord | null> {
    const waiting = this.waiting();
    if (waiting === 0) {
      this.waitingSince = undefined;
      return Promise.resolve(null);
    }
    this.waitingSince ??= now;
    if (waiting < this.batchSize && now - this.waitingSince < this.maxWaitMs) return Promise.resolve(null);
    // A canary holds the next step, so that no version is trained on top of an unproven one and
    // the canary's test gets its turns; the guard ends it (and, if the test takes too long, the hold).
    if (this.canary || this.switching) return Promise.resolve(null);
    return this.trainNow();
  }

  /** One step now with whatever waits (up to a batch); null if nothing waits. */
  async trainNow(): Promise<WeightVersionRecord | null> {
    return (await this.steps.run()) ?? null;
  }

  private examples(keys: TurnKey[]): TrainExample[] {
    const { store } = this.opts;
    const out: TrainExample[] = [];
    for (const key of keys) {
      const turn = store.turn(key);
      const sample = turn && store.sample(turn.sampleId);
      const score = store.score(key);
      if (!sample || !score?.advantages) continue; // deleted (sessions rm) since it was queued
      out.push({
        promptTokens: sample.promptTokens,
        responseTokens: sample.responseTokens,
        oldLogprobs: sample.logprobs,
        advantages: score.advantages,
        mask: score.mask ?? undefined,
      });
    }
    return out;
  }

  private trainOptions(): TrainOptions {
    const o = { ...this.opts.recipe.defaults, ...this.opts.recipeOptions };
    return { lr: o.lr, clipLow: o.clipLow, clipHigh: o.clipHigh, klCoef: o.klCoef };
  }

  private async step(resuming: boolean): Promise<WeightVersionRecord | null> {
    const { store, weights, backend, log } = this.opts;
    const batch = await store.startBatch(this.batchSize, versionName);
    if (!batch) return null;
    const startedAt = Date.now();
    this.progress = { version: batch.version, turns: batch.keys.length, phase: 'training', startedAt };
    let record: WeightVersionRecord;
    try {
      record = weights.validate(batch.version);
      log.info('finishing a step that a restart interrupted after its version was written', { version: batch.version });
    } catch {
      if (resuming) log.info('re-running a training step that a restart interrupted', { version: batch.version, turns: batch.keys.length });
      const metrics = await backend.trainStep(this.examples(batch.keys), this.trainOptions());
      this.lastMetrics = metrics;
      this.progress.phase = 'saving';
      record = {
        version: batch.version,
        parent: batch.parent,
        recipe: this.opts.recipe.name,
        createdAt: Date.now(),
        turnIds: batch.keys.map(turnIdOf),
        metrics: { ...metrics, turns: batch.keys.length },
      };
      await weights.publish(record, (dir) => backend.saveAdapter(dir));
    }
    await store.finishBatch(record);
    this.waitingSince = undefined;
    log.info('trained a new weight version', { version: record.version, turns: batch.keys.length, ms: Date.now() - startedAt, loss: record.metrics.loss });
    this.opts.metrics?.trainingStepSeconds.observe((Date.now() - startedAt) / 1000);
    let serving = true;
    if (!store.servingState().pinned) {
      this.progress.phase = 'swapping';
      if (this.canaryShare > 0) {
        serving = false;
        await this.startCanary(record.version);
      } else serving = await this.serve(record.version);
    }
    // Counted once the swap is over, so `steps` never runs ahead of it.
    this.stepCount++;
    if (serving) this.opts.onServing?.(record, 'trained');
    return record;
  }

  private async startCanary(version: string): Promise<void> {
    try {
      await this.opts.backend.loadCanary!(this.dirOf(version), version);
      this.canary = { version, share: this.canaryShare, since: Date.now() };
      this.opts.log.info('a new version serves a share of sessions on canary', { version, share: this.canaryShare });
    } catch (err) {
      this.swapError = `${version}: ${errorMessage(err)}`;
      this.opts.log.error(`trained ${version} but could not serve it on canary: ${errorMessage(err)}; still serving ${this.opts.backend.currentVersion()}`);
    }
  }

  /** The canary version this session is served by, or null for the main one. */
  canaryFor(session: string | undefined): string | null {
    return this.canary && session !== undefined && inCanary(session, this.canary.version, this.canary.share) ? this.canary.version : null;
  }

  /** The canary passed (the guard's test, or the hold ran too long): it serves everyone. */
  async promote(version: string, why: string): Promise<void> {
    if (this.canary?.version !== version) return;
    const record = this.checkedRecord(version);
    if (!(await this.serve(version))) return;
    this.canary = null;
    await this.opts.backend.loadCanary!(null, null);
    this.opts.log.info('the canary serves everyone now', { version, why });
    this.opts.onServing?.(record, 'trained');
  }

  /** Stops serving the canary, if any (before a rollback or a person's pin). */
  private async endCanary(): Promise<void> {
    if (!this.canary) return;
    this.canary = null;
    await this.opts.backend.loadCanary!(null, null);
  }

  /**
   * Swaps serving to a trained version. A refusal (an upstream server that cannot load adapters,
   * or is down) leaves the current version serving and training going on; the next version tries again.
   */
  private async serve(version: string): Promise<boolean> {
    const { backend, log } = this.opts;
    try {
      await backend.loadAdapter(this.dirOf(version), version);
      this.swapError = null;
      return true;
    } catch (err) {
      this.swapError = `${version}: ${errorMessage(err)}`;
      log.error(`trained ${version} but could not serve it: ${errorMessage(err)}; still serving ${backend.currentVersion()}`);
      return false;
    }
  }

  /** Serves an earlier version again and continues training from it. */
  async rollback(version: string): Promise<WeightVersionRecord> {
    const record = this.checkedRecord(version);
    const dir = this.dirOf(version);
    // No step may start until training continues from `version`: one started between these
    // awaits trained on the old adapter and named the old version its parent.
    this.switching = true;
    try {
      await this.steps.settled();
      await this.opts.backend.loadAdapter(dir, version);
      this.swapError = null;
      await this.opts.backend.loadTrainingAdapter(dir);
      await this.opts.store.rollBackTo(version);
      await this.endCanary();
    } finally {
      this.switching = false;
    }
    this.opts.log.info('rolled back', { version });
    this.opts.onServing?.(record, 'rollback');
    return record;
  }

  /** Keeps serving one version while training goes on; null unpins and serves the latest. */
  async pin(version: string | null): Promise<string> {
    const serving = version ?? this.opts.store.servingState().servingVersion ?? 'base';
    const record = this.checkedRecord(serving);
    // Swapped first: a pin the backend refuses is not remembered.
    await this.opts.backend.loadAdapter(this.dirOf(serving), serving);
    this.swapError = null;
    await this.endCanary();
    await this.opts.store.setPinned(version);
    this.opts.onServing?.(record, version === null ? 'unpin' : 'pin');
    return serving;
  }

  /** A version's adapter folder; null for the base weights. */
  private dirOf(version: string): string | null {
    return version === 'base' ? null : this.opts.weights.pathOf(version);
  }

  private checkedRecord(version: string): WeightVersionRecord {
    if (version === 'base') return { version: 'base', parent: null, recipe: 'base', createdAt: 0, turnIds: [], metrics: {} };
    const known = this.opts.store.version(version);
    if (!known) throw new Error(`no weight version ${JSON.stringify(version)}; see \`clawrl-daemon weights list\``);
    this.opts.weights.validate(version);
    return known;
  }

  /** A version folder that another trainer dropped in: checked, recorded, and served if newest. */
  private async adoptExternal(version: string): Promise<void> {
    const { store, log, backend, weights } = this.opts;
    if (store.version(version) || this.progress?.version === version) return;
    try {
      const record = weights.validate(version);
      if (versionNumber(version) <= versionNumber(backend.currentVersion())) {
        await store.adoptVersion(record, versionNumber(version), false);
        return;
      }
      // Loading proves the files: a truncated adapter is refused here and the current one stays.
      await backend.loadTrainingAdapter(weights.pathOf(version));
      const serving = store.servingState().pinned ? true : await this.serve(version);
      await store.adoptVersion(record, versionNumber(version), true);
      log.info('picked up a weight version from the versions folder', { version });
      if (serving) this.opts.onServing?.(record, 'adopted');
    } catch (err) {
      log.error(`rejected weight version ${version}: ${errorMessage(err)}; still serving ${backend.currentVersion()}`);
    }
  }
}
