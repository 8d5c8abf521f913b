// Prometheus metrics for GET /metrics. One registry per daemon (tests run several in a process).
// Most values are read at scrape time from the store and the daemon's status, so the loops stay
// untouched; only what happens between scrapes (events arriving, judge calls, steps, served
// requests) is counted where it happens, by one-line calls into the fields below.
//
// Counters read from the store (events stored / duplicate / dropped) count since the store was
// created; the others count since the daemon started. Prometheus' rate() handles both.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Database, Key } from 'lmdb';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DaemonStatus } from './types.ts';
import type { ScoreRecord, Store } from './store.ts';
import type { Backend, GenerateResult } from './backends/types.ts';
import type { Complete } from '../recipes/index.ts';
import type { VersionStatsReader } from './stats.ts';
import { READ, type Route } from './http.ts';
import { versionNumber } from './weights.ts';
import { outputFailures } from './log.ts';

export interface MetricsSources {
  store: Store;
  status: () => DaemonStatus;
  stats: VersionStatsReader;
  backend?: Backend;
}

type Handler = Route['handle'];

/** Per-version series are kept to the latest few so a long-lived daemon's series stay bounded; Prometheus keeps the history. */
const VERSION_SERIES = 20;
const ENDPOINTS: Record<string, string> = { '/v1/chat/completions': 'chat_completions', '/v1/models': 'models' };
const voteLabel = (v: number | null) => (v === null ? 'failed' : v > 0 ? 'good' : v < 0 ? 'bad' : 'neutral');
const secondsBuckets = (max: number) => [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600].filter((b) => b <= max);

/** A counter whose total lives elsewhere (the store, a loop's status): set, not incremented. */
function setTotal<L extends string>(counter: Counter<L>, value: number, labels?: Partial<Record<L, string>>): void {
  counter.reset();
  if (labels) counter.inc(labels, value);
  else counter.inc(value);
}

/** A table's entry count as LMDB keeps it: O(1), where getCount() walks every key (a scrape at 10^6 turns). */
const entries = (db: Database<unknown, Key>) => (db.getStats() as { entryCount: number }).entryCount;

/** torch's worker reports GPU memory through `stats()`; backends without it run in this process. */
async function backendMemory(backend: Backend | undefined): Promise<Record<string, number>> {
  const reporting = backend as { stats?: () => Promise<{ memory?: Record<string, number> }> } | undefined;
  if (typeof reporting?.stats !== 'function') return { rssBytes: process.memoryUsage.rss() };
  // A worker in the middle of a long step may answer late; a scrape does not wait for it.
  const late = sleep(1_000, undefined, { ref: false });
  return (await Promise.race([reporting.stats().catch(() => undefined), late]))?.memory ?? {};
}

export class Metrics {
  readonly registry = new Registry();
  private readonly counter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers: [this.registry] });
  private readonly gauge = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    new Gauge<L>({ name, help, labelNames, registers: [this.registry] });
  private readonly histogram = <L extends string>(name: string, help: string, buckets: number[], labelNames: L[] = []) =>
    new Histogram<L>({ name, help, buckets, labelNames, registers: [this.registry] });

  // Counted where it happens.
  readonly eventsReceived = this.counter('clawrl_events_received_total', 'Events in frames the gateway accepted.');
  readonly eventsAcked = this.counter('clawrl_events_acked_total', 'Events covered by acks sent (durable in LMDB).');
  readonly judgeSeconds = this.histogram('clawrl_judge_request_seconds', 'Judge model calls, by outcome.', secondsBuckets(120), ['outcome']);
  readonly trainingStepSeconds = this.histogram('clawrl_training_step_seconds', 'Training steps, from taking the batch to the version being recorded.', secondsBuckets(600));
  private readonly scores = this.counter('clawrl_scores_total', 'Scored turns, by where the score came from and what it was.', ['source', 'score']);
  private readonly judgeVotes = this.counter('clawrl_judge_votes_total', "Judge votes (a failed vote: the call failed or the answer had no vote).", ['vote']);
  private readonly servingRequests = this.counter('clawrl_serving_requests_total', '/v1 requests, by endpoint and HTTP status.', ['endpoint', 'status']);
  private readonly servingSeconds = this.histogram('clawrl_serving_request_seconds', '/v1 request latency (to the last byte of a stream).', secondsBuckets(300), ['endpoint']);
  private readonly servingTokens = this.counter('clawrl_serving_tokens_total', 'Tokens served, prompt and completion.', ['kind']);
  private readonly tokensPerSecond = this.histogram('clawrl_serving_tokens_per_second', 'Completion tokens per second of generation, per response.', [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000]);

  // Read at scrape time.
  private readonly eventsStored = this.counter('clawrl_events_stored_total', 'Events stored (opted-in sessions), since the store was created.');
  private readonly eventsDuplicate = this.counter('clawrl_events_duplicate_total', 'Replayed events acked again and not stored, since the store was created.');
  private readonly eventsDropped = this.counter('clawrl_events_dropped_total', 'Events acked and dropped, since the store was created.', ['reason']);
  private readonly connections = this.gauge('clawrl_plugin_connections', 'Plugins connected over /ws.');
  private readonly sessions = this.gauge('clawrl_sessions', 'Sessions known, by opt-in.', ['opted_in']);
  private readonly samples = this.gauge('clawrl_samples', 'Stored responses: open (waiting for their next state) or closed.', ['state']);
  private readonly turns = this.gauge('clawrl_turns', 'Stored turns: unscored, awaiting_training, or done (scored, then trained or not trainable).', ['state']);
  private readonly scoringQueue = this.gauge('clawrl_scoring_queue_depth', 'Turns waiting for the scoring loop.');
  private readonly trainingQueue = this.gauge('clawrl_training_queue_depth', 'Scored, trainable turns waiting for the trainer.');
  private readonly judgeFailures = this.counter('clawrl_judge_failures_total', 'Judge calls that failed or gave no usable answer.');
  private readonly scoringErrors = this.counter('clawrl_scoring_errors_total', 'Turns whose scoring threw (retried on the next pass).');
  private readonly trainingSteps = this.counter('clawrl_training_steps_total', 'Training steps completed.');
  private readonly stepInProgress = this.gauge('clawrl_training_step_in_progress', '1 while a training step runs.');
  private readonly weightVersion = this.gauge('clawrl_weight_version_info', 'The weight version serving (value 1), with whether it is pinned.', ['version', 'pinned']);
  private readonly weightVersionNumber = this.gauge('clawrl_weight_version_number', 'The number of the weight version serving (0 = base).');
  private readonly versionLoss = this.gauge('clawrl_version_loss', "Loss of the step that made each version.", ['version']);
  private readonly versionBatchReward = this.gauge('clawrl_version_batch_mean_reward', 'Mean reward of the batch that trained each version.', ['version']);
  private readonly versionAdvantage = this.gauge('clawrl_version_batch_mean_advantage', 'Mean advantage per trained token of the batch that trained each version.', ['version']);
  private readonly versionServedReward = this.gauge('clawrl_version_served_mean_reward', "Mean reward of the scored turns each version served.", ['version']);
  private readonly versionHitRate = this.gauge('clawrl_version_served_hit_rate', 'Share of the scored turns each version served that were rewarded +1.', ['version']);
  private readonly versionServedTurns = this.gauge('clawrl_version_served_turns', 'Turns each version served.', ['version']);
  private readonly versionRewardBound = this.gauge('clawrl_version_served_reward_bound', "95 % Wilson interval of each version's served mean reward.", ['version', 'bound']);
  private readonly versionEntropy = this.gauge('clawrl_version_entropy_nats', "Mean surprisal of each version's sampled tokens (an estimate of its entropy), nats per token.", ['version']);
  private readonly versionDistinct2 = this.gauge('clawrl_version_distinct2', "Mean distinct-2 of each version's replies (low: repetitive).", ['version']);
  private readonly versionReplyTokens = this.gauge('clawrl_version_reply_tokens', "Mean length of each version's replies, in tokens.", ['version']);
  private readonly versionDrift = this.gauge('clawrl_version_drift_nats', 'Estimated KL of each version to the base weights on its served tokens, nats per token.', ['version']);
  private readonly versionRolledBack = this.gauge('clawrl_version_rolled_back', '1 for each version the guard rolled back.', ['version']);
  private readonly storeCommits = this.counter('clawrl_store_commits_total', 'LMDB write transactions committed, since the daemon started.');
  private readonly storePagesWritten = this.counter('clawrl_store_pages_written_total', "Pages LMDB wrote at commits, since the daemon started (each changed page whole: scattered changes cost more).");
  private readonly storeWriteSeconds = this.counter('clawrl_store_write_seconds_total', "Seconds LMDB's write transactions took (the daemon's writes, then the pages written out), since the daemon started.");
  private readonly storeSyncSeconds = this.counter('clawrl_store_sync_seconds_total', 'Seconds LMDB spent flushing commits to the disk (fdatasync), since the daemon started.');
  private readonly outputFailures = this.counter('clawrl_output_write_failures_total', 'Log lines and stdout writes that failed (full disk, closed pipe) and were dropped, since the daemon started.');
  private readonly backendMemoryBytes = this.gauge('clawrl_backend_memory_bytes', "The policy backend's memory (GPU for torch, process RSS for in-process backends).", ['kind']);

  constructor(private readonly sources: MetricsSources) {
    collectDefaultMetrics({ register: this.registry });
  }

  /** GET /metrics; `open`: without the token, for a scraper on a trusted network. */
  route(open: boolean): Route {
    return {
      path: '/metrics',
      auth: !open,
      methods: READ,
      handle: async (_req, res) => {
        const text = await this.scrape();
        res.writeHead(200, { 'content-type': this.registry.contentType });
        res.end(text);
      },
    };
  }

  scored(record: ScoreRecord): void {
    this.scores.inc({ source: record.source, score: record.score === null ? 'none' : voteLabel(record.score) });
    for (const vote of record.votes) this.judgeVotes.inc({ vote: voteLabel(vote) });
  }

  served(result: GenerateResult, durationMs: number): void {
    const completion = result.responseTokens.length || result.tokens.length;
    this.servingTokens.inc({ kind: 'prompt' }, result.promptTokens.length);
    this.servingTokens.inc({ kind: 'completion' }, completion);
    if (completion > 0 && durationMs > 0) this.tokensPerSecond.observe(completion / (durationMs / 1000));
  }

  /** The judge's `complete`, timed. */
  timeJudge(complete: Complete): Complete {
    return async (messages, opts) => {
      const end = this.judgeSeconds.startTimer();
      try {
        const text = await complete(messages, opts);
        end({ outcome: 'ok' });
        return text;
      } catch (err) {
        end({ outcome: 'error' });
        throw err;
      }
    };
  }

  /** The /v1 route, counted and timed by endpoint and status. */
  timeServing(handle: Handler): Handler {
    return async (req, res, path) => {
      const endpoint = ENDPOINTS[path] ?? 'other';
      const end = this.servingSeconds.startTimer({ endpoint });
      try {
        await handle(req, res, path);
      } finally {
        end();
        this.servingRequests.inc({ endpoint, status: String(res.statusCode) });
      }
    };
  }

  /** The exposition text, with everything read at scrape time brought up to date first. */
  async scrape(): Promise<string> {
    const { store, backend } = this.sources;
    const status = this.sources.status();
    const { counters, training } = status;
    setTotal(this.eventsStored, counters.eventsStored);
    setTotal(this.eventsDuplicate, counters.duplicates);
    setTotal(this.eventsDropped, counters.droppedNotOptedIn, { reason: 'not_opted_in' });
    this.connections.set(status.connections);
    this.sessions.set({ opted_in: 'true' }, status.sessions.optedIn);
    this.sessions.set({ opted_in: 'false' }, status.sessions.total - status.sessions.optedIn);

    const open = entries(store.openSamples);
    this.samples.set({ state: 'open' }, open);
    this.samples.set({ state: 'closed' }, entries(store.samples) - open);
    const unscored = entries(store.unscored);
    const awaiting = entries(store.trainQueue);
    this.turns.set({ state: 'unscored' }, unscored);
    this.turns.set({ state: 'awaiting_training' }, awaiting);
    // A rescored turn can sit in both queues for a moment; the count never goes below zero.
    this.turns.set({ state: 'done' }, Math.max(0, entries(store.turns) - unscored - awaiting));

    this.scoringQueue.set(status.scoring.queueDepth);
    setTotal(this.judgeFailures, status.scoring.judgeFailures);
    setTotal(this.scoringErrors, status.scoring.errors);
    this.trainingQueue.set(training?.waiting ?? 0);
    setTotal(this.trainingSteps, training?.steps ?? 0);
    this.stepInProgress.set(training?.step ? 1 : 0);
    setTotal(this.outputFailures, outputFailures().count);
    const writes = store.writeStats();
    setTotal(this.storeCommits, writes.commits);
    setTotal(this.storePagesWritten, writes.pagesWritten);
    setTotal(this.storeWriteSeconds, writes.writeSeconds);
    setTotal(this.storeSyncSeconds, writes.syncSeconds);

    this.weightVersion.reset();
    this.weightVersion.set({ version: status.weightVersion, pinned: String(training?.pinned === status.weightVersion) }, 1);
    this.weightVersionNumber.set(versionNumber(status.weightVersion));

    const perVersion = [this.versionLoss, this.versionBatchReward, this.versionAdvantage, this.versionServedReward, this.versionHitRate, this.versionServedTurns, this.versionRewardBound, this.versionEntropy, this.versionDistinct2, this.versionReplyTokens, this.versionDrift, this.versionRolledBack];
    for (const gauge of perVersion) gauge.reset();
    for (const v of this.sources.stats.read().slice(-VERSION_SERIES)) {
      const set = (gauge: Gauge<'version'>, value: number | null) => value !== null && gauge.set({ version: v.version }, value);
      set(this.versionLoss, v.loss);
      set(this.versionBatchReward, v.batch.meanReward);
      set(this.versionAdvantage, v.batch.meanAdvantage);
      set(this.versionServedReward, v.served.meanReward);
      set(this.versionHitRate, v.served.hitRate);
      set(this.versionServedTurns, v.served.turns);
      const h = v.health;
      if (h?.reward.low != null) {
        this.versionRewardBound.set({ version: v.version, bound: 'low' }, h.reward.low);
        this.versionRewardBound.set({ version: v.version, bound: 'high' }, h.reward.high!);
      }
      set(this.versionEntropy, h?.entropy ?? null);
      set(this.versionDistinct2, h?.distinct2 ?? null);
      set(this.versionReplyTokens, h?.replyTokens ?? null);
      set(this.versionDrift, h?.drift ?? null);
      if (v.verdict?.state === 'rolled-back') this.versionRolledBack.set({ version: v.version }, 1);
    }

    this.backendMemoryBytes.reset();
    for (const [key, bytes] of Object.entries(await backendMemory(backend))) {
      this.backendMemoryBytes.set({ kind: key.replace(/Bytes$/, '').replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) }, bytes);
    }
    return this.registry.metrics();
  }
}
