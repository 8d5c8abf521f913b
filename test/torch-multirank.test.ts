// The torch worker under torchrun with two ranks on the CPU (gloo), as `--gpus 2` starts it: rank 0
// talks to the daemon, rank 1 follows, and a training step splits its batch between them. Compared
// against one rank. With torch 2.x (CLAWRL_PYTHON naming a venv) the ranks shard the model with
// FSDP as on GPUs; with CI's torch 1.13, whose FSDP needs CUDA, each rank holds the whole model and
// the worker sums the gradients, so CI covers the multi-rank protocol, not FSDP's sharding.
// Needs torch for /usr/bin/python3 or CLAWRL_PYTHON (CI: apt-get install python3-torch); skipped without it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TorchBackend, TorchWorkerDownError } from '../daemon/backends/torch/index.ts';
import type { GenerateChunk, SamplingParams, TrainExample, TrainOptions } from '../daemon/backends/types.ts';
import { TORCH_PYTHON as PYTHON, closeTo as close, torchMissing } from './helpers.ts';

const skip = torchMissing();

const sampling = (over: Partial<SamplingParams> = {}): SamplingParams => ({ temperature: 1, topP: 1, maxTokens: 16, stop: [], topLogprobs: 0, seed: 5, ...over });
const chat = (content: string) => [{ role: 'user' as const, content }];
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
// 32 padded tokens per rank and microbatch: the training batch below (3 examples of 24..31 tokens)
// runs as ex0 | ex1, then ex2 | a zero-weight one on two ranks, and one example at a time on one rank.
const MICRO_BATCH_TOKENS = 32;
const workerArgs = ['--device', 'cpu', '--micro-batch-tokens', String(MICRO_BATCH_TOKENS)];

const logged: Record<string, unknown>[] = [];
let multi: TorchBackend;
let single: TorchBackend;
let dir: string;
before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'clawrl-torch-multirank-'));
  const lora = { rank: 4, alpha: 8 };
  [multi, single] = await Promise.all([
    TorchBackend.create({ python: PYTHON, model: 'tiny-test', gpus: 2, lora, workerArgs, restartDelayMs: 100, log: { debug() {}, info: (msg, fields) => logged.push({ msg, ...fields }), warn() {}, error() {} } }),
    TorchBackend.create({ python: PYTHON, model: 'tiny-test', gpus: 1, lora, workerArgs }),
  ]);
});
after(async () => {
  await Promise.all([multi?.close(), single?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('two ranks: generate is streamed, batched, equal to score and to one rank', { skip }, async () => {
  assert.equal(multi.info.worldSize, 2);
  const torchMajor = Number(spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__.split(".")[0])'], { encoding: 'utf8' }).stdout);
  assert.equal(multi.info.sharded, torchMajor >= 2, `torch ${torchMajor}.x: FSDP on CPU ranks is ${torchMajor >= 2 ? 'expected' : 'unsupported'}`);
  assert.deepEqual(logged.find((l) => l.msg === 'torch worker ready')?.sharded, multi.info.sharded, 'the log says how the ranks hold the model');
  const chunks: GenerateChunk[] = [];
  const prompts = ['Say hello.', 'A longer prompt, so the batch needs left padding: ' + 'la '.repeat(20), 'Short'];
  const results = await Promise.all(prompts.map((p, i) => multi.generate({ messages: chat(p), sampling: sampling({ seed: i }) }, i === 0 ? (c) => chunks.push(c) : undefined)));
  for (const [i, r] of results.entries()) {
    assert.ok(r.responseTokens.length > 0);
    const scored = await multi.score(r.promptTokens, r.responseTokens);
    assert.ok(close(scored, r.logprobs, 1e-4), `prompt ${i}: generate ${r.logprobs} vs score ${scored}`);
    assert.ok(close(await single.score(r.promptTokens, r.responseTokens), scored, 1e-5), `prompt ${i}: one rank scores it the same`);
  }
  assert.equal(chunks.map((c) => c.text).join(''), results[0].text);
  assert.deepEqual(chunks.flatMap((c) => c.tokens.map((t) => t.token)), results[0].responseTokens);
});

test('two ranks stay in step after a cancelled generate and a refused request', { skip }, async () => {
  const ac = new AbortController();
  const pending = multi.generate({ messages: chat('long'), sampling: sampling({ maxTokens: 400 }), signal: ac.signal }, () => ac.abort());
  await assert.rejects(pending);
  await assert.rejects(multi.score([1, 2], [99_999]), /not an id of this model's vocabulary/);
  const r = await multi.generate({ messages: chat('after'), sampling: sampling({ maxTokens: 4 }) });
  assert.ok(close(await multi.score(r.promptTokens, r.responseTokens), r.logprobs, 1e-4));
});

let served: { prompt: number[]; response: number[]; logprobs: number[] };
test('two ranks: an uneven batch trains as on one rank; save -> load serves the training copy', { skip }, async () => {
  // Prompts of 20 characters (23 tokens) and replies of 1..8 tokens.
  const gens = await Promise.all(['Train on me, please.', 'And on me, a little.', 'Me too, me too, too.'].map((p, i) =>
    single.generate({ messages: chat(p), sampling: sampling({ seed: 10 + i, maxTokens: 8 }) })));
  for (const r of gens) {
    const n = r.promptTokens.length + r.responseTokens.length;
    assert.ok(n <= MICRO_BATCH_TOKENS && 3 * n > 2 * MICRO_BATCH_TOKENS, `${n} tokens upset the microbatch plan`);
  }
  const batch: TrainExample[] = gens.map((r, i) => ({
    promptTokens: r.promptTokens,
    responseTokens: r.responseTokens,
    oldLogprobs: r.logprobs,
    advantages: r.logprobs.map((_, t) => [1, 0.5, 2][i] * (1 + 0.1 * Math.sin(t))),
    mask: r.logprobs.map((_, t) => (i === 1 && t === 0 ? 0 : 1)),
  }));
  const opts: TrainOptions = { lr: 1e-2, clipLow: 0.2, clipHigh: 0.28, klCoef: 0.01 };
  for (let step = 0; step < 3; step++) {
    const [m2, m1] = await Promise.all([multi.trainStep(batch, opts), single.trainStep(batch, opts)]);
    assert.equal(m2.tokens, sum(batch.map((ex) => sum(ex.mask!))));
    // gradNorm is taken before clipping: it checks that the ranks' gradients add up to the batch's.
    for (const k of ['loss', 'clipFraction', 'meanRatio', 'kl', 'gradNorm', 'tokens'] as const) {
      assert.ok(Math.abs(m2[k] - m1[k]) <= 1e-5 * Math.max(1, Math.abs(m1[k])), `step ${step}: ${k} ${m2[k]} on two ranks, ${m1[k]} on one`);
    }
    assert.ok(m2.gradNorm > 0);
  }
  for (const [b, name] of [[multi, 'two'], [single, 'one']] as const) {
    await b.saveAdapter(join(dir, name));
    await b.loadAdapter(join(dir, name), name);
  }
  for (const ex of batch) {
    const [trained2, trained1] = await Promise.all([multi.score(ex.promptTokens, ex.responseTokens), single.score(ex.promptTokens, ex.responseTokens)]);
    assert.ok(sum(trained2) > sum(ex.oldLogprobs) + 0.1, `logprob ${sum(ex.oldLogprobs)} -> ${sum(trained2)}`);
    assert.ok(close(trained2, trained1, 1e-4), `two ranks ${trained2} vs one ${trained1}`);
  }
  // The served adapter is the training copy: with lr 0 (no change), the served logprobs as π_old
  // give every token a ratio of 1, which a tight clip range shows for each token (advantages of
  // both signs catch a ratio above and below 1).
  const ex = batch[0];
  served = { prompt: ex.promptTokens, response: ex.responseTokens, logprobs: await multi.score(ex.promptTokens, ex.responseTokens) };
  const probe = [1, -1].map((a) => ({ promptTokens: ex.promptTokens, responseTokens: ex.responseTokens, oldLogprobs: served.logprobs, advantages: served.logprobs.map(() => a) }));
  const m = await multi.trainStep(probe, { lr: 0, clipLow: 1e-5, clipHigh: 1e-5, klCoef: 0 });
  assert.equal(m.clipFraction, 0, `served vs training copy: meanRatio ${m.meanRatio}`);
  assert.ok(Math.abs(m.meanRatio - 1) < 1e-6);
});

test('two ranks: a killed torchrun is restarted with its adapter, and no rank outlives its torchrun', { skip }, async () => {
  const ranksOf = (pid: number) => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
  const alive = async (pids: number[]) => {
    for (let i = 0; i < 50 && pids.some((pid) => existsSync(`/proc/${pid}`)); i++) await new Promise((r) => setTimeout(r, 100));
    return pids.filter((pid) => existsSync(`/proc/${pid}`));
  };
  if (!existsSync(`/proc/${multi.pid}/task`)) return; // not Linux
  const old = ranksOf(multi.pid!);
  assert.equal(old.length, 2, 'torchrun runs one process per rank');
  const pid = multi.pid!;
  process.kill(pid, 'SIGKILL');
  // Rank 0 may still answer until the daemon sees torchrun exit.
  while (multi.pid === pid) await new Promise((r) => setTimeout(r, 20));
  await assert.rejects(multi.score(served.prompt, served.response), TorchWorkerDownError);
  await multi.whenUp();
  assert.deepEqual(await alive(old), [], 'the killed torchrun\'s ranks exit');
  assert.equal(multi.currentVersion(), 'two');
  assert.ok(close(await multi.score(served.prompt, served.response), served.logprobs, 1e-6));
  const now = ranksOf(multi.pid!);
  await multi.close();
  assert.deepEqual(await alive(now), [], 'close ends every rank');
});
