// The daemon's durable state, in one LMDB environment under <data-dir>/store.
// Writes resolve only once LMDB has committed and flushed them, so whatever the gateway acks
// survives a kill -9.
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { join } from 'node:path';
import { statfsSync } from 'node:fs';
import { MAX_ID_BYTES, idFits, type Event, type ScreenChange, type ToolCallSummary } from '../protocol/index.ts';
import type { ChatMessage, FinishReason, ToolSpec } from './backends/types.ts';
import { redactRecord } from './redact.ts';
import { redactSized, type Redacted } from './redact-off-loop.ts';
import type { NextState } from '../recipes/types.ts';
import { installSuffix } from './installs.ts';
import { countTurn, emptyServed, replySummary, servedFromScratch, type ReplySummary, type Served } from './served.ts';

export type { NextState } from '../recipes/types.ts';

/**
 * 2 added the run and call indexes (runEvents, runSamples, callEvents), 3 the per-version sums of
 * served turns (versionServed), 4 the index of turns by version (versionTurns) and dropped the
 * index of samples by tool call id (toolCallSamples: nothing read it, and providers that number
 * their calls repeat ids across runs), 5 the indexes of events and samples by time (eventTimes,
 * sampleTimes: retention reads what expired, not every record) and of the events the passes look
 * for by kind (eventKinds), 6 the index of open samples by session (openBySession: turn
 * assembly reads the sessions that changed, not every open sample), 7 the `at` of each client's
 * last acked event beside its seq (clients; a version 6 value, a bare seq, is read as it is); an
 * older store is upgraded at open.
 */
export const SCHEMA_VERSION = 7;

/** Events, and samples, that one transaction of retention deletes at most before it lets others run. */
const EXPIRE_SLICE = 500;

/**
 * The kinds of event that passes after each stored batch look for among everything new: deriving
 * samples (model.output) and late feedback (feedback). Indexed, so that they read those alone
 * rather than decoding every event stored since their last pass.
 */
const PASS_KINDS = ['model.output', 'feedback'] as const;
export type PassKind = (typeof PASS_KINDS)[number];
const isPassKind = (kind: string): kind is PassKind => (PASS_KINDS as readonly string[]).includes(kind);

export interface SessionRecord {
  sessionKey: string;
  optedIn: boolean;
  createdAt: number;
  updatedAt: number;
  /** Events stored for this session. */
  events: number;
}

/** An event as stored: with the client that sent it and its position in the global log. */
export type StoredEvent = Event & { clientId: string; log: number };

/** One model response as served: the exact tokens and logprobs, never re-tokenised. */
export interface SampleRecord {
  id: string;
  sessionKey: string;
  /** Position among the session's samples; becomes the turn's index. */
  ordinal: number;
  /** The event log position when it was served: events after it happened after the action. */
  logMark: number;
  sessionId?: string;
  runId?: string;
  callId?: string;
  turnId?: string;
  /** Heartbeats, memory flushes and other side turns are kept but never trained on. */
  side: boolean;
  createdAt: number;
  model: string;
  weightVersion: string;
  requestMessages: ChatMessage[];
  tools?: ToolSpec[];
  promptTokens: number[];
  responseTokens: number[];
  logprobs: number[];
  text: string;
  toolCalls: ToolCallSummary[];
  finishReason: FinishReason;
  /**
   * A secret was redacted from its text. Its token ids and logprobs are then not kept (the
   * secret would survive in token form), so it is never trained on.
   */
  redacted?: true;
}

/**
 * The few fields of an open sample that turn assembly reads on every pass; the full sample (with
 * its prompt and token ids) is read only when its turn is written.
 */
export type OpenSample = Pick<SampleRecord, 'id' | 'sessionKey' | 'callId' | 'runId' | 'logMark' | 'createdAt'> & { toolCallIds: string[] };

const openSampleOf = (s: SampleRecord): OpenSample => ({
  id: s.id,
  sessionKey: s.sessionKey,
  callId: s.callId,
  runId: s.runId,
  logMark: s.logMark,
  createdAt: s.createdAt,
  toolCallIds: s.toolCalls.map((c) => c.id),
});

/** A sample joined with its next state, later scored. */
export interface TurnRecord {
  sessionKey: string;
  turnIndex: number;
  sampleId: string;
  createdAt: number;
  weightVersion: string;
  action: { text: string; toolCalls: ToolCallSummary[] };
  nextState: NextState;
  reward: number | null;
  hint: string | null;
  /** The weight version whose training batch included this turn; a turn trains once. */
  trainedIn?: string;
}

/**
 * One turn written or removed by a committed transaction: `before` is absent for a new turn,
 * `after` for a removed one; a turn overwritten by one of another sample or version comes as a
 * removal and a new turn.
 */
export interface TurnChange {
  before?: TurnRecord;
  after?: TurnRecord;
}

/** What one transaction changed, for the listeners told once it commits. */
interface Changes {
  turns: TurnChange[];
  /** Sessions that got events or a new open sample. */
  sessions: Set<string>;
}

/** What the scoring loop decided for a turn. */
export interface ScoreRecord {
  recipe: string;
  /** Majority score (+1 / −1 / 0); null when the recipe uses no score. */
  score: number | null;
  votes: (number | null)[];
  /** Where the score came from: explicit feedback, the judge model, the rules, or nothing to judge. */
  source: string;
  hint: string | null;
  hintVotes: (number | null)[];
  /** Per response token; null when the turn is not trainable. */
  advantages: number[] | null;
  mask: number[] | null;
  failures: number;
  scoredAt: number;
}

/** A turn's key: [sessionKey, turnIndex]. */
export type TurnKey = [string, number];

/** The turns a training step takes, and the version it will make: kept until the step is done, so a crash re-runs it. */
export interface PendingBatch {
  version: string;
  parent: string | null;
  keys: TurnKey[];
}

/** What serves and what trains from: the trainer's state, kept in the store's meta table. */
export interface ServingState {
  /** The newest version serving was swapped to (training continues from it); undefined before any. */
  servingVersion?: string;
  /** A version pinned by hand: it serves whatever training makes. */
  pinned?: string;
  /** The number of the last version made (v000001 is 1). */
  versionCounter: number;
  pendingBatch?: PendingBatch;
}

export interface WeightVersionRecord {
  version: string;
  parent: string | null;
  recipe: string;
  createdAt: number;
  /** The turns of its training batch, `sessionKey#turnIndex` (turnIdOf); `sessions rm` takes a session's out. */
  turnIds: string[];
  metrics: Record<string, number>;
}

/** A turn as a version record names it. */
export const turnIdOf = ([sessionKey, turnIndex]: TurnKey): string => `${sessionKey}#${turnIndex}`;

/** Whether a version record's turn id is one of this session's turns (a session key may hold '#' itself). */
export function isTurnOfSession(turnId: string, sessionKey: string): boolean {
  return turnId.startsWith(`${sessionKey}#`) && /^\d+$/.test(turnId.slice(sessionKey.length + 1));
}

export interface Counters {
  eventsReceived: number;
  eventsStored: number;
  duplicates: number;
  droppedNotOptedIn: number;
}

/**
 * How far a client's events are acked: the seq, and the `at` of the event with that seq, which
 * lets a plugin tell its own acks from those of a copy of its state folder under its client id.
 */
export interface ClientAck {
  seq: number;
  at?: number;
}

export interface AppendResult {
  /** Highest seq of this client now durable; ack up to it. */
  ackedSeq: number;
  stored: number;
  duplicates: number;
  dropped: number;
  /** Sessions whose opt-in was refused because the store keeps `maxSessions` already. */
  refusedSessions: string[];
}

/** A tool result in `sessions export --json`; `startedAt`/`endedAt` are ms on the plugin's clock. */
export interface ExportedToolResult {
  toolCallId: string;
  toolName: string;
  exitCode?: number;
  isError: boolean;
  output: string;
  screen?: ScreenChange;
  startedAt?: number;
  endedAt?: number;
}

const toExportedToolResult = ({ toolCallId, toolName, exitCode, isError, output, screen, startedAt, endedAt }: NextState['toolResults'][number]): ExportedToolResult => ({
  toolCallId,
  toolName,
  exitCode,
  isError,
  output,
  ...(screen && { screen }),
  ...(startedAt !== undefined && { startedAt }),
  ...(endedAt !== undefined && { endedAt }),
});

/** The line format of `sessions export --json`: one object per turn. */
export interface ExportedTurn {
  sessionKey: string;
  turnIndex: number;
  action: { text: string; toolCalls: ToolCallSummary[] };
  nextState: {
    userMessage?: string;
    toolResults: ExportedToolResult[];
    screenAfter?: ExportedToolResult;
    feedback?: NextState['feedback'];
    none?: boolean;
  };
  reward: number | null;
  hint: string | null;
  weightVersion: string;
  createdAt: string;
}

/** The store is at its configured maximum, or the disk is nearly full: new events are refused. */
export class StorageFullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageFullError';
  }
}

/** A new session would exceed `maxSessions`: nothing of it is stored. */
export class SessionLimitError extends Error {
  constructor(sessionKey: string, maxSessions: number) {
    super(`session ${sessionKey} is not stored: the daemon keeps at most ${maxSessions} sessions (--max-sessions); remove some with \`clawrl-daemon sessions rm\``);
    this.name = 'SessionLimitError';
  }
}

export interface StoreLimits {
  /** Live data above this many bytes refuses new events (LMDB's map itself grows as needed). */
  maxBytes?: number;
  /** Free disk below this refuses new events, before LMDB could fail mid-write. */
  minFreeDiskBytes?: number;
  /** Sessions kept at most; opting in one more is refused (its events are then dropped). */
  maxSessions?: number;
}

/**
 * Free disk kept by default: 2 % of the disk, between 8 and 64 MiB, so that LMDB can still grow
 * its map and commit (a fixed 64 MiB refused everything on small disks).
 */
export function defaultMinFreeDisk(diskBytes: number): number {
  return Math.min(64 * 1024 * 1024, Math.max(8 * 1024 * 1024, Math.floor(diskBytes * 0.02)));
}
const CAPACITY_CHECK_MS = 200;

/** Ids become parts of LMDB keys; the protocol bounds them, and so does every other way in (`/v1` headers). */
function assertKeyFits(name: string, id: string | undefined): void {
  if (id !== undefined && !idFits(id)) throw new Error(`the ${name} is ${Buffer.byteLength(id)} bytes long, over the limit of ${MAX_ID_BYTES} bytes`);
}

const zeroCounters = (): Counters => ({ eventsReceived: 0, eventsStored: 0, duplicates: 0, droppedNotOptedIn: 0 });

/** What the meta table holds, by key: the store's bookkeeping, the trainer's state and the stages' marks. */
export interface MetaValues extends Record<Mark, number> {
  schemaVersion: number;
  /** The global event log's last position. */
  eventLog: number;
  counters: Partial<Counters>;
  optedInSessions: number;
  servingVersion: string;
  pinned: string;
  versionCounter: number;
  pendingBatch: PendingBatch;
  /** The install (the plugin's install id) whose session keys are stored without a suffix (installs.ts). */
  homeInstall: string;
}

/**
 * Positions and counters a stage keeps across restarts: turn assembly's late-feedback cursor,
 * hints mode's cursor over the event log, and hint memory's revision (the ETag of GET /hints).
 */
export type Mark = 'feedbackCursor' | 'eventSamplesCursor' | 'hintsRevision';

/** The meta table, typed by key (LMDB's own typing allows any key and value); getRange for tests that snapshot every table. */
export interface Meta extends Pick<Database<unknown, string>, 'getRange'> {
  get<K extends keyof MetaValues>(key: K): MetaValues[K] | undefined;
  put<K extends keyof MetaValues>(key: K, value: MetaValues[K]): Promise<boolean>;
  putSync<K extends keyof MetaValues>(key: K, value: MetaValues[K]): void;
  remove(key: keyof MetaValues): Promise<boolean>;
}

export interface StoreWriteStats {
  /** Write transactions committed. */
  commits: number;
  /** Pages written at commits (a page is written whole however little of it changed). */
  pagesWritten: number;
  /** Seconds the write transactions took, from taking the write lock to the pages written. */
  writeSeconds: number;
  /** Seconds spent flushing commits to the disk (fdatasync). */
  syncSeconds: number;
}

export class Store {
  private readonly root: RootDatabase;
  readonly meta: Meta;
  readonly sessions: Database<SessionRecord, string>;
  /** clientId → [highest seq made durable, that event's `at` or null]; a bare seq in stores before version 7. */
  private readonly clients: Database<number | [number, number | null], string>;
  /** Global log position → event, in arrival order. */
  readonly events: Database<StoredEvent, number>;
  /** [sessionKey, log position] → null: which events belong to a session. */
  private readonly sessionEvents: Database<null, [string, number]>;
  /** [sessionKey, runId, log position] → null: a run's events, without reading its whole session. */
  private readonly runEvents: Database<null, [string, string, number]>;
  /** [sessionKey, callId] → log position of that model.call event. */
  private readonly callEvents: Database<number, [string, string]>;
  /** [at, log position] → null: events by their time, for retention. */
  private readonly eventTimes: Database<null, [number, number]>;
  /** [kind, log position] → null: the events of PASS_KINDS. */
  private readonly eventKinds: Database<null, [PassKind, number]>;
  readonly samples: Database<SampleRecord, string>;
  /** [sessionKey, ordinal] → sample id. */
  readonly sessionSamples: Database<string, [string, number]>;
  /** [sessionKey, runId, ordinal] → sample id: a run's samples. */
  private readonly runSamples: Database<string, [string, string, number]>;
  /** [createdAt, sample id] → null: samples by their time, for retention. */
  private readonly sampleTimes: Database<null, [number, string]>;
  /** Samples still waiting for their next state, with what turn assembly needs to decide. */
  readonly openSamples: Database<OpenSample, string>;
  /** [sessionKey, ordinal] → sample id: a session's open samples, so assembly reads only the sessions that changed. */
  private readonly openBySession: Database<string, [string, number]>;
  /** [sessionKey, turnIndex] → turn. */
  readonly turns: Database<TurnRecord, [string, number]>;
  readonly scores: Database<ScoreRecord, [string, number]>;
  /** Turns waiting for the scoring loop: [sessionKey, turnIndex] → null. */
  readonly unscored: Database<null, [string, number]>;
  /** Scored, trainable turns waiting for the trainer: [sessionKey, turnIndex] → null. */
  readonly trainQueue: Database<null, [string, number]>;
  readonly versions: Database<WeightVersionRecord, string>;
  /** version → what its turns add up to (served.ts), kept with every turn change. */
  private readonly versionServed: Database<Served, string>;
  /** [weightVersion, sessionKey, turnIndex] → sampleId: a version's turns, kept with every turn change. */
  private readonly versionTurns: Database<string, [string, string, number]>;

  private capacityCheckedAt = 0;
  /** What the transaction running now changed (set by atomically), delivered once it commits. */
  private changes?: Changes;
  /** Settles when the samples being recorded now are stored (set while a large one is redacted). */
  private samplesInFlight?: Promise<void>;
  /** Every recordSample not settled yet (samplesRecorded). */
  private readonly samplesRecording = new Set<Promise<SampleRecord>>();
  private readonly turnListeners: ((change: TurnChange) => void)[] = [];
  private readonly sessionListeners: ((sessionKey: string) => void)[] = [];
  private capacityError: StorageFullError | undefined;
  /** Every sub-database, this class's and those other modules open (hint memory's), for usedBytes. */
  private readonly dbs: Database<unknown, Key>[] = [];

  private constructor(
    readonly path: string,
    readonly limits: StoreLimits,
  ) {
    // Room for the sub-databases modules open beside these (hint memory's `hints`). trackMetrics:
    // LMDB counts its commits, pages written and time spent (a few clock reads a commit), for
    // writeStats; lmdb's types (3.5) lack the option, hence the variable.
    const options = { path, maxDbs: 32, trackMetrics: true };
    this.root = open(options);
    this.meta = this.openDB<unknown, string>('meta') as Meta;
    this.sessions = this.openDB('sessions');
    this.clients = this.openDB('clients');
    this.events = this.openDB('events');
    this.sessionEvents = this.openDB('sessionEvents');
    this.runEvents = this.openDB('runEvents');
    this.callEvents = this.openDB('callEvents');
    this.eventTimes = this.openDB('eventTimes');
    this.eventKinds = this.openDB('eventKinds');
    this.samples = this.openDB('samples');
    this.sessionSamples = this.openDB('sessionSamples');
    this.runSamples = this.openDB('runSamples');
    this.sampleTimes = this.openDB('sampleTimes');
    this.openSamples = this.openDB('openSamples');
    this.openBySession = this.openDB('openBySession');
    this.turns = this.openDB('turns');
    this.scores = this.openDB('scores');
    this.unscored = this.openDB('unscored');
    this.trainQueue = this.openDB('trainQueue');
    this.versions = this.openDB('versions');
    this.versionServed = this.openDB('versionServed');
    this.versionTurns = this.openDB('versionTurns');
  }

  /**
   * The tables nothing outside the store reads: the indexes, which change only with the records
   * they index, and the clients' acked seqs. For tests that check that none outlives its record,
   * or that make one of their writes fail.
   */
  internalTables() {
    const { clients, sessionEvents, runEvents, callEvents, eventTimes, eventKinds, runSamples, sampleTimes, openBySession, versionTurns } = this;
    return { clients, sessionEvents, runEvents, callEvents, eventTimes, eventKinds, runSamples, sampleTimes, openBySession, versionTurns };
  }

  /** A sub-database of the store, counted in usedBytes (and so in --max-store-mb). */
  openDB<V, K extends Key = Key>(name: string): Database<V, K> {
    const db = this.root.openDB<V, K>({ name });
    this.dbs.push(db as Database<unknown, Key>);
    return db;
  }

  static async open(dataDir: string, limits: StoreLimits = {}): Promise<Store> {
    const store = new Store(join(dataDir, 'store'), limits);
    const found = store.meta.get('schemaVersion');
    if (found === undefined) {
      await store.meta.put('schemaVersion', SCHEMA_VERSION);
    } else if (found === 1 || found === 2 || found === 3 || found === 4 || found === 5 || found === 6) {
      await store.upgradeFrom(found);
    } else if (found !== SCHEMA_VERSION) {
      await store.close();
      // Also what an older clawrl says of a newer store: it would write events its indexes miss.
      throw new Error(`store at ${store.path} has schema version ${String(found)}; this clawrl understands ${SCHEMA_VERSION}`);
    }
    if (store.meta.get('optedInSessions') === undefined) {
      // Stores written before the counter: counted once.
      await store.meta.put('optedInSessions', store.listSessions().filter((x) => x.optedIn).length);
    }
    return store;
  }

  /**
   * To the current version, in one transaction. From 1: indexes the stored events and samples by
   * run and call, and gives each open sample the record turn assembly reads (early version 1
   * stores kept null). From 1 or 2: sums the served turns by version (one read of every turn).
   * From 1, 2 or 3: indexes the turns by version (one more read of every turn) and empties the
   * index by tool call id that 1-3 wrote. From 1-4: indexes the events by time and kind and the
   * samples by time (one read of each). From 1-5: indexes the open samples by session. From 6:
   * nothing to rewrite (a client's bare seq is read as one without its event's `at`).
   */
  private upgradeFrom(found: 1 | 2 | 3 | 4 | 5 | 6): Promise<void> {
    return this.atomically(() => {
      if (found === 1) this.indexFrom1();
      if (found <= 2) for (const [version, served] of servedFromScratch(this)) this.versionServed.put(version, served);
      if (found <= 3) {
        for (const { key, value } of this.turns.getRange()) this.versionTurns.put([value.weightVersion, ...key], value.sampleId);
        const toolCallSamples = this.root.openDB<string, string>({ name: 'toolCallSamples' });
        for (const key of [...toolCallSamples.getKeys()]) toolCallSamples.remove(key);
      }
      if (found !== 1 && found <= 4) for (const { value: e } of this.events.getRange()) this.indexEventByTimeAndKind(e);
      if (found <= 4) for (const { value: sample } of this.samples.getRange()) this.sampleTimes.put([sample.createdAt, sample.id], null);
      if (found <= 5) {
        for (const { key: id } of this.openSamples.getRange()) {
          const sample = this.samples.get(id);
          if (sample) this.openBySession.put([sample.sessionKey, sample.ordinal], id);
        }
      }
      this.meta.put('schemaVersion', SCHEMA_VERSION);
    });
  }

  /** Inside a write transaction: what version 2 added to a version 1 store. */
  private indexFrom1(): void {
    for (const { value: e } of this.events.getRange()) this.indexEvent(e.sessionKey, e);
    for (const { value: s } of this.samples.getRange()) if (s.runId !== undefined) this.runSamples.put([s.sessionKey, s.runId, s.ordinal], s.id);
    for (const { key, value } of [...this.openSamples.getRange()]) {
      if (value !== null) continue;
      const sample = this.samples.get(key);
      if (sample) this.openSamples.put(key, openSampleOf(sample));
      else this.openSamples.remove(key);
    }
  }

  /** Inside a write transaction: the index entries of a stored (redacted) event. */
  private indexEvent(sessionKey: string, e: StoredEvent): void {
    this.indexEventByTimeAndKind(e);
    if (e.runId !== undefined) this.runEvents.put([sessionKey, e.runId, e.log], null);
    if (e.kind === 'model.call') this.callEvents.put([sessionKey, e.callId], e.log);
  }

  /** Inside a write transaction: an event's entries in the indexes by time and kind (version 5). */
  private indexEventByTimeAndKind(e: StoredEvent): void {
    this.eventTimes.put([e.at, e.log], null);
    if (isPassKind(e.kind)) this.eventKinds.put([e.kind, e.log], null);
  }

  counters(): Counters {
    return { ...zeroCounters(), ...this.meta.get('counters') };
  }

  /**
   * What LMDB's commits have cost since this store was opened: a commit's pages are written out and
   * synced while the write lock is held (lmdb-js overlaps the sync with the next transaction only
   * for small commits), so pages per commit and sync time bound the rate of every write.
   */
  writeStats(): StoreWriteStats {
    const stats = this.root.getStats() as { txns: number; pagesWritten: number; timeDuringTxns: number; timeSync: number };
    return { commits: stats.txns, pagesWritten: stats.pagesWritten, writeSeconds: stats.timeDuringTxns, syncSeconds: stats.timeSync };
  }

  /** Bytes in live pages across the sub-databases (freed pages are reused, so they do not count). */
  usedBytes(): number {
    let pages = 0;
    let pageSize = 4096;
    for (const db of [this.root, ...this.dbs]) {
      const s = db.getStats() as { pageSize: number; treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number };
      pageSize = s.pageSize;
      pages += s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages;
    }
    return pages * pageSize;
  }

  /** Throws StorageFullError when a limit is reached; checked at most every 200 ms. */
  checkCapacity(): void {
    const now = Date.now();
    if (now - this.capacityCheckedAt >= CAPACITY_CHECK_MS) {
      this.capacityCheckedAt = now;
      this.capacityError = undefined;
      const { maxBytes } = this.limits;
      const used = this.usedBytes();
      if (maxBytes !== undefined && used >= maxBytes) {
        this.capacityError = new StorageFullError(`the store holds ${used} bytes, at its maximum of ${maxBytes} bytes (--max-store-mb); new events are refused until space is freed (sessions rm, --retention-days)`);
      } else {
        const disk = statfsSync(this.path);
        const free = disk.bavail * disk.bsize;
        const floor = this.limits.minFreeDiskBytes ?? defaultMinFreeDisk(disk.blocks * disk.bsize);
        if (free < floor) this.capacityError = new StorageFullError(`only ${free} bytes are free on the disk of ${this.path} (the store keeps ${floor} free); new events are refused`);
      }
    }
    if (this.capacityError) throw this.capacityError;
  }

  /**
   * The suffix an install's session keys are stored with (installs.ts): none for the home
   * install, which is the first to ask (recorded at once, durably: a restart must not make
   * another install home and merge its sessions into the first one's), nor for a plugin that
   * names no install.
   */
  installSuffix(installId: string | undefined): string {
    if (installId === undefined) return '';
    let home = this.meta.get('homeInstall');
    if (home === undefined) {
      this.meta.putSync('homeInstall', installId);
      home = installId;
    }
    return installId === home ? '' : installSuffix(installId);
  }

  ackedSeq(clientId: string): number {
    return this.clientAck(clientId).seq;
  }

  /** A client's acked seq, and the `at` of the event with that seq where it is known. */
  clientAck(clientId: string): ClientAck {
    const value = this.clients.get(clientId);
    if (value === undefined) return { seq: 0 };
    if (typeof value === 'number') return { seq: value };
    return { seq: value[0], ...(value[1] !== null && { at: value[1] }) };
  }

  /**
   * Stores a client's events in one transaction: all of them or, if anything fails, none (LMDB's
   * child transaction is aborted, so no index, counter or session record keeps a half-written
   * batch). A seq at or below the client's acked seq is a replay and is not stored again.
   * Opt-in events set the session's state; other events of a session that has not opted in are
   * dropped (and counted), never stored.
   *
   * `afterSeq` lets a caller queue batches without awaiting each: the batch is stored only if
   * the client's acked seq is still exactly that (the batch before it was stored), else it
   * resolves to null and nothing is written. `through` acks up to its seq even where no event of
   * the batch has it (events the caller refused); its `at` is that event's.
   */
  appendEvents(clientId: string, events: Event[], afterSeq?: number, through: ClientAck = { seq: 0 }): Promise<AppendResult | null> {
    let redacted: Event[];
    try {
      this.checkCapacity();
      assertKeyFits('client id', clientId);
      // The gateway refuses such events first; checked here too since every key write must fit.
      for (const e of events) for (const [name, id] of [['session key', e.sessionKey], ['run id', e.runId], ['call id', e.kind === 'model.call' ? e.callId : undefined]] as const) assertKeyFits(name, id);
      // Redacted before the transaction: the write lock is held only for the writes.
      redacted = events.map((event) => redactRecord(event));
    } catch (err) {
      return Promise.reject(err);
    }
    return this.atomically(() => {
      const acked = this.clientAck(clientId);
      let ackedSeq = acked.seq;
      let ackedAt = acked.at;
      if (afterSeq !== undefined && ackedSeq !== afterSeq) return null;
      const result: AppendResult = { ackedSeq, stored: 0, duplicates: 0, dropped: 0, refusedSessions: [] };
      let log = this.eventLogPosition();
      const counters = this.counters();
      // The session records this batch changed, written once each at its end (a batch is mostly
      // one session's events). A new one is also written when first met: it must count against
      // maxSessions for the next.
      const touched = new Map<string, SessionRecord>();
      for (const [i, event] of events.entries()) {
        if (event.seq <= ackedSeq) {
          result.duplicates++;
          continue;
        }
        ackedSeq = event.seq;
        ackedAt = event.at;
        const isOpt = event.kind === 'session.optin' || event.kind === 'session.optout';
        const known = touched.get(event.sessionKey);
        const before = known ?? this.sessions.get(event.sessionKey);
        const record = this.sessionForWrite(event.sessionKey, isOpt, result.refusedSessions, before);
        if (!record) {
          result.dropped++;
          continue;
        }
        if (!known) {
          touched.set(event.sessionKey, record);
          if (!before) this.sessions.put(event.sessionKey, record);
        }
        if (isOpt) this.setOptedIn(record, event.kind === 'session.optin');
        record.events++;
        log++;
        const stored = { ...redacted[i]!, clientId, log } as StoredEvent;
        this.events.put(log, stored);
        this.sessionEvents.put([event.sessionKey, log], null);
        // Keyed by what is stored, so that lookups with stored run and call ids find them.
        this.indexEvent(event.sessionKey, stored);
        result.stored++;
      }
      for (const [sessionKey, record] of touched) {
        this.sessions.put(sessionKey, record);
        this.changes!.sessions.add(sessionKey);
      }
      if (through.seq > ackedSeq) ({ seq: ackedSeq, at: ackedAt } = through);
      this.meta.put('eventLog', log);
      this.clients.put(clientId, [ackedSeq, ackedAt ?? null]);
      counters.eventsReceived += events.length;
      counters.eventsStored += result.stored;
      counters.duplicates += result.duplicates;
      counters.droppedNotOptedIn += result.dropped;
      this.meta.put('counters', counters);
      result.ackedSeq = ackedSeq;
      return result;
    });
  }

  /**
   * Inside a write transaction: the record an event or a served sample of this session is stored
   * under, or undefined when it must not be stored — the session has not opted in (`opting`: the
   * event is an opt-in or opt-out, which is always recorded), or it would be a new session beyond
   * `maxSessions` (then it is added to `refused`). `session` is the record as the caller has it
   * (by default, as stored).
   */
  private sessionForWrite(sessionKey: string, opting: boolean, refused: string[], session = this.sessions.get(sessionKey)): SessionRecord | undefined {
    if (!opting && !session?.optedIn) return undefined;
    const { maxSessions } = this.limits;
    if (!session && maxSessions !== undefined && this.sessionCount() >= maxSessions) {
      refused.push(sessionKey);
      return undefined;
    }
    const now = Date.now();
    const record = session ?? { sessionKey, optedIn: false, createdAt: now, updatedAt: now, events: 0 };
    record.updatedAt = now;
    return record;
  }

  sessionCount(): number {
    return (this.sessions.getStats() as { entryCount: number }).entryCount;
  }

  /** Sessions stored and opted in, kept as a counter so that status pages cost nothing at 100,000 sessions. */
  optedInCount(): number {
    return this.meta.get('optedInSessions') ?? 0;
  }

  /** Inside a write transaction: a session's opt-in state, with the opted-in counter. */
  private setOptedIn(record: SessionRecord, optedIn: boolean): void {
    if (record.optedIn !== optedIn) this.meta.put('optedInSessions', this.optedInCount() + (optedIn ? 1 : -1));
    record.optedIn = optedIn;
  }

  /**
   * Runs a write transaction that is undone whole if `fn` throws (lmdb-js keeps the writes of a
   * plain `transaction` callback that throws). Every multi-write state change goes through it.
   */
  atomically<T>(fn: () => T): Promise<T> {
    const changes: Changes = { turns: [], sessions: new Set() };
    let nested = false;
    const committed = this.root.childTransaction(() => {
      // A nested call hands its changes to the enclosing transaction, which delivers them when it
      // commits; a nested call that throws is rolled back alone, and so are its changes.
      const outer = this.changes;
      nested = outer !== undefined;
      this.changes = changes;
      try {
        const result = fn();
        outer?.turns.push(...changes.turns);
        for (const key of changes.sessions) outer?.sessions.add(key);
        return result;
      } finally {
        this.changes = outer;
      }
    }) as Promise<T>;
    // Only after the commit: a transaction that rolled back (or a batch that failed) changed nothing.
    return committed.then((result) => {
      if (nested) return result;
      for (const change of changes.turns) for (const listener of this.turnListeners) listener(change);
      for (const key of changes.sessions) for (const listener of this.sessionListeners) listener(key);
      return result;
    });
  }

  /** Calls `listener` with every turn change, in commit order, after its transaction committed. */
  onTurnChange(listener: (change: TurnChange) => void): void {
    this.turnListeners.push(listener);
  }

  /** Calls `listener` with each session that got events or a new open sample, after the transaction committed. */
  onSessionChange(listener: (sessionKey: string) => void): void {
    this.sessionListeners.push(listener);
  }

  /** Inside atomically: writes or (undefined) removes a turn, recorded for onTurnChange. */
  private setTurn(key: TurnKey, turn: TurnRecord | undefined): void {
    const changes = this.changes?.turns;
    if (!changes) throw new Error('a turn changes only inside store.atomically');
    const before = this.turns.get(key);
    if (!before && !turn) return;
    if (turn) this.turns.put(key, turn);
    else this.turns.remove(key);
    if (before) this.versionTurns.remove([before.weightVersion, ...key]);
    if (turn) this.versionTurns.put([turn.weightVersion, ...key], turn.sampleId);
    if (before && turn && before.sampleId === turn.sampleId && before.weightVersion === turn.weightVersion) {
      changes.push({ before, after: turn });
      // Same sample, same version: its reply counts the same before and after, so it is left out
      // of both (no sample read). Added first: taken away first, a version's only turn would take
      // its reply sums with it.
      this.tally(turn, null, 1);
      this.tally(before, null, -1);
      return;
    }
    // Read before the caller removes the sample (removeSample removes the turn first).
    if (before) {
      changes.push({ before });
      this.tally(before, replySummary(this.samples.get(before.sampleId)), -1);
    }
    if (turn) {
      changes.push({ after: turn });
      this.tally(turn, replySummary(this.samples.get(turn.sampleId)), 1);
    }
  }

  /** Inside a write transaction: a turn's contribution to its version's sums, added or taken away. */
  private tally(turn: TurnRecord, reply: ReplySummary | null, sign: 1 | -1): void {
    const served = this.versionServed.get(turn.weightVersion) ?? emptyServed();
    countTurn(served, turn, reply, sign);
    // A version whose turns are all gone is not listed, as if it never served (and its sums' rounding goes with it).
    if (served.turns === 0) this.versionServed.remove(turn.weightVersion);
    else this.versionServed.put(turn.weightVersion, served);
  }

  /** What the turns of each version that has any add up to: O(versions). */
  servedByVersion(): Map<string, Served> {
    return new Map([...this.versionServed.getRange()].map(({ key, value }) => [key, value]));
  }

  eventLogPosition(): number {
    return this.meta.get('eventLog') ?? 0;
  }

  /** A stage's mark (0 before it saved one). */
  mark(name: Mark): number {
    return this.meta.get(name) ?? 0;
  }

  /** Saves a stage's mark; inside `atomically`, with that transaction. */
  setMark(name: Mark, value: number): Promise<boolean> {
    return this.meta.put(name, value);
  }

  /** The id of the last committed write transaction: a reader's cache is fresh while it stays the same. */
  lastTxnId(): number {
    return (this.root.getStats() as { lastTxnId: number }).lastTxnId;
  }

  /**
   * Stores a response, secrets redacted; `ordinal` is assigned here, in one transaction, and so is
   * `logMark` unless given (a response known only from a plugin event is marked at that event).
   * The caller decided that the session is opted in (the plugin's header is its newest word, and
   * its opt-in event may still be on the way): a session without a record gets one, opted in, so
   * that everything stored is listed, counted against `maxSessions` and deletable. Throws
   * SessionLimitError when that would be one session too many.
   */
  recordSample(served: Omit<SampleRecord, 'ordinal' | 'logMark'> & { logMark?: number }): Promise<SampleRecord> {
    const written = this.redactAndWriteSample(served);
    this.samplesRecording.add(written);
    const done = () => void this.samplesRecording.delete(written);
    written.then(done, done);
    return written;
  }

  /**
   * Settles once every sample recorded so far is stored (or failed). A large one is redacted in a
   * worker first, for hundreds of milliseconds: the pass deriving samples from events waits for it
   * before it decides that a run was not served (or it would store the response twice).
   */
  async samplesRecorded(): Promise<void> {
    await Promise.allSettled(this.samplesRecording);
  }

  private redactAndWriteSample(served: Omit<SampleRecord, 'ordinal' | 'logMark'> & { logMark?: number }): Promise<SampleRecord> {
    let redacted: ReturnType<typeof redactSized<typeof served>>;
    try {
      redacted = redactSized({ ...served, promptTokens: [], responseTokens: [], logprobs: [] });
    } catch (err) {
      return Promise.reject(err);
    }
    // A large sample is redacted in a worker. Samples are still stored in the order they were
    // recorded (a session's ordinals follow serving), so one that comes while another is being
    // redacted waits for it; otherwise it is stored at once, as before.
    const before = this.samplesInFlight;
    if (!(redacted instanceof Promise) && !before) return this.writeSample(served, redacted);
    const written = Promise.all([redacted, before]).then(([r]) => this.writeSample(served, r));
    const settled = written.then(
      () => undefined,
      () => undefined,
    );
    this.samplesInFlight = settled;
    void settled.then(() => this.samplesInFlight === settled && (this.samplesInFlight = undefined));
    return written;
  }

  /**
   * Stores a sample once redacted. Its `logMark` is the event log's position when its transaction
   * runs: for a large sample, events stored while it was redacted (a few hundred milliseconds)
   * count as before it; the plugin's model.call event, where it names the call, says what came after.
   */
  private writeSample(served: Omit<SampleRecord, 'ordinal' | 'logMark'> & { logMark?: number }, redacted: Redacted<typeof served>): Promise<SampleRecord> {
    const sample = redacted.found > 0 ? { ...redacted.value, redacted: true as const } : served;
    try {
      this.checkCapacity();
      for (const [name, id] of [['session key', sample.sessionKey], ['sample id', sample.id], ['run id', sample.runId]] as const) assertKeyFits(name, id);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.atomically(() => {
      if (!this.sessions.get(sample.sessionKey)?.optedIn) {
        const session = this.sessionForWrite(sample.sessionKey, true, []);
        if (!session) throw new SessionLimitError(sample.sessionKey, this.limits.maxSessions!);
        this.setOptedIn(session, true);
        this.sessions.put(sample.sessionKey, session);
      }
      const [last] = this.sessionSamples.getKeys({ start: [sample.sessionKey, Infinity], end: [sample.sessionKey], reverse: true, limit: 1 });
      const record: SampleRecord = { ...sample, ordinal: last === undefined ? 0 : last[1] + 1, logMark: sample.logMark ?? this.eventLogPosition() };
      this.samples.put(record.id, record);
      this.sampleTimes.put([record.createdAt, record.id], null);
      this.sessionSamples.put([record.sessionKey, record.ordinal], record.id);
      if (record.runId !== undefined) this.runSamples.put([record.sessionKey, record.runId, record.ordinal], record.id);
      if (!record.side) this.markOpen(record);
      return record;
    });
  }

  /** A session's samples, oldest first (or newest first). */
  *samplesOf(sessionKey: string, opts: { newestFirst?: boolean } = {}): Generator<SampleRecord> {
    const range = opts.newestFirst ? { start: [sessionKey, Infinity], end: [sessionKey], reverse: true } : { start: [sessionKey], end: [sessionKey, Infinity] };
    yield* this.samplesByIds(this.sessionSamples.getRange(range));
  }

  /** A run's samples, oldest first. */
  *runSamplesOf(sessionKey: string, runId: string): Generator<SampleRecord> {
    yield* this.samplesByIds(this.runSamples.getRange({ start: [sessionKey, runId], end: [sessionKey, runId, Infinity] }));
  }

  // The two below read one key to the end of their range, which closes its cursor: a generator
  // left unfinished would hold its read transaction until garbage collection (LMDB's reader
  // slots run out: MDB_READERS_FULL).

  /** The log position of the session's newest stored event; 0 when it has none. */
  lastEventLog(sessionKey: string): number {
    const [last] = this.sessionEvents.getKeys({ start: [sessionKey, Infinity], end: [sessionKey], reverse: true, limit: 1 });
    return last?.[1] ?? 0;
  }

  hasRunSamples(sessionKey: string, runId: string): boolean {
    return [...this.runSamples.getKeys({ start: [sessionKey, runId], end: [sessionKey, runId, Infinity], limit: 1 })].length > 0;
  }

  /** The log position of a run's first stored event. */
  runStartLog(sessionKey: string, runId: string): number | undefined {
    return [...this.runEvents.getKeys({ start: [sessionKey, runId], end: [sessionKey, runId, Infinity], limit: 1 })][0]?.[2];
  }

  /** The log position of the model.call event with this call id. */
  callLog(sessionKey: string, callId: string): number | undefined {
    return this.callEvents.get([sessionKey, callId]);
  }

  private *samplesByIds(entries: Iterable<{ value: string }>): Generator<SampleRecord> {
    for (const { value } of entries) {
      const sample = this.samples.get(value);
      if (sample) yield sample;
    }
  }

  isOptedIn(sessionKey: string): boolean {
    return this.sessions.get(sessionKey)?.optedIn === true;
  }

  listSessions(): SessionRecord[] {
    return [...this.sessions.getRange().map(({ value }) => value)];
  }

  /** A session's events in log order; with `after`, only those past that log position. */
  *sessionEventsOf(sessionKey: string, opts: { after?: number } = {}): Generator<StoredEvent> {
    const start = opts.after === undefined ? [sessionKey] : [sessionKey, opts.after + 1]; // log positions are integers
    yield* this.eventsAt(this.sessionEvents.getKeys({ start, end: [sessionKey, Infinity] }), 1);
  }

  /** A run's events in log order. */
  *runEventsOf(sessionKey: string, runId: string): Generator<StoredEvent> {
    yield* this.eventsAt(this.runEvents.getKeys({ start: [sessionKey, runId], end: [sessionKey, runId, Infinity] }), 2);
  }

  /** The events of `kind` after log position `after` through `through`, in log order; at most `limit`. */
  *eventsOfKind<K extends PassKind>(kind: K, after: number, through: number, limit?: number): Generator<Extract<StoredEvent, { kind: K }>> {
    yield* this.eventsAt(this.eventKinds.getKeys({ start: [kind, after + 1], end: [kind, through + 1], limit }), 1) as Generator<Extract<StoredEvent, { kind: K }>>;
  }

  /** The events whose log positions are at `index` of the keys. */
  private *eventsAt(keys: Iterable<Key>, index: number): Generator<StoredEvent> {
    for (const key of keys) {
      const event = this.events.get((key as number[])[index]!);
      if (event) yield event;
    }
  }

  sample(id: string): SampleRecord | undefined {
    return this.samples.get(id);
  }

  turn(key: TurnKey): TurnRecord | undefined {
    return this.turns.get(key);
  }

  score(key: TurnKey): ScoreRecord | undefined {
    return this.scores.get(key);
  }

  version(name: string): WeightVersionRecord | undefined {
    return this.versions.get(name);
  }

  /** Every weight version made or adopted, oldest first. */
  *versionRecords(): Generator<WeightVersionRecord> {
    for (const { value } of this.versions.getRange()) yield value;
  }

  /** The turns `version` served, by session (the versionTurns index: O(its turns), not O(all)). */
  *turnsOfVersion(version: string): Generator<TurnRecord> {
    for (const [turnVersion, sessionKey, turnIndex] of this.versionTurns.getKeys({ start: [version] })) {
      if (turnVersion !== version) return;
      const turn = this.turns.get([sessionKey, turnIndex]);
      if (turn) yield turn;
    }
  }

  *turnsOf(sessionKey?: string): Generator<TurnRecord> {
    const range = sessionKey === undefined ? {} : { start: [sessionKey], end: [sessionKey, Infinity] };
    for (const { value } of this.turns.getRange(range)) yield value;
  }

  /** Deletes everything stored about a session. Returns false if there was no such session. */
  async removeSession(sessionKey: string, onProgress?: (done: number, total: number) => void): Promise<boolean> {
    return this.atomically(() => {
      if (this.sessions.get(sessionKey) === undefined) return false;
      // Collect first: deleting under an open cursor would skip entries.
      const eventKeys = [...this.sessionEvents.getKeys({ start: [sessionKey], end: [sessionKey, Infinity] })];
      const samples = [...this.samplesOf(sessionKey)];
      const turns = [...this.turnsOf(sessionKey)];
      const total = eventKeys.length + samples.length + turns.length;
      let done = 0;
      for (const [, log] of eventKeys) {
        this.removeEvent(sessionKey, log);
        onProgress?.(++done, total);
      }
      for (const sample of samples) {
        this.removeSample(sample);
        onProgress?.(++done, total);
      }
      for (const turn of turns) {
        this.removeTurn([sessionKey, turn.turnIndex]);
        onProgress?.(++done, total);
      }
      // Also turns retention removed before: a version record names its batch by session key.
      const named = [...this.versionRecords()].filter((record) => record.turnIds.some((id) => isTurnOfSession(id, sessionKey)));
      for (const record of named) this.versions.put(record.version, { ...record, turnIds: record.turnIds.filter((id) => !isTurnOfSession(id, sessionKey)) });
      if (this.sessions.get(sessionKey)?.optedIn) this.meta.put('optedInSessions', this.optedInCount() - 1);
      this.sessions.remove(sessionKey);
      return true;
    });
  }

  /**
   * Retention: deletes events, samples and their turns older than `cutoff` (ms since the epoch).
   * Sessions keep their records (the opt-in state), not their content. What expired is found by
   * the indexes by time (a store of years reads only that), in slices of EXPIRE_SLICE, one
   * transaction each, letting the event loop run between them.
   */
  async expireBefore(cutoff: number): Promise<{ events: number; turns: number }> {
    const total = { events: 0, turns: 0 };
    for (;;) {
      const slice = await this.atomically(() => {
        // Collected first: deleting under an open cursor would skip entries.
        const events = [...this.eventTimes.getKeys({ end: [cutoff], limit: EXPIRE_SLICE })];
        const samples = [...this.sampleTimes.getKeys({ end: [cutoff], limit: EXPIRE_SLICE })];
        for (const [at, log] of events) {
          const event = this.events.get(log);
          if (event) this.removeEvent(event.sessionKey, log, event);
          else this.eventTimes.remove([at, log]);
        }
        for (const [createdAt, id] of samples) {
          const sample = this.samples.get(id);
          if (sample && sample.createdAt < cutoff) this.removeSample(sample);
          // Also an entry left by a sample id written again at another time.
          this.sampleTimes.remove([createdAt, id]);
        }
        return { events: events.length, turns: samples.length };
      });
      total.events += slice.events;
      total.turns += slice.turns;
      if (slice.events < EXPIRE_SLICE && slice.turns < EXPIRE_SLICE) return total;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Inside a write transaction; `event` is the one stored at `log`, if the caller has read it. */
  private removeEvent(sessionKey: string, log: number, event = this.events.get(log)): void {
    this.events.remove(log);
    this.sessionEvents.remove([sessionKey, log]);
    if (event) this.eventTimes.remove([event.at, log]);
    if (event && isPassKind(event.kind)) this.eventKinds.remove([event.kind, log]);
    if (event?.runId !== undefined) this.runEvents.remove([sessionKey, event.runId, log]);
    if (event?.kind === 'model.call' && this.callEvents.get([sessionKey, event.callId]) === log) this.callEvents.remove([sessionKey, event.callId]);
  }

  /** Inside a write transaction: a sample and the turn, score and queue entries made from it. */
  private removeSample(sample: SampleRecord): void {
    const key: [string, number] = [sample.sessionKey, sample.ordinal];
    // The turn first: its change carries the sample, read before it goes.
    this.removeTurn(key);
    this.samples.remove(sample.id);
    this.sampleTimes.remove([sample.createdAt, sample.id]);
    this.sessionSamples.remove(key);
    if (sample.runId !== undefined) this.runSamples.remove([sample.sessionKey, sample.runId, sample.ordinal]);
    this.markClosed(sample.sessionKey, sample.ordinal, sample.id);
  }

  /** Inside a write transaction: a turn and its score and queue entries. */
  private removeTurn(key: [string, number]): void {
    this.setTurn(key, undefined);
    this.scores.remove(key);
    this.unscored.remove(key);
    this.trainQueue.remove(key);
    // Out of a step's batch too: a session made again after `sessions rm` numbers its turns from
    // 0, and finishing the step must not mark those trained.
    const batch = this.meta.get('pendingBatch');
    if (batch?.keys.some(([s, i]) => s === key[0] && i === key[1])) this.meta.put('pendingBatch', { ...batch, keys: batch.keys.filter(([s, i]) => s !== key[0] || i !== key[1]) });
  }

  // --- the pipeline's state changes, in the order a response goes through them ---
  // open sample → (closeSample) unscored turn → (recordScore) scored, trainable ones queued →
  // (startBatch) pending batch → (finishBatch) trained version. Late feedback sends a turn back to
  // scoring (reviseTurn). Each runs in one atomic transaction, or inside the caller's.

  /** Inside a write transaction: a sample waits for its next state, indexed by session, and its session is told. */
  private markOpen(sample: SampleRecord): void {
    this.openSamples.put(sample.id, openSampleOf(sample));
    this.openBySession.put([sample.sessionKey, sample.ordinal], sample.id);
    this.changes!.sessions.add(sample.sessionKey);
  }

  /** Inside a write transaction: the sample at [sessionKey, ordinal] no longer waits. */
  private markClosed(sessionKey: string, ordinal: number, sampleId: string): void {
    this.openSamples.remove(sampleId);
    this.openBySession.remove([sessionKey, ordinal]);
  }

  /** A session's samples waiting for their next state (turn assembly's work). */
  openSamplesOf(sessionKey: string): OpenSample[] {
    const open: OpenSample[] = [];
    for (const { value: id } of this.openBySession.getRange({ start: [sessionKey], end: [sessionKey, Infinity] })) {
      const sample = this.openSamples.get(id);
      if (sample) open.push(sample);
    }
    return open;
  }

  /** The sessions with samples waiting for their next state (one read of the index). */
  sessionsWithOpenSamples(): Set<string> {
    return new Set(Array.from(this.openBySession.getKeys(), ([sessionKey]) => sessionKey));
  }

  isOpen(sampleId: string): boolean {
    return this.openSamples.get(sampleId) !== undefined;
  }

  /** Turns waiting for the scoring loop, by key. */
  unscoredKeys(): TurnKey[] {
    return [...this.unscored.getKeys()] as TurnKey[];
  }

  /** Scored, trainable turns waiting for the trainer. */
  trainQueueLength(): number {
    return this.trainQueue.getCount();
  }

  /** A sample got its next state: its turn is written and queued for scoring. False when another pass closed it first. */
  closeSample(turn: TurnRecord): Promise<boolean> {
    return this.atomically(() => {
      if (this.openSamples.get(turn.sampleId) === undefined) return false;
      const key: TurnKey = [turn.sessionKey, turn.turnIndex];
      this.setTurn(key, turn);
      this.unscored.put(key, null);
      this.markClosed(turn.sessionKey, turn.turnIndex, turn.sampleId);
      return true;
    });
  }

  /** Inside atomically: a made turn changed (late feedback) and goes back to scoring. */
  reviseTurn(turn: TurnRecord): void {
    const key: TurnKey = [turn.sessionKey, turn.turnIndex];
    this.setTurn(key, turn);
    this.unscored.put(key, null);
  }

  /** A queued turn that no longer exists (its session was removed) leaves the scoring queue. */
  dropUnscored(key: TurnKey): Promise<boolean> {
    return this.unscored.remove(key);
  }

  /**
   * A turn's score, if the turn is still the one that was scored (late feedback may have changed
   * it meanwhile: then nothing is written and the next pass scores the new one). A trainable turn
   * joins the training queue unless it trained already: a turn trains once.
   */
  recordScore(scored: TurnRecord, score: ScoreRecord, trainable: boolean): Promise<boolean> {
    const key: TurnKey = [scored.sessionKey, scored.turnIndex];
    return this.atomically(() => {
      if (this.unscored.get(key) === undefined || JSON.stringify(this.turns.get(key)?.nextState) !== JSON.stringify(scored.nextState)) return false;
      this.scores.put(key, score);
      this.setTurn(key, scored);
      this.unscored.remove(key);
      if (trainable && !scored.trainedIn) this.trainQueue.put(key, null);
      else this.trainQueue.remove(key);
      return true;
    });
  }

  servingState(): ServingState {
    return {
      servingVersion: this.meta.get('servingVersion'),
      pinned: this.meta.get('pinned'),
      versionCounter: this.meta.get('versionCounter') ?? 0,
      pendingBatch: this.meta.get('pendingBatch'),
    };
  }

  /**
   * The batch a training step works on: the one a crash left pending, else up to `limit` queued
   * turns under the next version's name (`nameOf` the version counter). Null when nothing waits.
   */
  startBatch(limit: number, nameOf: (counter: number) => string): Promise<PendingBatch | null> {
    return this.atomically(() => {
      const state = this.servingState();
      if (state.pendingBatch) return state.pendingBatch;
      const keys = [...this.trainQueue.getKeys({ limit })] as TurnKey[];
      if (keys.length === 0) return null;
      const counter = state.versionCounter + 1;
      const batch: PendingBatch = { version: nameOf(counter), parent: state.servingVersion ?? null, keys };
      this.meta.put('versionCounter', counter);
      this.meta.put('pendingBatch', batch);
      return batch;
    });
  }

  /**
   * The pending batch made `record`: its turns are marked trained in it, and it is what training
   * continues from. The turns are the batch's as stored now: those removed meanwhile (sessions rm,
   * retention) are not, whatever now has their keys.
   */
  finishBatch(record: WeightVersionRecord): Promise<void> {
    return this.atomically(() => {
      const keys = this.meta.get('pendingBatch')?.keys ?? [];
      const kept = new Set(keys.map(turnIdOf));
      this.versions.put(record.version, { ...record, turnIds: record.turnIds.filter((id) => kept.has(id)) });
      for (const key of keys) {
        const turn = this.turns.get(key);
        if (turn) this.setTurn(key, { ...turn, trainedIn: record.version });
        this.trainQueue.remove(key);
      }
      this.meta.put('servingVersion', record.version);
      this.meta.remove('pendingBatch');
    });
  }

  /** Serving and training go on from `version` (a rollback), unpinned. */
  rollBackTo(version: string): Promise<void> {
    return this.atomically(() => {
      this.meta.put('servingVersion', version);
      this.meta.remove('pinned');
    });
  }

  /** Pins serving to a version, or (null) unpins it. */
  setPinned(version: string | null): Promise<boolean> {
    return version === null ? this.meta.remove('pinned') : this.meta.put('pinned', version);
  }

  /** A version made elsewhere (dropped into the versions folder): recorded, and with `trainFrom`, what training continues from. */
  adoptVersion(record: WeightVersionRecord, versionNumber: number, trainFrom: boolean): Promise<void> {
    return this.atomically(() => {
      this.versions.put(record.version, record);
      if (!trainFrom) return;
      this.meta.put('servingVersion', record.version);
      this.meta.put('versionCounter', Math.max(versionNumber, this.servingState().versionCounter));
    });
  }

  close(): Promise<void> {
    return this.root.close();
  }
}

export function toExportedTurn(turn: TurnRecord): ExportedTurn {
  return {
    sessionKey: turn.sessionKey,
    turnIndex: turn.turnIndex,
    action: turn.action,
    nextState: {
      ...(turn.nextState.userMessage !== undefined && { userMessage: turn.nextState.userMessage }),
      toolResults: turn.nextState.toolResults.map(toExportedToolResult),
      ...(turn.nextState.screenAfter && { screenAfter: toExportedToolResult(turn.nextState.screenAfter) }),
      ...(turn.nextState.feedback && { feedback: turn.nextState.feedback }),
      ...(turn.nextState.none && { none: true }),
    },
    reward: turn.reward,
    hint: turn.hint,
    weightVersion: turn.weightVersion,
    createdAt: new Date(turn.createdAt).toISOString(),
  };
}
