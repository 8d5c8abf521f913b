// The embedded backend: a small transformer in TypeScript, so the whole learning loop runs on any
// CPU with nothing to download. Its base is random from a seed, or a small pretrained one that
// reads in-context hints (bases.ts). Its prose is poor; it is there to make the pipeline real and
// to learn simple preferences.
//
// The main thread only encodes prompts and parses replies; the model runs in two workers (see
// worker.ts): one serves, one trains.

import { randomUUID } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type {
  ChatMessage,
  GenerateChunk,
  GenerateRequest,
  GenerateResult,
  ToolSpec,
  TrainExample,
  TrainMetrics,
  TrainOptions,
  TrainingBackend,
} from '../types.ts';
import { loadBase } from './bases.ts';
import { DEFAULT_MODEL, type ModelConfig } from './model.ts';
import { VOCAB_SIZE, encodeChat, parseToolCalls } from './tokenizer.ts';
import type { GenerateReply, WorkerInit, WorkerRequest } from './worker.ts';
import { PendingCalls, type CallReply } from '../calls.ts';
import { workerSource } from '../../worker-source.ts';

export interface EmbeddedBackendOptions {
  /** Model shape and seed; the vocabulary is the tokenizer's. A pretrained base fixes the shape. */
  model?: Partial<Omit<ModelConfig, 'vocab' | 'base'>>;
  /** 'random' (default: weights from the seed), 'hints' (the shipped pretrained base) or a base file (bases.ts). */
  base?: string;
  lora?: { rank?: number; alpha?: number };
  /** Model id served under /v1/models. */
  name?: string;
}

/**
 * The prompt may use at most this many tokens, so a reply always has a quarter of the context;
 * longer prompts are cut (see encodeChat).
 */
export function promptBudget(config: ModelConfig): number {
  return config.context - Math.floor(config.context / 4);
}

// The workers' entry: worker.js beside this file in the built package, worker.ts in a checkout.
const WORKER_BOOTSTRAP = workerSource(new URL(import.meta.url.endsWith('.js') ? './worker.js' : './worker.ts', import.meta.url).href);

/** Request/reply over one worker, with streamed chunks routed to the request's callback. */
class WorkerClient {
  private readonly worker: Worker;
  private readonly pending = new PendingCalls();
  private failure: Error | null = null;

  constructor(init: WorkerInit, role: string) {
    this.worker = new Worker(WORKER_BOOTSTRAP, { eval: true, workerData: init, name: `clawrl-embedded-${role}` });
    this.worker.on('message', (msg: CallReply) => this.pending.route(msg));
    const fail = (err: Error) => {
      this.failure = err;
      this.pending.failAll(err);
    };
    this.worker.on('error', (err) => fail(new Error(`embedded ${role} worker failed: ${err.message}`)));
    this.worker.on('exit', (code) => fail(new Error(`embedded ${role} worker exited (code ${code})`)));
  }

  call<T>(req: WorkerRequest, onChunk?: (c: GenerateChunk) => void): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => {
      const id = this.pending.add({ resolve: resolve as (v: unknown) => void, reject, onChunk });
      this.worker.postMessage({ id, req });
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

export class EmbeddedBackend implements TrainingBackend {
  readonly name: string;
  readonly config: ModelConfig;
  private version = 'base';

  private constructor(
    opts: EmbeddedBackendOptions,
    private readonly serving: WorkerClient,
    private readonly training: WorkerClient,
    config: ModelConfig,
  ) {
    this.name = opts.name ?? 'clawrl-embedded';
    this.config = config;
  }

  static async create(opts: EmbeddedBackendOptions = {}): Promise<EmbeddedBackend> {
    const loaded = await loadBase(opts.base ?? 'random');
    let config: ModelConfig = { ...DEFAULT_MODEL, ...opts.model, vocab: VOCAB_SIZE };
    if (loaded) {
      const { seed, ...shape } = opts.model ?? {};
      const clash = (Object.keys(shape) as (keyof typeof shape)[]).filter((k) => shape[k] !== loaded.config[k]);
      if (clash.length > 0) throw new Error(`base ${loaded.config.base} fixes the model's shape: ${clash.map((k) => `${k} is ${loaded.config[k]}, not ${shape[k]}`).join('; ')}`);
      config = { ...loaded.config, seed: seed ?? DEFAULT_MODEL.seed };
    }
    const init: WorkerInit = {
      config,
      ...(loaded && { weights: loaded.tensors }),
      loraRank: opts.lora?.rank ?? 8,
      loraAlpha: opts.lora?.alpha ?? 16,
      modelName: opts.name ?? 'clawrl-embedded',
    };
    const backend = new EmbeddedBackend(opts, new WorkerClient(init, 'serving'), new WorkerClient(init, 'training'), config);
    // A round trip to each worker proves it loaded (a bad config or loader fails here, not later).
    await Promise.all([backend.serving.call({ op: 'score', prompt: [0], response: [], reference: true }), backend.training.call({ op: 'score', prompt: [0], response: [], reference: true })]).catch(async (err) => {
      await backend.close();
      throw err;
    });
    return backend;
  }

  models(): string[] {
    return [this.name];
  }

  currentVersion(): string {
    return this.version;
  }

  async encodeChat(messages: ChatMessage[], tools?: ToolSpec[]): Promise<number[]> {
    return encodeChat(messages, tools, promptBudget(this.config)).tokens;
  }

  async generate(req: GenerateRequest, onChunk?: (chunk: GenerateChunk) => void): Promise<GenerateResult> {
    req.signal?.throwIfAborted();
    const prompt = encodeChat(req.messages, req.tools, promptBudget(this.config));
    // The worker polls this flag between tokens: it cannot read messages while it samples.
    const abort = new SharedArrayBuffer(4);
    const onAbort = () => Atomics.store(new Int32Array(abort), 0, 1);
    req.signal?.addEventListener('abort', onAbort);
    let reply: GenerateReply;
    try {
      reply = await this.serving.call<GenerateReply>({ op: 'generate', prompt: prompt.tokens, sampling: req.sampling, abort, canary: req.canary === true }, onChunk);
    } catch (err) {
      req.signal?.throwIfAborted();
      throw err;
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
    }
    const parsed = parseToolCalls(reply.text, () => `call_${randomUUID().replace(/-/g, '').slice(0, 24)}`);
    return {
      promptTokens: prompt.tokens,
      responseTokens: reply.responseTokens,
      logprobs: reply.logprobs,
      tokens: reply.tokens,
      text: parsed.content,
      toolCalls: parsed.toolCalls,
      finishReason: parsed.toolCalls.length > 0 ? 'tool_calls' : reply.finishReason,
      weightVersion: reply.weightVersion,
      promptTruncated: prompt.truncated,
    };
  }

  score(promptTokens: number[], responseTokens: number[], opts?: { reference?: boolean }): Promise<number[]> {
    const req: WorkerRequest = { op: 'score', prompt: promptTokens, response: responseTokens, reference: !!opts?.reference };
    // Reference scoring (OPD teacher, KL) is pipeline work: keep it off the serving worker.
    return (opts?.reference ? this.training : this.serving).call<number[]>(req);
  }

  trainStep(batch: TrainExample[], opts: TrainOptions): Promise<TrainMetrics> {
    return this.training.call<TrainMetrics>({ op: 'trainStep', batch, opts });
  }

  async saveAdapter(dir: string): Promise<void> {
    await this.training.call({ op: 'saveAdapter', dir });
  }

  async loadAdapter(dir: string | null, version: string): Promise<void> {
    await this.serving.call({ op: 'loadAdapter', dir, version });
    this.version = version;
  }

  /** The serving worker keeps both adapters; each request samples with the one it asks for. */
  async loadCanary(dir: string | null, version: string | null): Promise<void> {
    await this.serving.call({ op: 'loadCanary', dir, version });
  }

  async loadTrainingAdapter(dir: string | null): Promise<void> {
    await this.training.call({ op: 'loadTrainingAdapter', dir });
  }

  async close(): Promise<void> {
    await Promise.all([this.serving.close(), this.training.close()]);
  }
}
