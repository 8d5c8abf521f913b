// worker_threads entry of the embedded backend. The backend starts two of these: a serving worker
// (generate, score, the served adapter) and a training worker (trainStep, the training copy of the
// adapter and its optimiser state, saveAdapter, reference scoring). Both run this same script and
// the backend routes each op to one of them, so serving, training and the main event loop never
// block each other. Requests run one at a time in arrival order, so an adapter swap always lands
// between two generations.

import { parentPort, workerData } from 'node:worker_threads';
import type { CallReply } from '../calls.ts';
import type { GenerateChunk, SamplingParams, TrainExample, TrainMetrics, TrainOptions } from '../types.ts';
import { policyLoss } from '../loss.ts';
import { AdamW, clipGradNorm } from './adamw.ts';
import { loadAdapter, saveAdapter } from './adapter.ts';
import { Lora, Model, type ModelConfig } from './model.ts';
import type { Tensor } from '../safetensors.ts';
import { type SampleResult, sample } from './sample.ts';
import { errorMessage } from '../../errors.ts';

export interface WorkerInit {
  config: ModelConfig;
  /** A pretrained base's tensors (bases.ts); absent: random weights from config.seed. */
  weights?: Map<string, Tensor>;
  loraRank: number;
  loraAlpha: number;
  modelName: string;
}

export type WorkerRequest =
  | { op: 'generate'; prompt: number[]; sampling: SamplingParams; abort: SharedArrayBuffer; canary: boolean }
  | { op: 'score'; prompt: number[]; response: number[]; reference: boolean }
  | { op: 'loadAdapter'; dir: string | null; version: string }
  | { op: 'loadCanary'; dir: string | null; version: string | null }
  | { op: 'trainStep'; batch: TrainExample[]; opts: TrainOptions }
  | { op: 'saveAdapter'; dir: string }
  | { op: 'loadTrainingAdapter'; dir: string | null };

export interface GenerateReply extends SampleResult {
  weightVersion: string;
}

export type WorkerMessage = CallReply;

/** One optimiser step of the token-level clipped policy loss over a batch (see loss.ts). */
function trainStep(model: Model, lora: Lora, opt: AdamW, batch: TrainExample[], opts: TrainOptions): TrainMetrics {
  const started = performance.now();
  // Lengths are checked by policyLoss; a bad example throws before the optimiser steps.
  const masks = batch.map((ex) => ex.mask ?? new Array<number>(ex.responseTokens.length).fill(1));
  const total = masks.reduce((sum, m) => sum + m.reduce((a, b) => a + b, 0), 0);
  const metrics: TrainMetrics = { loss: 0, clipFraction: 0, meanRatio: 0, kl: 0, gradNorm: 0, tokens: total, durationMs: 0 };
  if (total === 0) return { ...metrics, durationMs: performance.now() - started };
  lora.grads.fill(0);
  batch.forEach((ex, i) => {
    const weight = masks[i].reduce((a, b) => a + b, 0);
    if (weight === 0) return;
    const refLogp = opts.klCoef !== 0 ? model.score(ex.promptTokens, ex.responseTokens, null) : undefined;
    // policyLoss averages over this example's tokens; scaling by its share of the batch's
    // tokens makes the sum over examples the token-level mean over the whole batch.
    const share = weight / total;
    model.accumulateGradients(ex.promptTokens, ex.responseTokens, lora, (logp) => {
      const r = policyLoss(logp, ex.oldLogprobs, ex.advantages, masks[i], { ...opts, refLogp });
      metrics.loss += share * r.loss;
      metrics.clipFraction += share * r.clipFraction;
      metrics.meanRatio += share * r.meanRatio;
      metrics.kl += share * r.kl;
      return r.dLogp.map((d) => d * share);
    });
  });
  metrics.gradNorm = clipGradNorm(lora.grads, opts.maxGradNorm ?? 1);
  opt.step(lora.params, lora.grads, opts.lr, opts.weightDecay ?? 0);
  metrics.durationMs = performance.now() - started;
  return metrics;
}

const init = workerData as WorkerInit;
const model = new Model(init.config, false, init.weights);
let served: Lora | null = null;
let servedVersion = 'base';
/** A second adapter, served to the requests that ask for it (a canary rollout). */
let canary: { lora: Lora | null; version: string } | null = null;
// The training copy starts as a fresh adapter (B = 0: identical to the base), seeded so runs repeat.
let training: { lora: Lora; opt: AdamW } | null = null;
const freshTraining = (lora = Lora.init(init.config, init.loraRank, init.loraAlpha, init.config.seed + 1)) => ({
  lora,
  opt: new AdamW(lora.params.length),
});

async function handle(id: number, req: WorkerRequest): Promise<unknown> {
  switch (req.op) {
    case 'generate': {
      const flag = new Int32Array(req.abort);
      const onChunk = (chunk: GenerateChunk) => parentPort!.postMessage({ id, chunk } satisfies WorkerMessage);
      const [lora, version] = req.canary && canary ? [canary.lora, canary.version] : [served, servedVersion];
      const result = sample(model, lora, req.prompt, req.sampling, onChunk, () => Atomics.load(flag, 0) !== 0);
      return { ...result, weightVersion: version } satisfies GenerateReply;
    }
    case 'score':
      return model.score(req.prompt, req.response, req.reference ? null : served);
    case 'loadAdapter':
      // Load fully (and validate) before swapping, so a bad adapter leaves the current one serving.
      served = req.dir === null ? null : await loadAdapter(req.dir, init.config);
      servedVersion = req.version;
      return null;
    case 'loadCanary':
      canary = req.version === null ? null : { lora: req.dir === null ? null : await loadAdapter(req.dir, init.config), version: req.version };
      return null;
    case 'trainStep':
      training ??= freshTraining();
      return trainStep(model, training.lora, training.opt, req.batch, req.opts);
    case 'saveAdapter':
      training ??= freshTraining();
      await saveAdapter(req.dir, training.lora, init.modelName);
      return null;
    case 'loadTrainingAdapter':
      training = req.dir === null ? freshTraining() : freshTraining(await loadAdapter(req.dir, init.config));
      return null;
  }
}

let queue: Promise<void> = Promise.resolve();
parentPort!.on('message', ({ id, req }: { id: number; req: WorkerRequest }) => {
  queue = queue.then(async () => {
    try {
      parentPort!.postMessage({ id, ok: true, result: await handle(id, req) } satisfies WorkerMessage);
    } catch (err) {
      parentPort!.postMessage({ id, ok: false, error: errorMessage(err) } satisfies WorkerMessage);
    }
  });
});
