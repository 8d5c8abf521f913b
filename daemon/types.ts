// Types several daemon modules share. They live here, not in server.ts, so that the modules the
// daemon is built from (metrics, dashboard, the pipeline) and the CLI can name them without an
// import circle through server.ts.
import type { Store } from './store.ts';
import type { RecipeDefaults, RecipeName } from '../recipes/index.ts';
import type { JudgeConfig, ScoringStatus } from './scoring.ts';
import type { HintMemoryOptions, HintMemoryStatus } from './hints.ts';
import type { Backend } from './backends/types.ts';
import type { Logger } from './log.ts';
import type { TrainerStatus } from './trainer.ts';
import type { GuardStatus } from './guard.ts';
import type { VersionHealth } from './health.ts';

/**
 * 'train' (default): serve, score, train, and keep hint memory alongside. 'hints': no policy of
 * its own (the agent keeps its model); turns come from the plugin's events and feed hint memory only.
 */
export type DaemonMode = 'train' | 'hints';

/** What startDaemon is given (the CLI's flags, or a test's). */
export interface DaemonOptions {
  dataDir: string;
  host?: string;
  /** PEM certificate and key: serve https:// and wss://. Needed to bind a non-loopback address. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Allow plain HTTP on a non-loopback address (a warning is logged). */
  insecure?: boolean;
  /** Plugin WebSocket connections at once; more are refused with 503. */
  maxConnections?: number;
  /** Live store data above this refuses new events (plugins keep spooling). */
  maxStoreBytes?: number;
  /** Sessions kept at most; a plugin opting in one more is told so with an error frame. */
  maxSessions?: number;
  /** Delete events and turns older than this many days (checked hourly); unset keeps everything. */
  retentionDays?: number;
  /** 0 picks a free port. */
  port?: number;
  /** Defaults to CLAWRL_TOKEN or the data dir's token file. */
  token?: string;
  log?: Logger;
  maxFrameBytes?: number;
  maxBodyBytes?: number;
  /** Turn assembly: a response with nothing after it for this long gets "no next state". */
  idleMs?: number;
  recipe?: RecipeName;
  /** Overrides of the recipe's defaults (lr, clip, batch size, m, …). */
  recipeOptions?: Partial<RecipeDefaults>;
  /** Train a partial batch once its oldest turn has waited this long. */
  maxWaitMs?: number;
  /** Where judge votes come from; default: rules (no model). */
  judge?: JudgeConfig;
  /** The policy that serves /v1; the daemon closes it on close(). Without one, /v1 answers 503. */
  backend?: Backend;
  /** 'train' (default) or 'hints': see DaemonMode. */
  mode?: DaemonMode;
  /** Hint memory's cap and the scope of learned hints. */
  hints?: Pick<HintMemoryOptions, 'maxHints' | 'scope'>;
  /** Serve GET /metrics without the token (for a scraper on a trusted network). */
  metricsPublic?: boolean;
  /** Roll back a version that is significantly worse than its reference or collapses (default true). */
  guard?: boolean;
  /** Share of sessions a new version first serves on canary (default 0: everyone at once; see canary.ts). */
  canary?: number;
}

/** What GET /status answers; metrics and the dashboard read it too. */
export interface DaemonStatus {
  version: string;
  pid: number;
  uptimeS: number;
  connections: number;
  weightVersion: string;
  sessions: { total: number; optedIn: number };
  counters: ReturnType<Store['counters']>;
  mode: DaemonMode;
  recipe: RecipeName;
  scoring: ScoringStatus;
  hints: HintMemoryStatus;
  /** Null when the backend cannot train (upstream). */
  training: TrainerStatus | null;
  /** The version guard's verdict on the serving version and its last rollback; null when off. */
  guard: GuardStatus | null;
  /** Live-traffic health of the serving version; null before it served a turn. */
  health: VersionHealth | null;
}
