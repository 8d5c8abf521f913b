// A simulated user with a hidden preference, driving the whole learning loop of a real daemon:
// it asks over /v1/chat/completions (with the plugin's per-turn headers), reports what the
// plugin would (session.optin, model.call before each request, the user's next message after
// it, `/clawrl hint` as a feedback event) over the plugin's WebSocket protocol, and reacts to
// each reply in words the rules judge reads as approval or correction. The daemon turns that
// into turns, rewards and training steps on its own; this module only measures, after each new
// weight version starts serving, how often that version pleases the user on held-out prompts.
// Used by bench/learn.ts (the full benchmark) and test/learn.test.ts (a short version of it).

import { rmSync } from 'node:fs';
import { startDaemon, type Daemon } from '../daemon/server.ts';
import { EmbeddedBackend } from '../daemon/backends/embedded/index.ts';
import { TorchBackend } from '../daemon/backends/torch/index.ts';
import type { ModelConfig } from '../daemon/backends/embedded/model.ts';
import { createLogger } from '../daemon/log.ts';
import { recipes, type RecipeName } from '../recipes/index.ts';
import type { Event } from '../protocol/index.ts';
import { TestClient, optIn, tempDir } from '../test/helpers.ts';

/**
 * The hidden preference: the reply starts with a letter (A–Z, a–z). Visible from the reply alone,
 * and the untrained byte-level model hits it 18–23 % of the time (measured over 128 samples for
 * base seeds 1–3: its first byte is close to uniform over 263 tokens, 52 of which are letters),
 * so there is room to learn and enough hits for Binary RL to reinforce from the start.
 */
export function pleases(reply: string): boolean {
  return /^[A-Za-z]/.test(reply);
}

// The user's next message. Each phrase is one that recipes/judge.ts's userReaction classifies
// (test/learn.test.ts checks it), so the rules judge scores +1 / −1 with no judge model.
export const APPROVALS = ['thanks!', 'great, that is it', 'perfect', 'nice, thank you'];
export const CORRECTIONS = ['no, that is not it', 'try again', 'wrong, start over', "that's not what I asked"];

/** What the user writes with `/clawrl hint` after a miss, for OPD and Combined. */
export const HINT = 'Start your reply with a letter of the alphabet (A-Z or a-z), never a digit, symbol or space.';

// Short prompts keep a training step cheap (a step costs about linearly in tokens).
export const TRAIN_PROMPTS = ['hi', 'hello there', 'what now?', 'tell me a thing', 'ok go', 'name a color', 'say something', 'pick one'];
/** Held out: never trained on, used only to measure each version. */
export const EVAL_PROMPTS = ['hey', 'good morning', 'any news?', 'give me a word', 'go on', 'your turn', 'one more', 'what else?'];

/** Sampling seeds of the evaluation: the same for every version, so versions differ only in weights. */
const EVAL_SEED_BASE = 1_000_000;

export interface LearnOptions {
  /** Seed of the random base weights, and of every sampled reply (so a run repeats). */
  seed: number;
  recipe: RecipeName;
  /** Weight versions to train after the base. */
  steps: number;
  /** Turns per training step. */
  batchSize: number;
  lr: number;
  /** max_tokens of every reply: short replies keep steps fast (the preference reads one byte). */
  maxTokens: number;
  /** Held-out replies sampled (temperature 1) to measure each version. */
  evalSamples: number;
  /** Model shape (the default is the daemon's default model). */
  model?: Partial<Omit<ModelConfig, 'vocab' | 'seed'>>;
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
  /** Share of the held-out replies that pleased the user. */
  hitRate: number;
  /** Share of this step's training turns that pleased the user (null for base). */
  trainHitRate: number | null;
  /** Training turns sent for this step (more than the batch when some were not trainable). */
  turns: number;
  /** The step's loss as the trainer reported it (null for base). */
  loss: number | null;
}

interface ChatReply {
  text: string;
  version: string;
}

/** How the user reacts to a reply: approve (true) or correct (false). An honest user approves exactly the hits. */
export type Reaction = (hit: boolean, turn: number, reply: string) => boolean;
export const honest: Reaction = (hit) => hit;

export class SimulatedUser {
  private seq = 0;
  private clock = 0;
  /** Training turns sent so far, across steps. */
  turnsSent = 0;

  constructor(
    private readonly daemon: Daemon,
    private readonly client: TestClient,
    readonly sessionKey: string,
    private readonly opts: LearnOptions,
  ) {}

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

  private async chat(prompt: string, seed: number, turnHeaders: Record<string, string>): Promise<ChatReply> {
    const res = await fetch(`${this.daemon.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.daemon.token}`, 'content-type': 'application/json', ...turnHeaders },
      body: JSON.stringify({
        model: 'clawrl-embedded',
        messages: [{ role: 'user', content: prompt }],
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
    const hit = pleases(reply.text);
    const approves = react(hit, i, reply.text);
    const words = approves ? APPROVALS : CORRECTIONS;
    const reaction = (seq: number, at: number): Event => ({ kind: 'user.message', seq, at, sessionKey, content: words[i % words.length]! });
    // The hint follows the correction, as `/clawrl hint` typed after it would: the daemon attaches
    // it to the turn that the correction already closed and scores that turn again.
    if (approves || !withHint) await this.send(reaction);
    else await this.send(reaction, (seq, at) => ({ kind: 'feedback', seq, at, sessionKey, hint: HINT }));
    return { hit, version: reply.version, text: reply.text };
  }

  /** Hit rate of the serving version on the held-out prompts; throws if another version answered. */
  async evaluate(version: string): Promise<number> {
    let hits = 0;
    for (let i = 0; i < this.opts.evalSamples; i++) {
      // No session header: evaluation replies are not recorded, so they never train.
      const reply = await this.chat(EVAL_PROMPTS[i % EVAL_PROMPTS.length]!, EVAL_SEED_BASE + i, {});
      if (reply.version !== version) throw new Error(`evaluating ${version}, but ${reply.version} answered`);
      if (pleases(reply.text)) hits++;
    }
    return hits / this.opts.evalSamples;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends a batch of training turns, then waits for the trainer to serve a new version. Turns that
 * give no trainable example (OPD without a hint: every hit) leave the batch short: once every turn
 * sent is recorded, assembled and scored and the batch is still short, one more turn is sent.
 */
async function trainOneStep(daemon: Daemon, user: SimulatedUser, opts: LearnOptions, from: string, timeoutMs: number) {
  const trainer = daemon.trainer!;
  const { store } = daemon;
  const withHint = recipes[opts.recipe].needsHint;
  let turns = 0;
  let hits = 0;
  const turn = async () => {
    turns++;
    if ((await user.turn(withHint)).hit) hits++;
  };
  const settled = () =>
    store.sessionSamples.getKeysCount({ start: [user.sessionKey], end: [user.sessionKey, Infinity] }) === user.turnsSent &&
    store.openSamples.getKeysCount() === 0 &&
    store.unscored.getKeysCount() === 0;
  while (turns < opts.batchSize) await turn();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { serving, step, waiting } = trainer.status();
    if (serving !== from) break;
    if (Date.now() > deadline) throw new Error(`no new version within ${timeoutMs} ms after ${turns} turns: ${JSON.stringify(daemon.status())}`);
    if (step !== null || !settled()) {
      await sleep(20);
    } else if (waiting >= opts.batchSize) {
      // Everything sent is scored and a full batch waits: train now rather than at the trainer's
      // next poll (up to 1 s later); maybeTrain is what that poll calls.
      await trainer.maybeTrain();
    } else {
      await turn();
    }
  }
  return { version: trainer.status().serving, turns, trainHitRate: hits / turns, loss: trainer.status().lastMetrics?.loss ?? null };
}

/** Runs one learning curve on a fresh daemon and returns the hit rate of every version, base first. */
export async function learn(opts: LearnOptions): Promise<VersionResult[]> {
  const dataDir = tempDir('clawrl-learn-');
  const backend =
    opts.backend === 'torch'
      ? await TorchBackend.create({
          python: process.env.CLAWRL_PYTHON ?? '/usr/bin/python3',
          model: 'tiny-test',
          workerArgs: ['--device', 'cpu', '--seed', String(opts.seed)],
        })
      : await EmbeddedBackend.create({ model: { ...opts.model, seed: opts.seed } });
  const daemon = await startDaemon({
    dataDir,
    port: 0,
    log: createLogger('warn'),
    backend,
    recipe: opts.recipe,
    recipeOptions: { batchSize: opts.batchSize, lr: opts.lr },
    judge: { kind: 'rules' },
    // Only full batches train, and no reply goes stale before its reaction arrives.
    maxWaitMs: 3_600_000,
    idleMs: 3_600_000,
  });
  const client = await TestClient.connect(daemon.wsUrl, daemon.token);
  try {
    await client.hello(`learn-${opts.recipe}-${opts.seed}`);
    const user = new SimulatedUser(daemon, client, `agent:main:learn-${opts.seed}`, opts);
    await user.optIn();
    const results: VersionResult[] = [];
    const record = (r: VersionResult) => {
      results.push(r);
      opts.onVersion?.(r);
    };
    record({ version: 'base', step: 0, hitRate: await user.evaluate('base'), trainHitRate: null, turns: 0, loss: null });
    for (let step = 1; step <= opts.steps; step++) {
      const trained = await trainOneStep(daemon, user, opts, results.at(-1)!.version, 120_000);
      // The plugin hears about the version too (weights.updated), as a real one would.
      await client.next((m) => m.type === 'weights.updated' && m.version === trained.version);
      record({ ...trained, step, hitRate: await user.evaluate(trained.version) });
    }
    return results;
  } finally {
    client.close();
    await daemon.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
