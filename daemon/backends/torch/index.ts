// The torch backend: a Python worker (worker.py, beside this file) that serves and trains one
// model in one process, LoRA on one GPU or FSDP across several under torchrun. This side spawns
// it, speaks its framed protocol (4-byte big-endian length + msgpack map; see worker.py), and
// keeps it alive: a worker that dies is restarted with backoff and given back the adapters it
// had, and while it is down every call fails fast with TorchWorkerDownError.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import { PendingCalls, type CallReply } from '../calls.ts';
import type { Logger } from '../../log.ts';
import { parseToolCalls } from '../embedded/tokenizer.ts';
import {
  BackendUnavailableError,
  type ChatMessage,
  type FinishReason,
  type GenerateChunk,
  type GenerateRequest,
  type GenerateResult,
  type ToolSpec,
  type TrainExample,
  type TrainMetrics,
  type TrainOptions,
  type TrainingBackend,
} from '../types.ts';
import { errorMessage } from '../../errors.ts';

export const WORKER_PATH = fileURLToPath(new URL('./worker.py', import.meta.url));

/** The worker is not running (crashed, restarting, or closed): the API should answer 503. */
export class TorchWorkerDownError extends BackendUnavailableError {
  constructor(message: string) {
    super(message);
    this.name = 'TorchWorkerDownError';
  }
}

export interface TorchBackendOptions {
  /** Interpreter with torch (and transformers for real models); default env CLAWRL_PYTHON, else python3. */
  python?: string;
  /** tiny-test, module:factory, a local model directory or a Hugging Face id. */
  model: string;
  /** GPUs on this host; above 1 the worker runs under torchrun with FSDP (with workerArgs
   *  ['--device', 'cpu']: that many CPU processes on gloo, each with the whole model; for tests). Default 1. */
  gpus?: number;
  lora?: { rank?: number; alpha?: number };
  /** Model id served under /v1/models; default the model spec. */
  name?: string;
  log?: Logger;
  /** More worker flags, e.g. ['--device', 'cpu', '--micro-batch-tokens', '4096']. */
  workerArgs?: string[];
  /** First restart delay after a crash, doubled per consecutive crash up to 30 s. Default 1000. */
  restartDelayMs?: number;
  /** How long the model may take to load. Default 15 minutes. */
  startTimeoutMs?: number;
}

/** What the worker reports about itself (the `stats` op). */
export interface TorchWorkerStats {
  model: string;
  device: string;
  dtype: string;
  worldSize: number;
  /** Whether the ranks shard the model with FSDP (CUDA, or CPU ranks on torch 2.x); else each holds it all. */
  sharded: boolean;
  context: number;
  vocab: number;
  params: number;
  loraParams: number;
  /** Whether training recomputes activations (--grad-ckpt; "auto" turns it on at the first step that runs out of memory). */
  gradCheckpointing: boolean;
  /** How generation decodes (e.g. "growing cache", "static cache, CUDA graphs"; decode.py), and how often each way ran. */
  decode: string;
  decodeCounts: Record<string, number>;
  servedVersion: string;
  memory: Record<string, number>;
  generate: { tokens: number; seconds: number; tokensPerSecond: number };
  train: { steps: number; tokens: number; seconds: number; tokensPerSecond: number; lastStepMs: number };
}

interface WorkerGenerateResult {
  promptTokens: number[];
  promptTruncated: boolean;
  responseTokens: number[];
  logprobs: number[];
  tokens: GenerateResult['tokens'];
  text: string;
  finishReason: 'stop' | 'length';
  weightVersion: string;
}

type WorkerReply = { ready: TorchWorkerStats } | { fatal: string } | CallReply;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
const MAX_RESTART_DELAY_MS = 30_000;
// A worker that ran this long without dying resets the backoff.
const STABLE_MS = 60_000;

/** One worker process: frames in and out, replies routed to their requests. */
class WorkerProcess {
  readonly child: ChildProcess;
  readonly ready: Promise<TorchWorkerStats>;
  /** Settles when the process exits, with a message saying how (and its last stderr lines). */
  readonly exited: Promise<string>;
  private readonly pending = new PendingCalls();
  private buffered: Buffer = Buffer.alloc(0);
  private readonly stderrTail: string[] = [];
  private dead: string | null = null;

  constructor(command: string, args: string[], log: Logger | undefined, label: string) {
    this.child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      // Unbuffered stderr keeps log lines timely; no __pycache__ next to the sources.
      env: { ...process.env, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
    });
    let onReady!: (s: TorchWorkerStats) => void;
    let onFatal!: (e: Error) => void;
    this.ready = new Promise((resolve, reject) => {
      onReady = resolve;
      onFatal = reject;
    });
    this.ready.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
    let stderrLine = '';
    this.child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      const lines = (stderrLine + text).split('\n');
      stderrLine = lines.pop()!;
      for (const line of lines) {
        this.stderrTail.push(line);
        if (this.stderrTail.length > 20) this.stderrTail.shift();
        log?.info(`${label}: ${line}`);
      }
    });
    this.child.stdout!.on('data', (data: Buffer) => {
      this.buffered = this.buffered.length ? Buffer.concat([this.buffered, data]) : data;
      while (this.buffered.length >= 4) {
        const n = this.buffered.readUInt32BE(0);
        if (this.buffered.length < 4 + n) break;
        let msg: WorkerReply;
        try {
          msg = packr.unpack(this.buffered.subarray(4, 4 + n)) as WorkerReply;
        } catch (err) {
          // Only frames may reach stdout (worker.py sends everything else to stderr): give up on it.
          this.fail(`${label} wrote a bad frame (${errorMessage(err)})`);
          this.child.kill('SIGKILL');
          return;
        }
        this.buffered = this.buffered.subarray(4 + n);
        if ('ready' in msg) onReady(msg.ready);
        else if ('fatal' in msg) onFatal(new Error(msg.fatal));
        else this.pending.route(msg);
      }
    });
    // A closed stdin (the worker died) must surface as the exit below, not as an unhandled error.
    this.child.stdin!.on('error', () => {});
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => {
        this.fail(`${label} could not start ${command}: ${err.message}`);
        resolve(this.dead!);
      });
      this.child.on('exit', (code, signal) => {
        const tail = this.stderrTail.filter((l) => l.trim()).slice(-5).join(' | ');
        this.fail(`${label} exited (${signal ? `signal ${signal}` : `code ${code}`})${tail ? `: ${tail}` : ''}`);
        resolve(this.dead!);
      });
    });
    this.exited.then((why) => onFatal(new Error(why)));
  }


  private fail(why: string): void {
    this.dead ??= why;
    this.pending.failAll(new TorchWorkerDownError(`torch worker is down: ${why}`));
  }

  get alive(): boolean {
    return this.dead === null;
  }

  send(msg: Record<string, unknown>): void {
    const body = packr.pack(msg);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length);
    this.child.stdin!.write(Buffer.concat([header, body]));
  }

  call<T>(op: string, args: Record<string, unknown>, opts: { onChunk?: (c: GenerateChunk) => void; signal?: AbortSignal } = {}): Promise<T> {
    if (this.dead) return Promise.reject(new TorchWorkerDownError(`torch worker is down: ${this.dead}`));
    return new Promise<T>((resolve, reject) => {
      const signal = opts.signal;
      const onAbort = () => {
        this.pending.drop(id);
        this.send({ op: 'cancel', target: id });
        reject(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
      };
      const settle = <V>(fn: (v: V) => void) => (v: V) => {
        signal?.removeEventListener('abort', onAbort);
        fn(v);
      };
      const id = this.pending.add({ resolve: settle(resolve as (v: unknown) => void), reject: settle(reject), onChunk: opts.onChunk });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.send({ id, op, ...args });
    });
  }

  /** Closes stdin (the worker exits at end of input); kills it if it lingers. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.alive) return;
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

export class TorchBackend implements TrainingBackend {
  readonly name: string;
  private worker: WorkerProcess;
  private version = 'base';
  /** What a restarted worker must be given back: the served adapter and the training copy's last state on disk. */
  private servedDir: string | null = null;
  private trainingDir: string | null = null;
  private closed = false;
  /** A restarted worker is loading or getting its adapters back. */
  private restoring = false;
  private crashes = 0;
  private restartTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly opts: TorchBackendOptions,
    worker: WorkerProcess,
    readonly info: TorchWorkerStats,
  ) {
    this.name = opts.name ?? opts.model;
    this.worker = worker;
    this.supervise(worker);
  }

  static async create(opts: TorchBackendOptions): Promise<TorchBackend> {
    const worker = TorchBackend.launch(opts);
    const timeoutMs = opts.startTimeoutMs ?? 15 * 60_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const info = await Promise.race([
        worker.ready,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the torch worker did not load ${opts.model} within ${timeoutMs / 1000} s`)), timeoutMs);
        }),
      ]);
      const { model, device, dtype, params, worldSize, sharded, gradCheckpointing, decode } = info;
      opts.log?.info('torch worker ready', { model, device, dtype, params, worldSize, sharded, gradCheckpointing, decode });
      return new TorchBackend(opts, worker, info);
    } catch (err) {
      await worker.stop(1000);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private static launch(opts: TorchBackendOptions): WorkerProcess {
    const python = opts.python ?? process.env.CLAWRL_PYTHON ?? 'python3';
    const gpus = opts.gpus ?? 1;
    if (!(Number.isInteger(gpus) && gpus >= 1)) throw new Error(`gpus must be a positive integer, got ${gpus}`);
    const workerArgs = [
      WORKER_PATH,
      '--model', opts.model,
      '--lora-rank', String(opts.lora?.rank ?? 16),
      '--lora-alpha', String(opts.lora?.alpha ?? 32),
      ...(opts.workerArgs ?? []),
    ];
    // torchrun's children inherit stdin/stdout; rank 0 alone reads and writes frames on them.
    // --redirects/--tee name a local rank that does not exist, so no rank's output is redirected:
    // torch 1.13 on Python 3.11 cannot parse their default "0" (IntFlag iteration changed).
    const torchrun = ['-m', 'torch.distributed.run', '--standalone', `--nproc_per_node=${gpus}`, '--redirects', '9:0', '--tee', '9:0'];
    const args = gpus > 1 ? [...torchrun, ...workerArgs] : workerArgs;
    opts.log?.info('starting torch worker', { python, model: opts.model, gpus });
    return new WorkerProcess(python, args, opts.log, `torch worker (${opts.model})`);
  }

  private supervise(worker: WorkerProcess): void {
    const started = Date.now();
    void worker.exited.then((why) => {
      if (this.closed || worker !== this.worker) return;
      this.crashes = Date.now() - started > STABLE_MS ? 1 : this.crashes + 1;
      const delay = Math.min((this.opts.restartDelayMs ?? 1000) * 2 ** (this.crashes - 1), MAX_RESTART_DELAY_MS);
      this.opts.log?.error(`torch worker died; restarting in ${delay} ms`, { why });
      this.restartTimer = setTimeout(() => void this.restart(), delay);
    });
  }

  private async restart(): Promise<void> {
    this.restartTimer = null;
    if (this.closed) return;
    const worker = TorchBackend.launch(this.opts);
    this.worker = worker;
    this.restoring = true;
    this.supervise(worker);
    try {
      await worker.ready;
      // Serve what was served, train on from the last adapter on disk; steps after it and the
      // optimiser state died with the old worker.
      if (this.servedDir !== null) await worker.call('loadAdapter', { dir: this.servedDir, version: this.version });
      if (this.trainingDir !== null) await worker.call('loadTrainingAdapter', { dir: this.trainingDir });
      this.opts.log?.info('torch worker restarted', { version: this.version, trainingFrom: this.trainingDir ?? 'fresh adapter' });
    } catch (err) {
      this.opts.log?.error('torch worker restart failed', { error: errorMessage(err) });
      await worker.stop(1000); // supervise() schedules the next try
    } finally {
      this.restoring = false;
    }
  }

  private get down(): boolean {
    return !this.worker.alive || this.restartTimer !== null || this.restoring;
  }

  /** The live worker; calls while it is starting (or restoring adapters) count as down. */
  private up(): WorkerProcess {
    if (this.closed) throw new TorchWorkerDownError('torch worker is down: the backend is closed');
    if (this.down) throw new TorchWorkerDownError('torch worker is down: restarting');
    return this.worker;
  }

  private call<T>(op: string, args: Record<string, unknown>, opts?: Parameters<WorkerProcess['call']>[2]): Promise<T> {
    try {
      return this.up().call<T>(op, args, opts);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Resolves once a (re)started worker serves; for callers that would rather wait than fail. */
  async whenUp(): Promise<void> {
    for (;;) {
      if (this.closed) throw new TorchWorkerDownError('torch worker is down: the backend is closed');
      if (!this.down) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The worker's process id (for operators and tests). */
  get pid(): number | undefined {
    return this.worker.child.pid;
  }

  models(): string[] {
    return [this.name];
  }

  currentVersion(): string {
    return this.version;
  }

  async encodeChat(messages: ChatMessage[], tools?: ToolSpec[]): Promise<number[]> {
    return (await this.call<{ tokens: number[] }>('encodeChat', { messages, tools })).tokens;
  }

  async generate(req: GenerateRequest, onChunk?: (chunk: GenerateChunk) => void): Promise<GenerateResult> {
    req.signal?.throwIfAborted();
    const reply = await this.call<WorkerGenerateResult>(
      'generate',
      { messages: req.messages, tools: req.tools, sampling: req.sampling },
      { onChunk, signal: req.signal },
    );
    const parsed = parseToolCalls(reply.text, () => `call_${randomUUID().replace(/-/g, '').slice(0, 24)}`);
    const finishReason: FinishReason = parsed.toolCalls.length > 0 ? 'tool_calls' : reply.finishReason;
    return {
      promptTokens: reply.promptTokens,
      responseTokens: reply.responseTokens,
      logprobs: reply.logprobs,
      tokens: reply.tokens,
      text: parsed.content,
      toolCalls: parsed.toolCalls,
      finishReason,
      weightVersion: reply.weightVersion,
      promptTruncated: reply.promptTruncated,
    };
  }

  score(promptTokens: number[], responseTokens: number[], opts?: { reference?: boolean }): Promise<number[]> {
    return this.call<number[]>('score', { prompt: promptTokens, response: responseTokens, reference: !!opts?.reference });
  }

  trainStep(batch: TrainExample[], opts: TrainOptions): Promise<TrainMetrics> {
    return this.call<TrainMetrics>('trainStep', { batch, opts });
  }

  async saveAdapter(dir: string): Promise<void> {
    await this.call('saveAdapter', { dir });
    this.trainingDir = dir;
  }

  // No loadCanary: each layer of the worker has one served-adapter slot, and concurrent requests
  // decode together in one batch (one CUDA graph) through it; two adapters would need per-row
  // adapters in the batch. So a canary share is ignored here (the trainer logs it) and each
  // version serves everyone at once, watched by the guard; a canary at scale goes through
  // upstream, where vLLM serves adapters by name.
  async loadAdapter(dir: string | null, version: string): Promise<void> {
    await this.call('loadAdapter', { dir, version });
    this.servedDir = dir;
    this.version = version;
  }

  async loadTrainingAdapter(dir: string | null): Promise<void> {
    await this.call('loadTrainingAdapter', { dir });
    this.trainingDir = dir;
  }

  /** Memory, throughput and shape of the running worker. */
  stats(opts: { resetPeak?: boolean } = {}): Promise<TorchWorkerStats> {
    return this.call<TorchWorkerStats>('stats', { resetPeak: !!opts.resetPeak });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    await this.worker.stop();
  }
}
