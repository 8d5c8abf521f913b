// Sampling with logprobs.
//
// Reported logprobs are those of the RAW model distribution (temperature 1, no top-p), not of
// the tempered/truncated distribution the token was drawn from (vLLM's default too). The trainer's
// ratio π_θ/π_old divides `score` (the raw distribution) by these, so both must be the same
// quantity; temperature and top-p only decide which token is drawn.

import type { GenerateChunk, SamplingParams, TokenLogprob } from '../types.ts';
import { type Lora, type Model, Rng, logSumExp } from './model.ts';
import { StreamDecoder, decode, endsTurn } from './tokenizer.ts';

export interface SampleResult {
  responseTokens: number[];
  logprobs: number[];
  tokens: TokenLogprob[];
  /** The reply text, cut before any stop string; turn-ending tokens are not shown. */
  text: string;
  finishReason: 'stop' | 'length';
}

/** Draws a token index from logits under temperature and top-p; temperature 0 is greedy. */
function draw(logits: ArrayLike<number>, temperature: number, topP: number, rng: Rng): number {
  const V = logits.length;
  let best = 0;
  for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
  if (temperature <= 0) return best;
  const probs = new Float64Array(V);
  let sum = 0;
  for (let v = 0; v < V; v++) {
    probs[v] = Math.exp((logits[v] - logits[best]) / temperature);
    sum += probs[v];
  }
  // Nucleus: the smallest set of most likely tokens whose mass reaches topP.
  let order = Array.from({ length: V }, (_, v) => v);
  if (topP < 1) {
    order.sort((a, b) => probs[b] - probs[a]);
    let mass = 0;
    let n = 0;
    while (n < V && mass < topP * sum) mass += probs[order[n++]];
    order = order.slice(0, n);
    sum = mass;
  }
  let u = rng.next() * sum;
  for (const v of order) {
    u -= probs[v];
    if (u < 0) return v;
  }
  return order[order.length - 1]; // rounding left u ≥ 0 after the last token
}

/** How much of the end of `text` could be the start of a stop string: held back from streaming. */
function stopPrefixLength(text: string, stops: string[]): number {
  let longest = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > longest; k--) {
      if (text.endsWith(s.slice(0, k))) {
        longest = k;
        break;
      }
    }
  }
  return longest;
}

/**
 * Samples a reply to `prompt` with a KV cache: one batched forward over the prompt, then one
 * position per token. Stops at a turn-ending token, a stop string, maxTokens, or the context.
 * `aborted` is polled between tokens.
 */
export function sample(
  model: Model,
  lora: Lora | null,
  prompt: number[],
  params: SamplingParams,
  onChunk?: (chunk: GenerateChunk) => void,
  aborted?: () => boolean,
): SampleResult {
  const C = model.cfg.context;
  if (prompt.length === 0 || prompt.length > C) throw new Error(`prompt of ${prompt.length} tokens does not fit the context of ${C}`);
  const rng = new Rng(params.seed ?? Math.floor(Math.random() * 2 ** 32));
  const stops = params.stop.filter((s) => s.length > 0);
  // The last sampled token is never fed back, so a reply may reach context − prompt + 1 tokens.
  const limit = Math.min(params.maxTokens, C - prompt.length + 1);
  const cache = model.newCache();
  const decoder = new StreamDecoder();
  const result: SampleResult = { responseTokens: [], logprobs: [], tokens: [], text: '', finishReason: 'length' };
  let streamed = 0;
  let acts = model.forward(prompt, 0, cache, lora);
  while (result.responseTokens.length < limit) {
    if (aborted?.()) throw new Error('generation aborted');
    const logits = model.logits(acts, acts.T - 1);
    const lse = logSumExp(logits);
    const token = draw(logits, params.temperature, params.topP, rng);
    const ends = endsTurn(token);
    const piece = ends ? decoder.flush() : decoder.push(token);
    const entry: TokenLogprob = { token, text: piece, logprob: logits[token] - lse };
    if (params.topLogprobs > 0) {
      const top = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
      entry.top = top.slice(0, params.topLogprobs).map((t) => ({ token: t, text: decode([t]), logprob: logits[t] - lse }));
    }
    result.responseTokens.push(token);
    result.logprobs.push(entry.logprob);
    result.tokens.push(entry);
    const searchFrom = Math.max(0, result.text.length - Math.max(0, ...stops.map((s) => s.length)) + 1);
    result.text += piece;
    let cut = -1;
    for (const s of stops) {
      const at = result.text.indexOf(s, searchFrom);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) result.text = result.text.slice(0, cut);
    const done = ends || cut >= 0 || result.responseTokens.length >= limit;
    if (done) result.finishReason = ends || cut >= 0 ? 'stop' : 'length';
    if (done && !ends && cut < 0) result.text += decoder.flush();
    const safe = done ? result.text.length : result.text.length - stopPrefixLength(result.text, stops);
    if (onChunk) onChunk({ text: result.text.slice(streamed, Math.max(streamed, safe)), tokens: [entry] });
    streamed = Math.max(streamed, safe);
    if (done) break;
    acts = model.forward([token], prompt.length + result.responseTokens.length - 1, cache, lora);
  }
  return result;
}
