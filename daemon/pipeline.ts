// The daemon's pipeline, built top to bottom in the order a response goes through it:
//
//   plugin events  → gateway      (gateway.ts)       → stored events
//   /v1 response   → api          (api.ts)           → a stored sample (store.recordSample)
//   events         → derive       (event-samples.ts) → samples for runs the daemon did not serve
//   sample + events→ assemble     (turns.ts)         → a turn: the sample and its next state (store.closeSample)
//   turn           → score        (scoring.ts + recipes/) → votes, a hint, advantages (store.recordScore)
//   scored turn    → hint memory  (hints.ts)
//   trainable turns→ train        (trainer.ts + backends/) → a new version, swapped in; plugins told
//   new version    → guard        (guard.ts)         → promoted or rolled back on live traffic
//
// Each stage owns its module and only nudges the next one: the work itself waits in the store
// (open samples, unscored turns, the training queue), so a restart loses nothing.
import { SessionLimitError, Store } from './store.ts';
import { Gateway, SERVER_VERSION } from './gateway.ts';
import { createApi, type ServedResponse } from './api.ts';
import { EventSamples } from './event-samples.ts';
import { TurnAssembler } from './turns.ts';
import { ScoringLoop } from './scoring.ts';
import { HintMemory } from './hints.ts';
import { Trainer } from './trainer.ts';
import { Guard } from './guard.ts';
import { WeightsDir, weightsRoot } from './weights.ts';
import { Metrics } from './metrics.ts';
import { VersionStatsReader } from './stats.ts';
import { Loop } from './loop.ts';
import { errorMessage } from './errors.ts';
import { recipes } from '../recipes/index.ts';
import { canTrain, type Backend } from './backends/types.ts';
import type { Logger } from './log.ts';
import type { DaemonOptions, DaemonStatus } from './types.ts';

export interface Pipeline {
  store: Store;
  backend?: Backend;
  gateway: Gateway;
  /** The /v1 handler: serves with the backend and records what an opted-in session was served. */
  serve: ReturnType<typeof createApi>;
  assembler: TurnAssembler;
  scoring: ScoringLoop;
  hints: HintMemory;
  /** Absent when the backend only serves (upstream without a training side) or in hints mode. */
  trainer?: Trainer;
  guard?: Guard;
  metrics: Metrics;
  stats: VersionStatsReader;
  status(): DaemonStatus;
  /** Resolves once every sample write begun so far (a response already sent) has finished. */
  samplesRecorded(): Promise<void>;
  /** Starts the stages' timers (the daemon listens first). */
  start(): void;
  /** Once the port is closed: lets in-flight writes and the stages finish, then closes the backend and the store. */
  stop(): Promise<void>;
}

export async function buildPipeline(opts: DaemonOptions, log: Logger): Promise<Pipeline> {
  const mode = opts.mode ?? 'train';
  const backend = opts.backend;
  if (mode === 'hints' && backend) throw new Error('hints mode serves no policy: start it without a backend');
  const recipe = recipes[opts.recipe ?? 'binary-rl'];
  const startedAt = Date.now();
  const store = await Store.open(opts.dataDir, { maxBytes: opts.maxStoreBytes, maxSessions: opts.maxSessions });
  const weightVersion = () => backend?.currentVersion() ?? 'base';
  const stats = new VersionStatsReader(store);
  const metrics = new Metrics({ store, status: () => status(), stats, backend });

  // Ingest: the plugin's events, stored and acked; each batch nudges derivation and assembly.
  const gateway = new Gateway({
    store,
    log,
    maxFrameBytes: opts.maxFrameBytes,
    weightVersion,
    onStored: () => void deriving.run().then(() => assembler.nudge()),
    metrics,
  });

  // Serving: /v1 answers with the policy; what an opted-in session was served becomes a sample.
  // Writes still in flight when the daemon stops are awaited before the store closes.
  const serve = createApi({
    backend: () => backend,
    log,
    maxBodyBytes: opts.maxBodyBytes,
    canaryFor: (headers) => trainer?.canaryFor(headers.sessionKey) ?? null,
    keySuffix: (installId) => store.installSuffix(installId),
    onServed: (served) => {
      metrics.served(served.result, served.durationMs);
      // No assembly pass here: a response's next state comes with later events, which nudge it.
      recordSample(store, served).catch((err: unknown) => log[err instanceof SessionLimitError ? 'warn' : 'error']('recording a sample failed', { id: served.id, error: errorMessage(err) }));
    },
  });
  const samplesRecorded = () => store.samplesRecorded();

  // Samples for runs the daemon did not serve (hints mode), derived before each assembly.
  const eventSamples = new EventSamples(store);
  const deriving = new Loop(
    () =>
      eventSamples.deriveOnce().catch((err: unknown) => {
        log.error('deriving samples from events failed', { error: errorMessage(err) });
        return 0;
      }),
    1_000,
  );

  // Assembly: a sample and what followed it (its next state) become a turn.
  const assembler = new TurnAssembler({ store, log, idleMs: opts.idleMs, onTurn: () => void scoring.nudge() });

  // Scoring: the recipe's inputs (votes, a hint, a teacher's logprobs) and its advantages.
  const scoring = new ScoringLoop({
    store,
    log,
    recipe,
    recipeOptions: opts.recipeOptions,
    backend,
    judge: opts.judge ?? { kind: 'rules' },
    // Hints in every mode; in hints mode nothing trains, so a vote would be a wasted judge call.
    ask: { score: mode === 'train' && recipe.needsScore, hint: true },
    onScored: (turn, score) => {
      hints.onScored(turn, score);
      metrics.scored(score);
      // A batch may just have filled: train now rather than at the trainer's next poll.
      if (score.advantages) void trainer?.maybeTrain();
      void guard?.nudge();
    },
    metrics,
  });
  const hints = new HintMemory({ store, log, ...opts.hints });

  // Training: a batch of trainable turns, one step, a new version swapped in; the plugins are told.
  const trainer = canTrain(backend)
    ? new Trainer({
        store,
        log,
        backend,
        weights: new WeightsDir(weightsRoot(opts.dataDir), log),
        recipe,
        recipeOptions: opts.recipeOptions,
        maxWaitMs: opts.maxWaitMs,
        // The guard decides canaries: without it, every version serves everyone at once.
        canaryShare: opts.guard === false ? 0 : opts.canary,
        onServing: (record, reason) =>
          gateway.broadcast({ type: 'weights.updated', version: backend.currentVersion(), recipe: record.recipe, metrics: record.metrics, reason }),
        metrics,
      })
    : undefined;
  // Loads the adapters; a step a restart interrupted re-runs in the background.
  await trainer?.init();

  // The guard: a new version that does worse on live traffic is rolled back.
  const guard = trainer && canTrain(backend) && opts.guard !== false ? new Guard({ store, log, backend, trainer, health: stats.health }) : undefined;

  const retention =
    opts.retentionDays === undefined
      ? undefined
      : new Loop(async () => {
          const expired = await store.expireBefore(Date.now() - opts.retentionDays! * 86_400_000);
          if (expired.events || expired.turns) log.info('retention: deleted old data', { ...expired, days: opts.retentionDays });
        }, 3_600_000);

  const status = (): DaemonStatus => ({
    version: SERVER_VERSION,
    pid: process.pid,
    uptimeS: Math.round((Date.now() - startedAt) / 1000),
    connections: gateway.connections,
    weightVersion: weightVersion(),
    sessions: { total: store.sessionCount(), optedIn: store.optedInCount() },
    counters: store.counters(),
    mode,
    recipe: recipe.name,
    scoring: scoring.status(),
    hints: hints.status(),
    training: trainer?.status() ?? null,
    guard: guard?.status() ?? null,
    health: stats.health.read().get(weightVersion()) ?? null,
  });

  return {
    store,
    backend,
    gateway,
    serve,
    assembler,
    scoring,
    hints,
    trainer,
    guard,
    metrics,
    stats,
    status,
    samplesRecorded,
    start() {
      retention?.start();
      void retention?.run();
      deriving.start();
      assembler.start();
      scoring.start();
      trainer?.start();
      guard?.start();
    },
    async stop() {
      await samplesRecorded();
      await retention?.stop();
      await deriving.stop();
      await assembler.stop();
      await scoring.stop();
      await hints.flushed();
      await guard?.stop();
      await trainer?.stop();
      await backend?.close();
      await store.close();
    },
  };
}

/**
 * Only what an opted-in session was served is kept. The plugin's header is its newest word on
 * opt-in (its event may still be on the way); without the header the stored state decides.
 */
async function recordSample(store: Store, served: ServedResponse): Promise<void> {
  const { headers, result } = served;
  if (!headers.sessionKey) return;
  if (!(headers.optIn ?? store.isOptedIn(headers.sessionKey))) return;
  await store.recordSample({
    id: served.id,
    sessionKey: headers.sessionKey,
    sessionId: headers.sessionId,
    runId: headers.runId,
    callId: headers.callId,
    turnId: headers.turnId,
    side: headers.side,
    createdAt: Date.now(),
    model: served.model,
    weightVersion: result.weightVersion,
    requestMessages: served.request.messages,
    tools: served.request.tools,
    promptTokens: result.promptTokens,
    responseTokens: result.responseTokens,
    logprobs: result.logprobs,
    text: result.text,
    toolCalls: result.toolCalls,
    finishReason: result.finishReason,
  });
}
