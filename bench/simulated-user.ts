// Simulated users with hidden preferences, driving the whole learning loop of a real daemon, after
// OpenClaw-RL's personas: each has a rule a reply must keep (checkable on the reply alone, so a
// byte-level model can keep it) and never states it up front. The user asks over
// /v1/chat/completions (with the plugin's per-turn headers), reports what the plugin would
// (session.optin, model.call before each request, the user's next message after it, `/clawrl
// hint` as a feedback event) over the plugin's WebSocket protocol, and reacts to each reply in
// words the rules judge reads as approval or correction, adding a hint after a correction when
// the method learns from hints. With hint memory on, it also does what the plugin's
// before_prompt_build hook does: fetch the daemon's hints and prepend the relevant ones.
//
// A run is a series of sessions of a few turns each; the trainer trains whenever a full batch
// waits, between sessions, and each new weight version is measured on held-out prompts as soon
// as it serves. The paper's metric comes from the sessions: how many until the first reply of a
// session keeps the rule in 3 consecutive sessions.
// Used by bench/learn.ts (the full benchmark), bench/guard.ts and test/learn.test.ts.

import { rmSync } from 'node:fs';
import { startDaemon, type Daemon } from '../daemon/server.ts';
import { EmbeddedBackend } from '../daemon/backends/embedded/index.ts';
import { TorchBackend } from '../daemon/backends/torch/index.ts';
import { INSTRUCTIONS, follows, type Rule } from '../daemon/backends/embedded/corpus.ts';
import type { ModelConfig } from '../daemon/backends/embedded/model.ts';
import { createLogger } from '../daemon/log.ts';
import { HintCache } from '../plugin/hints.ts';
import { formatHintsBlock } from '../protocol/index.ts';
import { recipes, type RecipeName } from '../recipes/index.ts';
import type { Event } from '../protocol/index.ts';
import { TestClient, optIn, tempDir } from '../test/helpers.ts';

export interface Persona {
  /** What the user wants, checked on the reply alone. */
  rule: Rule;
  /** What the user writes with `/clawrl hint` after a correction. */
  hint: string;
}

/**
 * The personas. Their hints are phrasings of the pretraining corpus's instructions (corpus.ts):
 * the hint-reading base was taught to follow exactly these kinds of instruction.
 */
export const PERSONAS = {
  /** Dislikes replies that open with digits, symbols or markdown. */
  'letter-first': { rule: 'letter', hint: INSTRUCTIONS.letter[0]! },
  /** Dislikes markdown marks anywhere. */
  'no-markdown': { rule: 'plain', hint: INSTRUCTIONS.plain[0]! },
  /** Wants longer answers. */
  'wants-longer': { rule: 'long', hint: INSTRUCTIONS.long[0]! },
  /** Wants to be greeted first. */
  'greeting-first': { rule: 'greeting', hint: INSTRUCTIONS.greeting[0]! },
} as const satisfies Record<string, Persona>;
export type PersonaName = keyof typeof PERSONAS;
export const isPersonaName = (name: string): name is PersonaName => Object.hasOwn(PERSONAS, name);

// The user's next message. Each phrase is one that recipes/judge.ts's userReaction classifies
// (test/learn.test.ts checks it), so the rules judge scores +1 / −1 with no judge model.
export const APPROVALS = ['thanks!', 'great, that is it', 'perfect', 'nice, thank you'];
export const CORRECTIONS = ['no, that is not it', 'try again', 'wrong, start over', "that's not what I asked"];

// Requests like a person's recurring tasks. Hint memory finds a hint by the words its source
// request shares with the new one (two content words), as the plugin does.
export const TRAIN_PROMPTS = [
  'write a message about cats',
  'answer my question about rivers',
  'tell me something about music',
  'give me a note about trains',
  'write a message about coffee',
  'say a few words about clouds',
  'reply about the weather',
  'tell me something about my plan',
];
/** Held out: never trained on, used only to measure each version. */
export const EVAL_PROMPTS = [
  'write a message about forests',
  'answer my question about stones',
  'tell me something about markets',
  'give me a note about windows',
  'say a few words about paper',
  'reply about the code',
  'write a message about colors',
  'tell me something about cities',
];

/** Sampling seeds of the evaluation: the same for every version, so versions differ only in weights. */
const EVAL_SEED_BASE = 1_000_000;
/** The paper's metric: consecutive sessions whose first reply keeps the rule. */
export const STREAK = 3;

/** What learns: a recipe, with training on or off, with or without hint memory. */
export const METHODS = {
  'binary-rl': { recipe: 'binary-rl', train: true, memory: false },
  opd: { recipe: 'opd', train: true, memory: false },
  combined: { recipe: 'combined', train: true, memory: false },
  /** Training-free, like the paper's memory baselines: the user's hints, retrieved and injected. */
  memory: { recipe: 'combined', train: false, memory: true },
  'combined+memory': { recipe: 'combined', train: true, memory: true },
} as const satisfies Record<string, { recipe: RecipeName; train: boolean; memory: boolean }>;
export type MethodName = keyof typeof METHODS;
export const isMethodName = (name: string): name is MethodName => Object.hasOwn(METHODS, name);

export interface LearnOptions {
  /** Seed of the LoRA init and of every sampled reply (and of a random base), so a run repeats. */
  seed: number;
  recipe: RecipeName;
  /** Training steps at most; the run also ends after `sessions` sessions. */
  steps: number;
  /** Turns per training step. */
  batchSize: number;
  lr: number;
  /** max_tokens of every reply. */
  maxTokens: number;
  /** Held-out replies sampled (temperature 1) to measure each version. */
  evalSamples: number;
  /** Default letter-first. */
  persona?: PersonaName;
  /** Train at all (default true); false measures hint memory alone. */
  train?: boolean;
  /** Inject the daemon's hints into each request, as the plugin does (default false). */
  memory?: boolean;
  /** Sessions at most (default: as many as `steps` needs); the paper caps at 72. */
  sessions?: number;
  /** User turns per session (default 4). */
  turnsPerSession?: number;
  /** Embedded base: 'random' (default), 'hints' or a file (see daemon/backends/embedded/bases.ts). */
  base?: string;
  /** Model shape of a random base (the default is the daemon's default model). */
  model?: Partial<Omit<ModelConfig, 'vocab' | 'seed' | 'base'>>;
  /** The policy: the embedded model (default), or the torch worker's tiny test model on the CPU
   *  (Python with torch: CLAWRL_PYTHON, default /usr/bin/python3), seeded by `seed`. */
  backend?: 'embedded' | 'torch';
  /** Called as each version is measured, for progress output. */
  onVersion?: (result: VersionResult) => void;
}

export interface VersionResult {
  /** 'base', then v000001, … as the daemon names them. */
  version: string;
  /** Training steps behind this version (0 for base). */
  step: number;
  /** Sessions the user had finished when this version started serving. */
  session: number;
  /** Share of the held-out replies that pleased the user. */
  hitRate: number;
}

export interface LearnResult {
  versions: VersionResult[];
  /** Per session: did its first reply keep the rule? */
  firstReplies: boolean[];
  /** Sessions until the first replies kept the rule STREAK times in a row (the session that completed the streak), or null if they never did. */
  sessionsToRule: number | null;
}

interface ChatReply {
  text: string;
  version: string;
}

/** How the user reacts to a reply: approve (true) or correct (false). An honest user approves exactly the hits. */
export type Reaction = (hit: boolean, turn: number, reply: string) => boolean;
export const honest: Reaction = (hit) => hit;

/** The session at which `passes` first holds STREAK times in a row (1-based), or null. */
export function sessionsToRule(passes: readonly boolean[]): number | null {
  let run = 0;
  for (let i = 0; i < passes.length; i++) {
    run = passes[i] ? run + 1 : 0;
    if (run === STREAK) return i + 1;
  }
  return null;
}

export class SimulatedUser {
  private seq = 0;
  private clock = 0;
  /** Training turns sent so far, across sessions. */
  turnsSent = 0;
  /** Sessions begun; each has its own session key, as a new chat would. */
  private sessions = 0;
  sessionKey: string;
  private readonly persona: Persona;
  private readonly hints: HintCache | null;

  constructor(
    private readonly daemon: Daemon,
    private readonly client: TestClient,
    private readonly keyPrefix: string,
    private readonly opts: LearnOptions,
  ) {
    this.sessionKey = keyPrefix;
    this.persona = PERSONAS[opts.persona ?? 'letter-first'];
    this.hints = opts.memory ? new HintCache({ url: `${daemon.url}/hints`, token: daemon.token, logger: { warn: (m) => console.error(m) } }) : null;
  }

  pleases(reply: string): boolean {
    return follows(this.persona.rule, reply);
  }

  /** The plugin's clock: strictly increasing, since turn assembly orders events by `at`. */
  private at(): number {
    this.clock = Math.max(Date.now(), this.clock + 1);
    return this.clock;
  }

  private send(...events: ((seq: number, at: number) => Event)[]): Promise<number> {
    return this.client.sendEvents(events.map((make) => make(++this.seq, this.at())));
  }

  async optIn(): Promise<void> {
    await this.send((seq) => optIn(seq, this.sessionKey));
  }

  /** A new session (a new chat): its own key, opted in. */
  async newSession(): Promise<void> {
    this.sessionKey = `${this.keyPrefix}-s${++this.sessions}`;
    await this.optIn();
  }

  /** The request as the model sees it: with hint memory, the relevant hints in front, as the plugin's hook puts them. */
  private async request(prompt: string): Promise<string> {
    if (!this.hints) return prompt;
    await this.hints.refresh();
    const chosen = this.hints.select(prompt, 'main', this.sessionKey, { topK: 3, maxTokens: 300 });
    return chosen.length > 0 ? `${formatHintsBlock(chosen)}\n\n${prompt}` : prompt;
  }

  private async chat(prompt: string, seed: number, turnHeaders: Record<string, string>): Promise<ChatReply> {
    const res = await fetch(`${this.daemon.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.daemon.token}`, 'content-type': 'application/json', ...turnHeaders },
      body: JSON.stringify({
        model: 'clawrl-embedded',
        messages: [{ role: 'user', content: await this.request(prompt) }],
        max_tokens: this.opts.maxTokens,
        temperature: 1,
        seed,
      }),
    });
    if (!res.ok) throw new Error(`chat completion answered ${res.status}: ${await res.text()}`);
    const body = (await res.json()) as { system_fingerprint: string; choices: { message: { content: string | null } }[] };
    return { text: body.choices[0]?.message.content ?? '', version: body.system_fingerprint };
  }

  /** One training turn: model.call, the request, then the user's reaction (and hint). Returns whether it pleased, and who served it. */
  async turn(withHint: boolean, react: Reaction = honest): Promise<{ hit: boolean; version: string; text: string }> {
    const i = this.turnsSent++;
    const callId = `${this.sessionKey}:model:${i}`;
    const { sessionKey } = this;
    await this.send((seq, at) => ({ kind: 'model.call', seq, at, sessionKey, callId, provider: 'clawrl', model: 'clawrl-embedded', trigger: 'user', side: false }));
    const reply = await this.chat(TRAIN_PROMPTS[i % TRAIN_PROMPTS.length]!, this.opts.seed * 1_000_000 + i, {
      'x-clawrl-session-key': sessionKey,
      'x-clawrl-call-id': callId,
      'x-clawrl-opt-in': '1',
    });
    const hit = this.pleases(reply.text);
    const approves = react(hit, i, reply.text);
    const words = approves ? APPROVALS : CORRECTIONS;
    const reaction = (seq: number, at: number): Event => ({ kind: 'user.message', seq, at, sessionKey, content: words[i % words.length]! });
    // The hint follows the correction, as `/clawrl hint` typed after it would: the daemon attaches
    // it to the turn that the correction already closed and scores that turn again.
    if (approves || !withHint) await this.send(reaction);
    else await this.send(reaction, (seq, at) => ({ kind: 'feedback', seq, at, sessionKey, hint: this.persona.hint }));
    return { hit, version: reply.version, text: reply.text };
  }

  /** Hit rate of the serving version on the held-out prompts; throws if another version answered. */
  async evaluate(version: string): Promise<number> {
    let hits = 0;
    for (let i = 0; i < this.opts.evalSamples; i++) {
      // No session header: evaluation replies are not recorded, so they never train.
      const reply = await this.chat(EVAL_PROMPTS[i % EVAL_PROMPTS.length]!, EVAL_SEED_BASE + i, {});
      if (reply.version !== version) throw new Error(`evaluating ${version}, but ${reply.version} answered`);
      if (this.pleases(reply.text)) hits++;
    }
    return hits / this.opts.evalSamples;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `done()` holds; throws after `timeoutMs` with `what` and the daemon's status. */
async function waitFor(daemon: Daemon, done: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms: ${JSON.stringify(daemon.status())}`);
    await sleep(20);
  }
}

/**
 * After a session: waits until every turn sent is recorded, assembled and scored, then, while a
 * full batch waits, trains (now, rather than at the trainer's next poll, up to 1 s later) and
 * waits for the new version to serve. Returns the versions that started serving.
 */
async function trainWaiting(daemon: Daemon, client: TestClient, user: SimulatedUser, opts: LearnOptions, last: string, timeoutMs: number): Promise<string[]> {
  const trainer = daemon.trainer!;
  const { store } = daemon;
  await waitFor(
    daemon,
    () =>
      store.sessionSamples.getKeysCount({ start: [user.sessionKey], end: [user.sessionKey, Infinity] }) === (opts.turnsPerSession ?? 4) &&
      store.openSamples.getKeysCount() === 0 &&
      store.unscored.getKeysCount() === 0,
    'the session was not scored',
    timeoutMs,
  );
  const served: string[] = [];
  for (;;) {
    // The trainer also starts a step by itself once a batch fills (mid-session, at its poll):
    // such a version counts as well, once its step is over.
    await waitFor(daemon, () => trainer.status().step === null, 'the step in progress to end', timeoutMs);
    const version = trainer.status().serving;
    if (version !== last) {
      // The plugin hears about the version too (weights.updated), as a real one would.
      await client.next((m) => m.type === 'weights.updated' && m.version === version, timeoutMs);
      served.push(version);
      last = version;
      continue;
    }
    if (opts.train === false || trainer.status().waiting < opts.batchSize) return served;
    await trainer.maybeTrain();
    await waitFor(daemon, () => trainer.status().serving !== last, 'no new version', timeoutMs);
  }
}

/** Runs one learning curve on a fresh daemon: the hit rate of every version, base first, and the first reply of every session. */
export async function learn(opts: LearnOptions): Promise<LearnResult> {
  const dataDir = tempDir('clawrl-learn-');
  const backend =
    opts.backend === 'torch'
      ? await TorchBackend.create({
          python: process.env.CLAWRL_PYTHON ?? '/usr/bin/python3',
          model: 'tiny-test',
          workerArgs: ['--device', 'cpu', '--seed', String(opts.seed)],
        })
      : await EmbeddedBackend.create({ model: { ...opts.model, seed: opts.seed }, base: opts.base });
  const daemon = await startDaemon({
    dataDir,
    port: 0,
    log: createLogger('warn'),
    backend,
    recipe: opts.recipe,
    // Without training, a batch that never fills: hints still score and reach memory.
    recipeOptions: { batchSize: opts.train === false ? Number.MAX_SAFE_INTEGER : opts.batchSize, lr: opts.lr },
    judge: { kind: 'rules' },
    // Only full batches train (none, when training is off), and no reply goes stale before its reaction arrives.
    maxWaitMs: 3_600_000,
    idleMs: 3_600_000,
  });
  const client = await TestClient.connect(daemon.wsUrl, daemon.token);
  const turnsPerSession = opts.turnsPerSession ?? 4;
  const maxSessions = opts.sessions ?? Math.ceil((opts.steps * opts.batchSize) / turnsPerSession);
  // Hints go with corrections whenever something reads them: the recipe, or hint memory.
  const withHint = recipes[opts.recipe].needsHint || opts.memory === true;
  try {
    await client.hello(`learn-${opts.recipe}-${opts.seed}`);
    const user = new SimulatedUser(daemon, client, `agent:main:learn-${opts.seed}`, opts);
    const versions: VersionResult[] = [];
    const record = (r: VersionResult) => {
      versions.push(r);
      opts.onVersion?.(r);
    };
    record({ version: 'base', step: 0, session: 0, hitRate: await user.evaluate('base') });
    const firstReplies: boolean[] = [];
    // Without training there are no versions: the base (with whatever hints memory injects by
    // then) is measured after as many turns as a training step would have taken.
    const sessionsPerStep = Math.max(1, Math.round(opts.batchSize / turnsPerSession));
    for (let s = 1; s <= maxSessions && versions.length - 1 < opts.steps; s++) {
      await user.newSession();
      for (let t = 0; t < turnsPerSession; t++) {
        const { hit } = await user.turn(withHint);
        if (t === 0) firstReplies.push(hit);
      }
      const served = await trainWaiting(daemon, client, user, { ...opts, turnsPerSession }, versions.at(-1)!.version, 120_000);
      if (opts.train === false && s % sessionsPerStep === 0) served.push('base');
      for (const version of served) record({ version, step: versions.length, session: s, hitRate: await user.evaluate(version) });
    }
    return { versions, firstReplies, sessionsToRule: sessionsToRule(firstReplies) };
  } finally {
    client.close();
    await daemon.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
