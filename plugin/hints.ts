// Hint memory, plugin side: a local copy of the daemon's hints (GET /hints, polled with the
// memory's revision as ETag, so an unchanged memory costs a 304) indexed with MiniSearch, and the
// `before_prompt_build` hook that puts the hints relevant to the current request in front of the
// prompt. The hook answers from the copy, never from the network: only the very first hook of a
// process waits (at most COLD_WAIT_MS) for the first fetch, so a one-shot `agent --local` run sees
// hints too. When the daemon is unreachable the turn goes on with whatever the copy holds, or none.
//
// Relevance is lexical: MiniSearch's BM25 over the hint text and the request it was learned
// from, with the content-word tokenizer the daemon merges duplicates with. A hint counts as
// related when it shares at least MIN_SHARED_TERMS content words with the request (one, for a
// one-word request); related hints rank by BM25 score × √weight, and the top ones go in while
// the block stays within the token budget (≈ 4 characters a token).
import MiniSearch from 'minisearch';
import {
  DEFAULT_AGENT,
  agentOf,
  formatHintsBlock,
  hintTerms,
  inScope,
  type HintEntry,
  type HintsSnapshot,
} from '../protocol/index.ts';
import { hookContext, isSideTrigger, type Capture } from './capture.ts';
import type { PluginConfig } from './config.ts';
import type { BeforePromptBuildEvent, PluginLogger, PromptBuildResult } from './host-types.ts';

/** How often the copy asks the daemon for a newer revision. */
export const REFRESH_MS = 5_000;
/** The first hook of a process waits this long, at most, for the first fetch. */
export const COLD_WAIT_MS = 300;
const FETCH_TIMEOUT_MS = 5_000;
const MIN_SHARED_TERMS = 2;
/** Requests are cut to this many characters before ranking: the start says what they are about. */
const MAX_QUERY_CHARS = 2_000;
const CHARS_PER_TOKEN = 4;

export interface HintCacheOptions {
  /** http(s)://host:port/hints of the daemon. */
  url: string;
  token: string;
  logger: Pick<PluginLogger, 'warn'>;
  /** This OpenClaw install's id (link.ts installIdOf): the daemon answers with the install's own hints. */
  installId?: () => string;
  refreshMs?: number;
  coldWaitMs?: number;
}

export interface HintSelection {
  topK: number;
  maxTokens: number;
}

export class HintCache {
  private index = HintCache.emptyIndex();
  private readonly byId = new Map<string, HintEntry>();
  private etag: string | undefined;
  private firstSync: Promise<void> | undefined;
  private coldWaitDone = false;
  private timer: NodeJS.Timeout | undefined;
  private failing = false;

  constructor(private readonly opts: HintCacheOptions) {}

  private static emptyIndex(): MiniSearch<HintEntry> {
    // One field (text and context together): half the postings of two fields, and at 10k hints
    // the search cost is in the postings.
    return new MiniSearch<HintEntry>({
      fields: ['body'],
      extractField: (hint, field) => (field === 'body' ? `${hint.text}\n${hint.context}` : hint[field as keyof HintEntry]),
      tokenize: hintTerms,
      processTerm: (term) => term,
      searchOptions: { tokenize: hintTerms, processTerm: (term) => term },
    });
  }

  /** Starts polling (once); the timer never keeps the process alive. */
  start(): void {
    if (this.firstSync) return;
    this.firstSync = this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.opts.refreshMs ?? REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.firstSync = undefined;
  }

  /** A new daemon URL or token: the copy is fetched again from the new place. */
  reconfigure(url: string, token: string): void {
    if (url === this.opts.url && token === this.opts.token) return;
    Object.assign(this.opts, { url, token });
    this.etag = undefined;
    if (this.firstSync) void this.refresh();
  }

  /** Resolves when the copy can be used: at once, except for the first call, which waits for the first fetch (bounded). */
  async ready(): Promise<void> {
    this.start();
    if (this.coldWaitDone) return;
    this.coldWaitDone = true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.opts.coldWaitMs ?? COLD_WAIT_MS)));
    await Promise.race([this.firstSync, timeout]);
    clearTimeout(timer);
  }

  /** Fetches the daemon's hints unless the copy has its revision already. Never throws. */
  async refresh(): Promise<void> {
    try {
      const res = await fetch(this.opts.url, {
        headers: {
          authorization: `Bearer ${this.opts.token}`,
          ...(this.opts.installId && { 'x-clawrl-install': this.opts.installId() }),
          ...(this.etag && { 'if-none-match': this.etag }),
        },
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
      if (res.status === 304) return;
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      this.load((await res.json()) as HintsSnapshot);
      this.etag = res.headers.get('etag') ?? undefined;
      this.failing = false;
    } catch (err) {
      // Logged when the daemon becomes unreachable, not on every poll while it stays so.
      if (!this.failing) this.opts.logger.warn(`clawrl: could not fetch hints from ${this.opts.url}: ${(err as Error).message}`);
      this.failing = true;
    }
  }

  private load(snapshot: HintsSnapshot): void {
    const hints = Array.isArray(snapshot.hints) ? snapshot.hints.filter((h) => typeof h?.id === 'string' && typeof h.text === 'string') : [];
    const index = HintCache.emptyIndex();
    index.addAll(hints.map((h) => ({ ...h, context: typeof h.context === 'string' ? h.context : '' })));
    this.index = index;
    this.byId.clear();
    for (const h of hints) this.byId.set(h.id, h);
  }

  /** Hints that apply to a session, strongest first (for `/clawrl hints`). */
  inScope(agent: string, sessionKey: string | undefined): HintEntry[] {
    return [...this.byId.values()].filter((h) => inScope(h.scope, agent, sessionKey)).sort((a, b) => b.weight - a.weight);
  }

  /** The hints to inject for a request, best first, within `topK` and the token budget. */
  select(request: string, agent: string, sessionKey: string | undefined, limits: HintSelection): HintEntry[] {
    const query = request.slice(0, MAX_QUERY_CHARS);
    const wanted = Math.min(MIN_SHARED_TERMS, new Set(hintTerms(query)).size);
    if (wanted === 0 || this.byId.size === 0) return [];
    const ranked = this.index
      .search(query, { filter: (r) => { const h = this.byId.get(r.id as string); return h !== undefined && inScope(h.scope, agent, sessionKey); } })
      .filter((r) => r.queryTerms.length >= wanted)
      .map((r) => ({ hint: this.byId.get(r.id as string)!, rank: r.score * Math.sqrt(this.byId.get(r.id as string)!.weight) }))
      .sort((a, b) => b.rank - a.rank);
    const chosen: HintEntry[] = [];
    for (const { hint } of ranked) {
      if (chosen.length >= limits.topK) break;
      if (formatHintsBlock([...chosen, hint]).length / CHARS_PER_TOKEN <= limits.maxTokens) chosen.push(hint);
    }
    return chosen;
  }

  /** `/clawrl forget <id>`: deletes the hint in the daemon and drops it here at once. */
  async forget(id: string): Promise<'removed' | 'unknown'> {
    const res = await fetch(`${this.opts.url}/${encodeURIComponent(id)}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${this.opts.token}` },
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    if (res.status === 404) return 'unknown';
    if (!res.ok) throw new Error(`the daemon answered HTTP ${res.status}`);
    if (this.byId.delete(id)) this.index.discard(id);
    return 'removed';
  }
}

/** The agent and session a hook or command is about. */
export function hintScopeOf(ctx: { agentId?: string; sessionKey?: string }): { agent: string; sessionKey?: string } {
  return { agent: ctx.agentId ?? (ctx.sessionKey === undefined ? DEFAULT_AGENT : agentOf(ctx.sessionKey)), sessionKey: ctx.sessionKey };
}

/**
 * The `before_prompt_build` handler. Sessions that opted in get hints (and the daemon hears which,
 * so later feedback on the run can confirm or contradict them); other sessions only with
 * `hintsForAllSessions`, and nothing about them is sent. Side turns (heartbeats, cron) get none.
 */
export function hintsHook(cache: HintCache, capture: Capture, config: () => PluginConfig, logger: Pick<PluginLogger, 'warn'>) {
  let failures = 0;
  return async (event: BeforePromptBuildEvent, rawCtx: unknown): Promise<PromptBuildResult | undefined> => {
    try {
      const { hints, hintsForAllSessions, hintsTopK, hintsMaxTokens } = config();
      const ctx = hookContext(rawCtx);
      if (!hints || isSideTrigger(ctx.trigger)) return undefined;
      const optedIn = capture.isOptedIn(ctx.sessionKey);
      if (!optedIn && !hintsForAllSessions) return undefined;
      const request = typeof event?.currentUserMessage === 'string' && event.currentUserMessage !== '' ? event.currentUserMessage : event?.prompt;
      if (typeof request !== 'string' || request.trim() === '') return undefined;
      await cache.ready();
      const { agent, sessionKey } = hintScopeOf(ctx);
      const chosen = cache.select(request, agent, sessionKey, { topK: hintsTopK, maxTokens: hintsMaxTokens });
      if (chosen.length === 0) return undefined;
      if (optedIn && sessionKey !== undefined) capture.hintsInjected(sessionKey, ctx.sessionId, ctx.runId, chosen.map((h) => h.id));
      return { prependContext: formatHintsBlock(chosen) };
    } catch (err) {
      // A failing hook must not cost the turn: no hints this time.
      if (++failures <= 5) logger.warn(`clawrl: before_prompt_build failed: ${(err as Error).message}`);
      return undefined;
    }
  };
}
