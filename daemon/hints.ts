// Hint memory: the hindsight hints the scoring loop accepts ("should have done X"), kept in the
// store's LMDB environment and served to the plugin, which puts the relevant ones in front of later
// prompts. This is learning without a GPU: it works for any model the agent already uses.
//
// Rules (each hint has a scope: an agent, or one session of it):
//  - Learn: every accepted hint of a scored turn (the judge's, or each of the user's `/clawrl hint`s),
//    its text and its source request (what the user typed, as the plugin reported it) redacted of
//    secrets.
//  - Merge: a new hint whose content words overlap an existing hint of the same scope with a
//    Jaccard index of at least MERGE_JACCARD is the same lesson: the evidence is summed and the
//    clearer text kept (the user's own words over a judge's, else the shorter). A turn adds its
//    evidence to a hint once, however often it is scored again.
//  - Fade: feedback on a run that had hints injected (`hints.injected` event of the plugin) counts
//    for them: weight = (evidence + good) / (1 + 2·bad). A turn's rating counts once per hint, and
//    a changed rating replaces the one counted. Hints below FADED_BELOW are no longer served.
//  - Cap: beyond `maxHints`, the weakest hint goes (lowest weight, then least recently updated).
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Database } from 'lmdb';
import {
  MAX_ID_BYTES,
  agentOf,
  idFits,
  stripHintsBlock,
  termJaccard,
  type HintEntry,
  type HintScope,
  type HintsSnapshot,
} from '../protocol/index.ts';
import { HttpError, sendError, sendJson } from './http.ts';
import { suffixOf } from './installs.ts';
import type { Logger } from './log.ts';
import { redactSecrets } from './redact.ts';
import { lastRealUserIndex } from '../recipes/types.ts';
import type { SampleRecord, ScoreRecord, Store, TurnRecord } from './store.ts';
import { hintsOf } from './turns.ts';
import { errorMessage } from './errors.ts';

export type HintOrigin = 'feedback' | 'judge';

export interface HintRecord {
  id: string;
  text: string;
  context: string;
  scope: HintScope;
  /** Where the kept text came from. */
  origin: HintOrigin;
  /** Times the hint was learned (merged duplicates included). */
  evidence: number;
  /** Feedback on runs it was injected into. */
  good: number;
  bad: number;
  /** Turns (`sessionKey#turnIndex`) it was learned from, newest last. */
  sources: string[];
  /** Turns whose feedback has been counted for it. */
  rated: string[];
  /** The rating counted for each turn in `rated` (absent for turns counted before it was kept). */
  ratedAs?: Record<string, 'good' | 'bad'>;
  createdAt: number;
  updatedAt: number;
}

export interface HintMemoryOptions {
  store: Store;
  log: Logger;
  /** Hints kept at most; the weakest are evicted beyond it. */
  maxHints?: number;
  /** Scope of learned hints: every session of the agent (default), or only the session they came from. */
  scope?: 'agent' | 'session';
}

export interface HintMemoryStatus {
  stored: number;
  active: number;
  revision: number;
}

export const MERGE_JACCARD = 0.6;
export const FADED_BELOW = 0.5;
export const DEFAULT_MAX_HINTS = 5000;
/** Longest source context kept per hint: enough to rank on, small enough to ship 10k hints. */
const MAX_CONTEXT_CHARS = 500;
/** Turn keys remembered per hint (for "once per turn"); older ones are dropped. */
const MAX_TURN_KEYS = 32;

export function hintWeight(h: Pick<HintRecord, 'evidence' | 'good' | 'bad'>): number {
  return (h.evidence + h.good) / (1 + 2 * h.bad);
}

/** The text to keep of two texts of one lesson: the user's own words over a judge's, else the shorter. */
function clearer(a: { text: string; origin: HintOrigin }, b: { text: string; origin: HintOrigin }) {
  if (a.origin !== b.origin) return a.origin === 'feedback' ? a : b;
  return b.text.length < a.text.length ? b : a;
}

const pushCapped = (list: string[], item: string) => [...list.filter((x) => x !== item), item].slice(-MAX_TURN_KEYS);
const turnKey = (turn: Pick<TurnRecord, 'sessionKey' | 'turnIndex'>) => `${turn.sessionKey}#${turn.turnIndex}`;
const sameScope = (a: HintScope, b: HintScope) => a.agent === b.agent && a.sessionKey === b.sessionKey;

/**
 * The request a turn answered: what the user typed to start its run (the plugin's user.message),
 * else the last real user message of its prompt (which in a gateway carries OpenClaw's envelope
 * prefix), without the hints it was shown.
 */
function sourceRequest(store: Store, sample: SampleRecord | undefined): string {
  if (sample?.runId !== undefined) {
    const typed = [...store.runEventsOf(sample.sessionKey, sample.runId)].filter((e) => e.kind === 'user.message').map((e) => e.content);
    if (typed.length > 0) return typed.join('\n').trim();
  }
  const messages = sample?.requestMessages ?? [];
  const i = lastRealUserIndex(messages);
  return i < 0 ? '' : stripHintsBlock(messages[i]!.content).trim();
}

export class HintMemory {
  readonly hints: Database<HintRecord, string>;
  private readonly maxHints: number;
  private readonly writing = new Set<Promise<void>>();
  /** The last snapshot sent, by revision: GET /hints is polled, the memory changes rarely. */
  /** Install key suffix → what GET /hints answers it (installs.ts), at revision `snapshotsRevision`. */
  private readonly snapshots = new Map<string, string>();
  private snapshotsRevision = -1;

  constructor(private readonly opts: HintMemoryOptions) {
    this.hints = opts.store.openDB('hints');
    this.maxHints = opts.maxHints ?? DEFAULT_MAX_HINTS;
  }

  /** The memory's revision, bumped by every change (the ETag of GET /hints). */
  revision(): number {
    return this.opts.store.mark('hintsRevision');
  }

  list(): HintRecord[] {
    return [...this.hints.getRange().map(({ value }) => value)];
  }

  status(): HintMemoryStatus {
    const all = this.list();
    return { stored: all.length, active: all.filter((h) => hintWeight(h) >= FADED_BELOW).length, revision: this.revision() };
  }

  /**
   * What a plugin of the install whose session keys end with `keySuffix` gets: its install's hints
   * that have not faded, scoped as it names its agents and sessions (without the suffix).
   */
  snapshotBody(keySuffix = ''): { revision: number; body: string } {
    const revision = this.revision();
    if (revision !== this.snapshotsRevision) {
      this.snapshots.clear();
      this.snapshotsRevision = revision;
    }
    const known = this.snapshots.get(keySuffix);
    if (known !== undefined) return { revision, body: known };
    const unsuffixed = (key: string) => key.slice(0, key.length - keySuffix.length);
    const hints: HintEntry[] = this.list()
      .filter((h) => hintWeight(h) >= FADED_BELOW && suffixOf(h.scope.agent) === keySuffix)
      .map((h) => ({
        id: h.id,
        text: h.text,
        context: h.context,
        scope: { agent: unsuffixed(h.scope.agent), ...(h.scope.sessionKey !== undefined && { sessionKey: unsuffixed(h.scope.sessionKey) }) },
        weight: hintWeight(h),
      }));
    const body = JSON.stringify({ revision, hints } satisfies HintsSnapshot);
    this.snapshots.set(keySuffix, body);
    return { revision, body };
  }

  /** The scoring loop's `onScored`: learns in the background; `flushed()` waits for it. */
  onScored(turn: TurnRecord, score: ScoreRecord): void {
    const write = this.learnFrom(turn, score)
      .catch((err: unknown) => this.opts.log.error('hint memory failed to learn from a turn', { turn: turnKey(turn), error: errorMessage(err) }))
      .finally(() => this.writing.delete(write));
    this.writing.add(write);
  }

  /** Resolves once every write started by onScored has finished (before the store closes). */
  async flushed(): Promise<void> {
    await Promise.all(this.writing);
  }

  /** Learns the turn's hint and counts its feedback for the hints its run was shown. */
  async learnFrom(turn: TurnRecord, score: ScoreRecord): Promise<void> {
    const sample = this.opts.store.sample(turn.sampleId);
    if (score.hint) {
      // The user's hints on a turn are separate lessons; the judge's is one.
      const fromUser = turn.nextState.feedback?.hint?.trim() === score.hint;
      const context = sourceRequest(this.opts.store, sample);
      for (const text of fromUser ? hintsOf(turn.nextState.feedback) : [score.hint]) {
        await this.learn({ text, context, origin: fromUser ? 'feedback' : 'judge', sessionKey: turn.sessionKey, source: turnKey(turn) });
      }
    }
    const rating = turn.nextState.feedback?.rating;
    if (rating && sample) await this.rate(this.injectedInto(sample), rating, turnKey(turn));
  }

  /** Stores a hint, or merges it into the near-duplicate of its scope. Returns the hint's id. */
  async learn(input: { text: string; context: string; origin: HintOrigin; sessionKey: string; source: string }): Promise<string> {
    const text = redactSecrets(input.text.trim());
    const context = redactSecrets(input.context).slice(0, MAX_CONTEXT_CHARS);
    // Another install's agent `main` is not this one's: its hints stay its own.
    const scope: HintScope = { agent: agentOf(input.sessionKey) + suffixOf(input.sessionKey), ...(this.opts.scope === 'session' && { sessionKey: input.sessionKey }) };
    const now = Date.now();
    return this.opts.store.atomically(() => {
      let twin: HintRecord | undefined;
      let best = MERGE_JACCARD;
      for (const { value } of this.hints.getRange()) {
        if (!sameScope(value.scope, scope)) continue;
        const similarity = termJaccard(value.text, text);
        if (similarity >= best) [twin, best] = [value, similarity];
      }
      if (twin?.sources.includes(input.source)) return twin.id;
      let record: HintRecord;
      if (twin) {
        const kept = clearer(twin, { text, origin: input.origin });
        const contexts = twin.context.includes(context) ? twin.context : [twin.context, context].filter(Boolean).join('\n');
        record = {
          ...twin,
          text: kept.text,
          origin: kept.origin,
          context: contexts.slice(0, MAX_CONTEXT_CHARS),
          evidence: twin.evidence + 1,
          sources: pushCapped(twin.sources, input.source),
          updatedAt: now,
        };
      } else {
        const id = `h${randomBytes(4).toString('hex')}`;
        record = { id, text, context, scope, origin: input.origin, evidence: 1, good: 0, bad: 0, sources: [input.source], rated: [], createdAt: now, updatedAt: now };
        this.evictFor(record.id);
      }
      this.hints.put(record.id, record);
      this.bump();
      return record.id;
    });
  }

  /** Deletes a hint; false if there was none with this id. */
  async remove(id: string): Promise<boolean> {
    return this.opts.store.atomically(() => {
      if (this.hints.get(id) === undefined) return false;
      this.hints.remove(id);
      this.bump();
      return true;
    });
  }

  /** The hints the plugin injected into the sample's run (or, without a run id, the last injection before it). */
  private injectedInto(sample: SampleRecord): string[] {
    const { store } = this.opts;
    const events = sample.runId !== undefined ? store.runEventsOf(sample.sessionKey, sample.runId) : store.sessionEventsOf(sample.sessionKey);
    let ids: string[] = [];
    for (const e of events) {
      if (e.kind === 'hints.injected' && (sample.runId !== undefined || e.log <= sample.logMark)) ids = e.hintIds;
    }
    return ids;
  }

  private async rate(ids: string[], rating: 'good' | 'bad', source: string): Promise<void> {
    if (ids.length === 0) return;
    await this.opts.store.atomically(() => {
      let changed = false;
      for (const id of ids) {
        const hint = this.hints.get(id);
        if (!hint) continue;
        const counted = hint.rated.includes(source) ? (hint.ratedAs?.[source] ?? 'unknown') : undefined;
        // Counted already as this rating, or before ratings were kept (nothing to take back).
        if (counted === rating || counted === 'unknown') continue;
        const next = { ...hint, [rating]: hint[rating] + 1, rated: pushCapped(hint.rated, source), updatedAt: Date.now() };
        if (counted !== undefined) next[counted] = Math.max(0, hint[counted] - 1);
        next.ratedAs = Object.fromEntries(next.rated.map((key) => [key, key === source ? rating : hint.ratedAs?.[key]]).filter(([, r]) => r !== undefined));
        this.hints.put(id, next);
        changed = true;
      }
      if (changed) this.bump();
    });
    this.opts.log.debug('hint feedback counted', { ids, rating, source });
  }

  /** Makes room for one more hint: removes the weakest while the memory is full. */
  private evictFor(newId: string): void {
    let count = this.hints.getCount();
    while (count >= this.maxHints) {
      let weakest: HintRecord | undefined;
      for (const { value } of this.hints.getRange()) {
        if (value.id === newId) continue;
        if (!weakest || hintWeight(value) < hintWeight(weakest) || (hintWeight(value) === hintWeight(weakest) && value.updatedAt < weakest.updatedAt)) weakest = value;
      }
      if (!weakest) return;
      this.hints.remove(weakest.id);
      count--;
    }
  }

  private bump(): void {
    void this.opts.store.setMark('hintsRevision', this.revision() + 1);
  }
}

/** `GET /hints` (ETag: the revision) and `DELETE /hints/<id>`; the route table (routes.ts) gives their paths. */
export function hintHandlers(memory: HintMemory, keySuffix: (installId: string | undefined) => string = () => '') {
  const list = (req: IncomingMessage, res: ServerResponse) => {
    const header = req.headers['x-clawrl-install'];
    const install = typeof header === 'string' && header !== '' ? header : undefined;
    if (install !== undefined && !idFits(install)) throw new HttpError(400, `header x-clawrl-install is ${Buffer.byteLength(install)} bytes long, over the limit of ${MAX_ID_BYTES} bytes`);
    const suffix = keySuffix(install);
    const { revision, body } = memory.snapshotBody(suffix);
    const etag = `"${revision}${suffix}"`;
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag }).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), etag });
    res.end(body);
  };
  const remove = async (_req: IncomingMessage, res: ServerResponse, path: string) => {
    const id = decodeURIComponent(path.slice('/hints/'.length));
    if (!(await memory.remove(id))) return sendError(res, 404, `no hint ${JSON.stringify(id)}`, 'not_found');
    sendJson(res, 200, { removed: id });
  };
  return { list, remove };
}
