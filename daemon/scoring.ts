// The scoring loop: takes assembled turns and gathers what the recipe says it needs (the judge's
// votes for a score, a hindsight hint, its teacher's log-probs under that hint), then stores the
// votes, the hint and the recipe's per-token advantages. Trainable turns go on to the trainer's queue.
// It runs on its own timer and never touches the serving path.
import type { Store, ScoreRecord, TurnKey, TurnRecord } from './store.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import { canTrain, type Backend } from './backends/types.ts';
import { Loop } from './loop.ts';
import { errorMessage } from './errors.ts';
import {
  createLimiter,
  extractHint,
  judgeTurn,
  type Complete,
  type Recipe,
  type RecipeDefaults,
  type Turn,
} from '../recipes/index.ts';

/** Where votes come from: no model (rules), the daemon's own policy, or any OpenAI-compatible endpoint. */
export type JudgeConfig = { kind: 'rules' } | { kind: 'policy' } | { kind: 'endpoint'; baseUrl: string; model: string; apiKey?: string };

export interface ScoringOptions {
  store: Store;
  log: Logger;
  recipe: Recipe;
  recipeOptions?: Partial<RecipeDefaults>;
  backend?: Backend;
  judge: JudgeConfig;
  /** Judge calls in flight at once, across turns. */
  concurrency?: number;
  timeoutMs?: number;
  pollMs?: number;
  onScored?: (turn: TurnRecord, score: ScoreRecord) => void;
  /** Times the judge's calls. */
  metrics?: Metrics;
  /**
   * What to ask the judge for; default: what the recipe needs. Hint memory asks for hints under
   * every recipe, and hints mode (nothing to train) asks for no score.
   */
  ask?: { score: boolean; hint: boolean };
}

export interface ScoringStatus {
  queueDepth: number;
  scored: number;
  trainable: number;
  judgeFailures: number;
  errors: number;
}

/** A `complete` function bound to an OpenAI-compatible chat endpoint. */
export function endpointComplete(baseUrl: string, model: string, apiKey?: string): Complete {
  const url = baseUrl.replace(/\/+$/, '') + '/chat/completions';
  return async (messages, { temperature, maxTokens, signal }) => {
    const res = await fetch(url, {
      method: 'POST',
      signal,
      headers: { 'content-type': 'application/json', ...(apiKey && { authorization: `Bearer ${apiKey}` }) },
      body: JSON.stringify({ model, messages, temperature, max_tokens: maxTokens }),
    });
    if (!res.ok) throw new Error(`judge ${url} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
    const body = (await res.json()) as { choices?: { message?: { content?: string | null } }[] };
    return body.choices?.[0]?.message?.content ?? '';
  };
}

/** A `complete` function that asks the daemon's own policy. */
export function policyComplete(backend: Backend): Complete {
  return async (messages, { temperature, maxTokens, signal }) => {
    const result = await backend.generate({ messages, sampling: { temperature, topP: 1, maxTokens, stop: [], topLogprobs: 0 }, signal });
    return result.text;
  };
}

export class ScoringLoop {
  private readonly complete?: Complete;
  private readonly limiter;
  private readonly loop: Loop<number>;
  private counts = { scored: 0, trainable: 0, judgeFailures: 0, errors: 0 };

  constructor(private readonly opts: ScoringOptions) {
    const { judge, backend } = opts;
    if (judge.kind === 'endpoint') this.complete = endpointComplete(judge.baseUrl, judge.model, judge.apiKey);
    else if (judge.kind === 'policy' && backend) this.complete = policyComplete(backend);
    if (this.complete && opts.metrics) this.complete = opts.metrics.timeJudge(this.complete);
    this.limiter = createLimiter(opts.concurrency ?? 4);
    this.loop = new Loop(() => this.scoreOnce(), opts.pollMs ?? 1_000);
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  status(): ScoringStatus {
    return { queueDepth: this.opts.store.unscoredKeys().length, ...this.counts };
  }

  async nudge(): Promise<number> {
    return (await this.loop.run()) ?? 0;
  }

  /** Scores every queued turn (judge calls bounded by the shared limiter). Returns how many. */
  async scoreOnce(): Promise<number> {
    const keys = this.opts.store.unscoredKeys();
    const done = await Promise.all(
      keys.map((key) =>
        this.scoreTurn(key).catch((err: unknown) => {
          this.counts.errors++;
          this.opts.log.error('scoring a turn failed', { turn: key, error: errorMessage(err) });
          return false;
        }),
      ),
    );
    return done.filter(Boolean).length;
  }

  private async scoreTurn(key: TurnKey): Promise<boolean> {
    const { store, recipe, backend } = this.opts;
    const turn = store.turn(key);
    const sample = turn && store.sample(turn.sampleId);
    if (!turn || !sample) {
      await store.dropUnscored(key);
      return false;
    }
    const view: Turn = {
      action: turn.action,
      context: { messages: sample.requestMessages },
      nextState: turn.nextState,
      responseTokens: sample.responseTokens.length,
    };
    const scoring = {
      complete: this.complete,
      m: this.opts.recipeOptions?.m ?? recipe.defaults.m,
      temperature: this.opts.recipeOptions?.temperature ?? recipe.defaults.temperature,
      limiter: this.limiter,
      timeoutMs: this.opts.timeoutMs,
    };
    const ask = this.opts.ask ?? { score: recipe.needsScore, hint: recipe.needsHint };
    const judged = ask.score ? await judgeTurn(view, scoring) : undefined;
    const hinted = ask.hint ? await extractHint(view, scoring) : undefined;

    // Exact tokens both sides: a server that returned no prompt ids leaves nothing to condition on.
    const exactTokens = sample.promptTokens.length > 0 && sample.responseTokens.length > 0 && sample.logprobs.length === sample.responseTokens.length;
    // The recipe's teacher, if it has one: the frozen reference policy scores the same response
    // tokens under the context the recipe makes of the hint.
    let teacherLogprobs: number[] | undefined;
    if (recipe.teacher && hinted?.hint && exactTokens && canTrain(backend)) {
      const prompt = await backend.encodeChat(recipe.teacher(sample.requestMessages, hinted.hint), sample.tools);
      teacherLogprobs = await backend.score(prompt, sample.responseTokens, { reference: true });
    }
    const advantages = exactTokens
      ? recipe.advantages(
          {
            score: judged?.score,
            ...(teacherLogprobs && { teacherLogprobs, studentLogprobs: sample.logprobs }),
            responseLength: sample.responseTokens.length,
          },
          this.opts.recipeOptions,
        )
      : null;

    const record: ScoreRecord = {
      recipe: recipe.name,
      score: judged?.score ?? null,
      votes: judged?.votes ?? [],
      source: judged?.source ?? hinted?.source ?? 'none',
      hint: hinted?.hint ?? null,
      hintVotes: hinted?.votes.map((v) => v.vote) ?? [],
      advantages: advantages?.advantages ?? null,
      mask: advantages?.mask ?? null,
      failures: (judged?.failures ?? 0) + (hinted?.failures ?? 0),
      scoredAt: Date.now(),
    };
    const updated: TurnRecord = { ...turn, reward: record.score, hint: record.hint };
    // Not written when late feedback changed the turn since it was read: the next pass scores the new one.
    if (!(await store.recordScore(updated, record, Boolean(advantages)))) return false;
    this.counts.scored++;
    if (advantages) this.counts.trainable++;
    this.counts.judgeFailures += record.failures;
    this.opts.onScored?.(updated, record);
    return true;
  }
}
