// Types several daemon modules share. They live here, not in server.ts, so that modules server.ts
// wires together (metrics, dashboard, cli) can name them without importing server.ts back.
import type { Store } from './store.ts';
import type { RecipeName } from '../recipes/index.ts';
import type { ScoringStatus } from './scoring.ts';
import type { HintMemoryStatus } from './hints.ts';
import type { TrainerStatus } from './trainer.ts';
import type { GuardStatus } from './guard.ts';
import type { VersionHealth } from './health.ts';

/**
 * 'train' (default): serve, score, train, and keep hint memory alongside. 'hints': no policy of
 * its own (the agent keeps its model); turns come from the plugin's events and feed hint memory only.
 */
export type DaemonMode = 'train' | 'hints';

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
