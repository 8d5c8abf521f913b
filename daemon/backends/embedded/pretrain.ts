// Pretraining a base that reads in-context instructions (corpus.ts), on the CPU, with the model's
// own forward/backward (every base weight trains here; in the daemon only LoRA does). The loss is
// the cross-entropy of the reply tokens (and the end marker, so a length instruction can be kept),
// the first reply token weighted FIRST_TOKEN_WEIGHT times: most instructions are decided there
// (how the reply starts), and among ~30 tokens of free words its signal would be drowned.
// Deterministic: the same options give the same weights on the same platform.

import { AdamW, clipGradNorm } from './adamw.ts';
import { corpusExample, follows, INSTRUCTIONS, randomPrompt, userMessage, type Rule } from './corpus.ts';
import { BaseGrads, Model, Rng, type ModelConfig } from './model.ts';
import { sample } from './sample.ts';
import { SPECIAL, VOCAB_SIZE, encodeText } from './tokenizer.ts';

export interface PretrainOptions {
  /** Shape and seed (init and corpus); the vocabulary is the tokenizer's. */
  model: Omit<ModelConfig, 'vocab' | 'base'>;
  steps: number;
  /** Chats per optimiser step. */
  batch: number;
  /** Peak AdamW learning rate: linear warm-up over the first 5 % of steps, cosine decay to a tenth. */
  lr: number;
  /** Called (and awaited) every `logEvery` steps with the mean loss since the last call and the model so far (to save it). */
  onLog?: (step: number, loss: number, model: Model) => void | Promise<void>;
  logEvery?: number;
}

export const FIRST_TOKEN_WEIGHT = 4;

export async function pretrain(opts: PretrainOptions): Promise<Model> {
  const model = new Model({ ...opts.model, vocab: VOCAB_SIZE });
  const grads = new BaseGrads(model);
  const opt = new AdamW(model.params.length, 0.9, 0.95);
  const rng = new Rng(opts.model.seed ^ 0x5eed);
  const warmup = Math.max(1, Math.floor(opts.steps * 0.05));
  let logged = 0;
  let lossSum = 0;
  for (let step = 1; step <= opts.steps; step++) {
    const batch = Array.from({ length: opts.batch }, () => corpusExample(rng));
    const weight = (i: number) => (i === 0 ? FIRST_TOKEN_WEIGHT : 1);
    const total = batch.reduce((n, ex) => n + ex.tokens.length - ex.replyStart - 1 + FIRST_TOKEN_WEIGHT, 0);
    grads.flat.fill(0);
    for (const ex of batch) {
      const logp = model.accumulateGradients(ex.tokens.slice(0, ex.replyStart), ex.tokens.slice(ex.replyStart), null, (lp) => lp.map((_, i) => -weight(i) / total), grads);
      lossSum -= logp.reduce((a, b, i) => a + weight(i) * b, 0) / total;
    }
    clipGradNorm(grads.flat, 1);
    const progress = step <= warmup ? step / warmup : 0.1 + 0.45 * (1 + Math.cos((Math.PI * (step - warmup)) / Math.max(1, opts.steps - warmup)));
    opt.step(model.params, grads.flat, opts.lr * Math.min(1, progress), 0);
    model.weightsChanged();
    if (opts.onLog && (step % (opts.logEvery ?? 50) === 0 || step === opts.steps)) {
      await opts.onLog(step, lossSum / (step - logged), model);
      logged = step;
      lossSum = 0;
    }
  }
  return model;
}

/** Share of sampled replies (temperature 1) that keep `rule`, with its instruction as a hint and without. */
export interface FollowRate {
  rule: Rule;
  withHint: number;
  without: number;
}

/**
 * How well a base reads instructions: for each rule, `samples` replies to random requests with
 * the rule's first phrasing as a hindsight hint, and as many without any instruction.
 */
export function followRates(model: Model, samples: number, seed: number, maxTokens = 48): FollowRate[] {
  const rng = new Rng(seed);
  return (Object.keys(INSTRUCTIONS) as Rule[]).map((rule) => {
    const rate = (hinted: boolean) => {
      let hits = 0;
      for (let i = 0; i < samples; i++) {
        const user = userMessage(randomPrompt(rng), hinted ? [INSTRUCTIONS[rule][0]!] : [], hinted ? 'hint' : 'none');
        const prompt = [SPECIAL.user, ...encodeText(user), SPECIAL.end, SPECIAL.assistant];
        const reply = sample(model, null, prompt, { maxTokens, temperature: 1, topP: 1, stop: [], topLogprobs: 0, seed: Math.floor(rng.next() * 2 ** 32) });
        if (follows(rule, reply.text)) hits++;
      }
      return hits / samples;
    };
    return { rule, withHint: rate(true), without: rate(false) };
  });
}
