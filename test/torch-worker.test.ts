// The torch backend's worker (daemon/backends/torch/*.py) on the tiny torch-only model: its frame
// codec, its loss against loss.ts, and the backend's serve/train/adapter/restart behaviour.
// Needs torch for /usr/bin/python3 or CLAWRL_PYTHON (CI: apt-get install python3-torch); skipped without it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { Packr } from 'msgpackr';
import { policyLoss } from '../daemon/backends/loss.ts';
import { TorchBackend, TorchWorkerDownError, WORKER_PATH } from '../daemon/backends/torch/index.ts';
import type { GenerateChunk, SamplingParams } from '../daemon/backends/types.ts';
import { TORCH_PYTHON as PYTHON, closeTo as close, torchMissing } from './helpers.ts';

const skip = torchMissing();

/** Runs Python beside the worker's modules with `input` on stdin; returns stdout. */
function python(code: string, input: string | Buffer): Buffer {
  const r = spawnSync(PYTHON, ['-B', '-c', `import sys; sys.path.insert(0, ${JSON.stringify(dirname(WORKER_PATH))})\n${code}`], { input, maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, `python failed: ${r.stderr}`);
  return r.stdout;
}

const sampling = (over: Partial<SamplingParams> = {}): SamplingParams => ({ temperature: 1, topP: 1, maxTokens: 24, stop: [], topLogprobs: 0, seed: 5, ...over });
const chat = (content: string) => [{ role: 'user' as const, content }];

let backend: TorchBackend;
let dir: string;
before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'clawrl-torch-'));
  backend = await TorchBackend.create({ python: PYTHON, model: 'tiny-test', lora: { rank: 4, alpha: 8 }, restartDelayMs: 100, workerArgs: ['--device', 'cpu'] });
});
after(async () => {
  await backend?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('frames: msgpack values survive TS -> Python -> TS unchanged', { skip }, () => {
  const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
  const values: unknown[] = [
    null, true, false, 0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32, 2 ** 53 - 1, -1, -32, -33, -129, -(2 ** 31) - 1, -(2 ** 53 - 1),
    0.1, -2.5e-300, Infinity, -Infinity, NaN, '', 'é世🦀', 'x'.repeat(40), 'y'.repeat(70_000),
    Buffer.from([0, 1, 255]), [], [1, [2, [3]]], Array.from({ length: 70_000 }, (_, i) => i / 7),
    { id: 3, op: 'score', nested: { a: [null, { b: 'c' }] } }, { tools: undefined }, Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])),
  ];
  // Frames are maps in this protocol (and read_frame's None means end of input): wrap each value.
  const frames = Buffer.concat(values.map((v) => {
    const body = packr.pack({ v });
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length);
    return Buffer.concat([header, body]);
  }));
  const out = python(`from wire import read_frame, write_frame
while (v := read_frame(sys.stdin.buffer)) is not None: write_frame(sys.stdout.buffer, v)`, frames);
  const back: unknown[] = [];
  for (let at = 0; at < out.length; ) {
    const n = out.readUInt32BE(at);
    back.push((packr.unpack(out.subarray(at + 4, at + 4 + n)) as { v: unknown }).v);
    at += 4 + n;
  }
  assert.equal(back.length, values.length);
  // JavaScript's undefined comes back as null (msgpack has no undefined).
  const expected = values.map((v) => (v !== null && typeof v === 'object' && 'tools' in v ? { tools: null } : v));
  expected.forEach((v, i) => assert.deepStrictEqual(back[i] instanceof Uint8Array ? Buffer.from(back[i]) : back[i], v, `value ${i}`));
});

test("the worker's loss is loss.ts's policyLoss: value, gradient and metrics", { skip }, () => {
  const n = 12;
  const wave = (k: number) => Array.from({ length: n }, (_, t) => Math.sin(k * (t + 1)));
  const logp = wave(1).map((x) => -1.5 + 0.3 * x);
  const cases = [
    { name: 'unclipped', old: logp.map((x, t) => x + 0.02 * wave(2)[t]), adv: wave(3), mask: Array(n).fill(1), klCoef: 0 },
    { name: 'clipped both ways', old: logp.map((x, t) => x + 0.8 * wave(2)[t]), adv: wave(5).map((a) => 2 * a), mask: Array(n).fill(1), klCoef: 0 },
    { name: 'masked', old: logp.map((x, t) => x + 0.5 * wave(4)[t]), adv: wave(3), mask: [1, 0, 0.5, 1, 0, 1, 1, 0.25, 0, 1, 1, 0], klCoef: 0 },
    { name: 'kl', old: logp.map((x, t) => x + 0.4 * wave(2)[t]), adv: wave(6), mask: Array(n).fill(1), klCoef: 0.1, ref: logp.map((x, t) => x + 0.6 * wave(7)[t]) },
    { name: 'all masked', old: logp, adv: wave(3), mask: Array(n).fill(0), klCoef: 0 },
  ];
  const out = python(`import json, torch
from engine import policy_loss
results = []
for c in json.load(sys.stdin):
    t = lambda k: torch.tensor(c[k], dtype=torch.float64)
    logp = torch.tensor(c["logp"], dtype=torch.float64, requires_grad=True)
    r = policy_loss(logp, t("old"), t("adv"), t("mask"), 0.2, 0.28, c["klCoef"], t("ref") if "ref" in c else None)
    r["loss"].backward()
    results.append({"loss": r["loss"].item(), "dLogp": logp.grad.tolist(), **{k: float(r[k]) for k in ("clipFraction", "meanRatio", "kl")}})
print(json.dumps(results))`, JSON.stringify(cases.map((c) => ({ ...c, logp }))));
  const results = JSON.parse(out.toString()) as { loss: number; dLogp: number[]; clipFraction: number; meanRatio: number; kl: number }[];
  cases.forEach((c, i) => {
    const want = policyLoss(logp, c.old, c.adv, c.mask, { clipLow: 0.2, clipHigh: 0.28, klCoef: c.klCoef, refLogp: c.ref });
    const got = results[i];
    assert.ok(Math.abs(got.loss - want.loss) < 1e-5, `${c.name}: loss ${got.loss} vs ${want.loss}`);
    assert.ok(close(got.dLogp, Array.from(want.dLogp), 1e-5), `${c.name}: dLogp ${got.dLogp} vs ${Array.from(want.dLogp)}`);
    for (const k of ['clipFraction', 'meanRatio', 'kl'] as const) assert.ok(Math.abs(got[k] - want[k]) < 1e-5, `${c.name}: ${k} ${got[k]} vs ${want[k]}`);
  });
  // The cases exercise what they are named for.
  assert.ok(policyLoss(logp, cases[1].old, cases[1].adv, cases[1].mask, { clipLow: 0.2, clipHigh: 0.28, klCoef: 0 }).clipFraction > 0.3);
});

test('activation checkpointing: the same step with or without it; auto turns it on when a step runs out of memory', { skip }, () => {
  // The out-of-memory error is a FAKE (a GPU's, raised by a wrapped forward): nothing here has a GPU to fill.
  const out = python(`import json, torch, weakref
import models
from engine import Dist, Engine

block_forward = models.TinyBlock.forward
def counted(self, *args):
    counts["blocks"] += 1
    return block_forward(self, *args)
models.TinyBlock.forward = counted

def engine(mode):
    # 16 tokens a microbatch: two of the three 8-token examples, then the third.
    return Engine(models.load_model("tiny-test", torch.device("cpu"), torch.float32), lora_rank=4, lora_alpha=8, seed=1,
                  device=torch.device("cpu"), grad_ckpt=mode, micro_batch_tokens=16, dist=Dist(torch.device("cpu")))

batch = [{"promptTokens": [257, 104, 105, 260, 258], "responseTokens": [111 + i, 107, 260], "oldLogprobs": [-5.6, -5.6, -5.6],
          "advantages": [1.0, 1.0, 1.0]} for i in range(3)]
opts = {"lr": 1e-2, "clipLow": 0.2, "clipHigh": 0.28, "klCoef": 0.0}
result = {}
for mode in ("off", "on", "auto"):
    e = engine(mode)
    counts = {"blocks": 0}
    calls = {"checkpointing": [], "failedTryAlive": None}
    held = []
    forward = e.policy.forward
    def fake_oom(*args, **kwargs):
        calls["checkpointing"].append(e.checkpointing)
        if held and calls["failedTryAlive"] is None:
            calls["failedTryAlive"] = held[0]() is not None  # at the retry's first forward
        if mode == "auto" and len(calls["checkpointing"]) == 2:
            activation = torch.ones(1024)  # what the failed forward held
            held.append(weakref.ref(activation))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake)")
        return forward(*args, **kwargs)
    e.policy.forward = fake_oom
    m = [e.train_step([dict(ex) for ex in batch], opts)]
    first_step_blocks = counts["blocks"]
    m.append(e.train_step([dict(ex) for ex in batch], opts))
    step_blocks = counts["blocks"] - first_step_blocks
    with torch.no_grad(), e.mode("train"):
        after = e.logprobs([([257, 104, 105, 260, 258], [111, 107, 260])]).tolist()
    result[mode] = {"loss": [x["loss"] for x in m], "gradNorm": [x["gradNorm"] for x in m], "after": after, "blocks": step_blocks,
                    "checkpointing": calls["checkpointing"], "failedTryAlive": calls["failedTryAlive"], "stats": e.stats()["gradCheckpointing"],
                    "tokens": e.counters["trainTokens"]}
print(json.dumps(result))`, '');
  type Run = { loss: number[]; gradNorm: number[]; after: number[]; blocks: number; checkpointing: boolean[]; failedTryAlive: boolean | null; stats: boolean; tokens: number };
  const r = JSON.parse(out.toString()) as Record<'off' | 'on' | 'auto', Run>;
  assert.ok(r.off.checkpointing.every((c) => !c) && !r.off.stats);
  assert.ok(r.on.checkpointing.every((c) => c) && r.on.stats);
  // Recomputation is real: a checkpointed step runs every block twice (forward, then again in backward).
  assert.equal(r.on.blocks, 2 * r.off.blocks, `block forwards in a step: ${r.on.blocks} checkpointed, ${r.off.blocks} not`);
  // auto: the first microbatch ran, the second ran out of memory, and the step ran again, checkpointed,
  // after the failed try's tensors were freed.
  assert.deepEqual(r.auto.checkpointing.slice(0, 3), [false, false, true]);
  assert.ok(r.auto.checkpointing.slice(2).every((c) => c) && r.auto.stats);
  assert.equal(r.auto.failedTryAlive, false, "the retry ran while the failed try's tensors were still held");
  assert.equal(r.auto.blocks, r.on.blocks);
  for (const mode of ['on', 'auto'] as const) {
    assert.ok(close(r[mode].loss, r.off.loss, 1e-6), `${mode}: loss ${r[mode].loss} vs ${r.off.loss}`);
    assert.ok(close(r[mode].gradNorm, r.off.gradNorm, 1e-5), `${mode}: grad norm ${r[mode].gradNorm} vs ${r.off.gradNorm}`);
    assert.ok(close(r[mode].after, r.off.after, 1e-5), `${mode}: trained logprobs ${r[mode].after} vs ${r.off.after}`);
    assert.equal(r[mode].tokens, r.off.tokens, `${mode}: the failed try's tokens are not counted`);
  }
  assert.ok(r.off.after[0]! > -5.6, 'the step trained');
});

test('a static KV cache decodes exactly as the growing one; its shapes are reused, and dropped on a swap or a step', { skip }, () => {
  const out = python(`import json, os, tempfile, torch
from engine import Dist, Engine
from models import load_model

def engine(decode):
    return Engine(load_model("tiny-test", torch.device("cpu"), torch.float32), lora_rank=4, lora_alpha=8, seed=1, device=torch.device("cpu"),
                  grad_ckpt="off", micro_batch_tokens=4096, dist=Dist(torch.device("cpu")), decode=decode)

def ask(e, reqs, cancel=()):
    done = {}
    e.generate([dict(r) for r in reqs], lambda i, c: None, lambda i, r: done.__setitem__(i, r if isinstance(r, dict) else repr(r)), lambda i: i in cancel)
    return [done[r["id"]] for r in reqs]

# Three prompt lengths (left padding), nucleus sampling, top logprobs, and one row cancelled.
reqs = [{"id": i, "messages": [{"role": "user", "content": "hello there " * (i + 1)}],
         "sampling": {"temperature": 1.0, "topP": 0.9, "maxTokens": 12 + 3 * i, "stop": [], "seed": i, "topLogprobs": 2}} for i in range(3)]
result = {}
for decode in ("growing", "static"):
    e = engine(decode)
    # The served adapter: a trained one, so the LoRA path runs in the decode steps too.
    batch = [{"promptTokens": [257, 104, 260, 258], "responseTokens": [111, 107], "oldLogprobs": [-5.6, -5.6], "advantages": [1.0, 1.0]}]
    e.train_step(batch, {"lr": 1e-1, "clipLow": 0.2, "clipHigh": 0.28, "klCoef": 0.0})
    folder = tempfile.mkdtemp()
    e.save_adapter(folder)
    e.load_adapter(folder, "v1")
    first = ask(e, reqs, cancel={1})
    shapes = [list(k) for k in getattr(e.decoder, "shapes", {})]
    again = ask(e, reqs[:1])  # fewer rows: the kept shape serves it
    longer = ask(e, [{**reqs[0], "sampling": {**reqs[0]["sampling"], "maxTokens": 300}}])  # a longer cache
    reused = [list(k) for k in getattr(e.decoder, "shapes", {})]
    released = e.decoder.cache if decode == "growing" else e.decoder.growing.cache
    # Generation served during a training step grows its cache: the step's memory is not held.
    during = []
    e.train_step(batch, {"lr": 1e-2, "clipLow": 0.2, "clipHigh": 0.28, "klCoef": 0.0}, lambda: during.append(ask(e, reqs[:1])))
    after_step = len(getattr(e.decoder, "shapes", {}))
    e.load_adapter(folder, "v1")
    ask(e, reqs[:1])
    e.load_adapter(None, "base")
    after_swap = len(getattr(e.decoder, "shapes", {}))
    result[decode] = {"first": first, "again": again + longer, "shapes": shapes, "reused": reused, "afterSwap": after_swap, "afterStep": after_step,
                      "released": released is None, "during": during[0], "kind": e.stats()["decode"], "counts": e.stats()["decodeCounts"]}
    if decode == "static":
        # No room for a static cache (a FAKE out-of-memory: no GPU here): the batch grows its cache instead.
        import decode as decoding
        real_shape = decoding.Shape
        def no_room(*args):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (fake)")
        decoding.Shape = no_room
        e.load_adapter(folder, "v1")
        result[decode]["noRoom"] = ask(e, reqs[:1])
        result[decode]["grew"] = e.decoder.grows
        decoding.Shape = real_shape
print(json.dumps(result))`, '');
  type Reply = { responseTokens: number[]; logprobs: number[]; tokens: { top?: unknown[] }[]; finishReason: string } | string;
  type Run = { first: Reply[]; again: Reply[]; shapes: number[][]; reused: number[][]; afterSwap: number; afterStep: number; released: boolean;
    during: Reply[]; kind: string; counts: Record<string, number>; noRoom?: Reply[]; grew?: boolean };
  const r = JSON.parse(out.toString()) as Record<'growing' | 'static', Run>;
  assert.equal(r.growing.kind, 'growing cache');
  assert.equal(r.static.kind, 'static cache');
  assert.match(r.static.first[1] as string, /Cancelled/);
  for (const [i, g] of [...r.growing.first, ...r.growing.again, ...r.growing.during].entries()) {
    const st = [...r.static.first, ...r.static.again, ...r.static.during][i]!;
    if (typeof g === 'string') continue;
    const s = st as Exclude<Reply, string>;
    assert.deepEqual(s.responseTokens, g.responseTokens, `reply ${i}: the same tokens`);
    assert.ok(close(s.logprobs, g.logprobs, 1e-5), `reply ${i}: logprobs ${s.logprobs} vs ${g.logprobs}`);
    assert.ok(g.responseTokens.length > 1 && s.tokens[0]!.top!.length === 2);
  }
  // Three rows pad to four; one row fits that shape; a longer reply needs a longer cache; a
  // training step and an adapter swap drop them; a batch's growing cache goes with the batch.
  assert.deepEqual(r.static.shapes, [[4, 256]]);
  assert.deepEqual(r.static.reused, [[4, 256], [1, 512]]);
  assert.equal(r.static.afterStep, 0);
  assert.equal(r.static.afterSwap, 0);
  assert.ok(r.growing.released && r.static.released);
  assert.equal(r.static.counts.grownBatches, 1, 'the batch served during the training step');
  assert.equal(r.static.grew, true);
  assert.deepEqual((r.static.noRoom![0] as Exclude<Reply, string>).responseTokens, (r.growing.again[0] as Exclude<Reply, string>).responseTokens);
});

test("decoding steps replayed as a graph (emulated on the CPU) give the growing cache's replies, across batches and an adapter swap", { skip }, () => {
  const out = python(`import json, tempfile, torch
from torch.fx.experimental.proxy_tensor import make_fx
import decode
from engine import Dist, Engine
from models import load_model

class TracedStep:
    """A FAKE CUDA graph (no GPU here): the step traced once, which freezes Python values and tensor
    identities as a capture does, then replayed by running the trace on whatever the buffers hold."""
    def __init__(self, shape):
        self.shape, self.trace = shape, make_fx(lambda: shape.forward())()
    def replay(self):
        self.shape.logits.copy_(self.trace())

def capture(shape):
    for _ in range(2):
        shape.forward()  # the warm-up, writing junk into the cache as the real one does
    shape.graph = TracedStep(shape)
    shape.logits = torch.empty_like(shape.forward())
decode.Shape.capture = capture

def engine(kind):
    e = Engine(load_model("tiny-test", torch.device("cpu"), torch.float32), lora_rank=4, lora_alpha=8, seed=1, device=torch.device("cpu"),
               grad_ckpt="off", micro_batch_tokens=4096, dist=Dist(torch.device("cpu")), decode=kind)
    if kind == "static":
        e.decoder.use_graphs = True
    return e

def ask(e, texts, seed):
    done = {}
    reqs = [{"id": i, "messages": [{"role": "user", "content": t}], "sampling": {"temperature": 1.0, "topP": 1.0, "maxTokens": 10, "stop": [], "seed": seed + i, "topLogprobs": 0}} for i, t in enumerate(texts)]
    e.generate(reqs, lambda i, c: None, lambda i, r: done.__setitem__(i, r), lambda i: False)
    return [[done[i]["responseTokens"], done[i]["logprobs"]] for i in range(len(texts))]

batch = [{"promptTokens": [257, 104, 260, 258], "responseTokens": [111, 107], "oldLogprobs": [-5.6, -5.6], "advantages": [1.0, 1.0]}]
result = {}
for kind in ("growing", "static"):
    e = engine(kind)
    e.train_step(batch, {"lr": 1e-1, "clipLow": 0.2, "clipHigh": 0.28, "klCoef": 0.0})
    folder = tempfile.mkdtemp()
    e.save_adapter(folder)  # served below, after graphs of the base model were made
    replies = ask(e, ["hi", "hello there", "a much longer prompt than the others"], 0)
    replies += ask(e, ["second batch", "same shape"], 10)  # the kept shape and its graph, new prompts
    e.load_adapter(folder, "v1")  # a graph of the base model would give the base model's replies
    replies += ask(e, ["after the swap", "and again"], 20)
    result[kind] = {"replies": replies, "counts": e.stats()["decodeCounts"]}
print(json.dumps(result))`, '');
  const r = JSON.parse(out.toString()) as Record<'growing' | 'static', { replies: [number[], number[]][]; counts: Record<string, number> }>;
  assert.equal(r.static.replies.length, 7);
  r.growing.replies.forEach(([tokens, logprobs], i) => {
    const [sTokens, sLogprobs] = r.static.replies[i]!;
    assert.deepEqual(sTokens, tokens, `reply ${i}: the same tokens`);
    assert.ok(close(sLogprobs, logprobs, 1e-5), `reply ${i}: logprobs ${sLogprobs} vs ${logprobs}`);
  });
  // Two captures (before and after the swap; the second batch reused the first shape), every step replayed.
  assert.equal(r.static.counts.captures, 2);
  assert.ok(r.static.counts.graphSteps >= 20);
  assert.equal(r.static.counts.staticSteps, 0);
});

test('a capture that fails for memory leaves graphs on for later; any other failure turns to a growing cache for good', { skip }, () => {
  const out = python(`import json, torch
import decode
from engine import Dist, Engine
from models import load_model

def capture_failing(error):
    def capture(shape):
        raise error
    return capture

def hidden_oom():
    # As torch.cuda.graph's exit reports it: the capture's error, raised over the allocation failure.
    try:
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (fake)")
        except torch.cuda.OutOfMemoryError:
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")
    except RuntimeError as err:
        return err

e = Engine(load_model("tiny-test", torch.device("cpu"), torch.float32), lora_rank=4, lora_alpha=8, seed=1, device=torch.device("cpu"),
           grad_ckpt="off", micro_batch_tokens=4096, dist=Dist(torch.device("cpu")), decode="static")
e.decoder.use_graphs = True  # FAKE failures below: the CPU has no CUDA graphs to fail
req = [{"id": 0, "messages": [{"role": "user", "content": "hi"}], "sampling": {"temperature": 0, "topP": 1, "maxTokens": 6, "stop": [], "topLogprobs": 0}}]
def ask():
    done = {}
    e.generate([dict(r) for r in req], lambda i, c: None, lambda i, r: done.__setitem__(i, r), lambda i: False)
    return done[0]["responseTokens"]
seen = {}
decode.Shape.capture = capture_failing(hidden_oom())
seen["oom"] = [ask(), e.decoder.use_graphs, e.decoder.kind(), len(e.decoder.shapes)]
decode.Shape.capture = capture_failing(RuntimeError("operation not permitted when stream is capturing"))
seen["other"] = [ask(), e.decoder.use_graphs, e.decoder.kind(), len(e.decoder.shapes)]
seen["after"] = [ask(), e.decoder.counts]
print(json.dumps(seen))`, '');
  const r = JSON.parse(out.toString()) as { oom: [number[], boolean, string, number]; other: [number[], boolean, string, number]; after: [number[], Record<string, number>] };
  assert.ok(r.oom[0].length > 0);
  assert.deepEqual(r.oom.slice(1), [true, 'static cache, CUDA graphs', 0], 'out of memory: this batch grew its cache; graphs stay on');
  assert.deepEqual(r.other.slice(1), [false, 'growing cache (no CUDA graph could be captured)', 0]);
  assert.deepEqual(r.other[0], r.oom[0], 'greedy: the same reply either way');
  assert.deepEqual(r.after[0], r.oom[0]);
  assert.equal(r.after[1].grownBatches, 3);
  assert.equal(r.after[1].captures, 0);
});

test('grouped decode attention: one query per row against unrepeated K/V heads equals attention over repeated heads', { skip }, () => {
  const out = python(`import json, torch
from models import grouped_decode_attention
torch.manual_seed(0)
B, H, kv, S, hd = 3, 8, 2, 11, 16
q, k, v = torch.randn(B, H, 1, hd), torch.randn(B, kv, S, hd), torch.randn(B, kv, S, hd)
seen = torch.rand(B, 1, 1, S + 4) > 0.3  # a longer mask, as transformers may pass; the slot itself always seen
seen[:, :, :, S - 1] = True
additive = torch.zeros(seen.shape).masked_fill(~seen, torch.finfo(torch.float32).min)
fallbacks = []
attention = grouped_decode_attention(lambda *args, **kwargs: fallbacks.append(args[1].shape) or ("fallback", None))

def reference(mask):
    # What sdpa does after transformers' repeat_kv: head h reads K/V head h // (H // kv).
    kr, vr = k.repeat_interleave(H // kv, 1), v.repeat_interleave(H // kv, 1)
    scores = q @ kr.transpose(-1, -2) * 0.25 + mask[:, :, :, :S]
    return (scores.softmax(-1) @ vr).transpose(1, 2)  # [B, 1, H, hd]

gaps = [(attention(None, q, k, v, additive, scaling=0.25)[0] - reference(additive)).abs().max().item()]
bool_mask = torch.zeros(seen.shape).masked_fill(~seen, float("-inf"))
gaps.append((attention(None, q, k, v, seen, scaling=0.25)[0] - reference(bool_mask)).abs().max().item())
# Not its case: several queries (prefill), no mask, or as many K/V heads as query heads.
attention(None, torch.randn(B, H, 4, hd), k, v, additive)
attention(None, q, k, v, None)
attention(None, q, torch.randn(B, H, S, hd), torch.randn(B, H, S, hd), additive)
print(json.dumps({"gaps": gaps, "fallbacks": len(fallbacks)}))`, '');
  const r = JSON.parse(out.toString()) as { gaps: number[]; fallbacks: number };
  assert.ok(r.gaps.every((g) => g < 1e-5), `gaps ${r.gaps}`);
  assert.equal(r.fallbacks, 3);
});

test('generate: streamed, batched, and its logprobs equal score of the same tokens', { skip }, async () => {
  const chunks: GenerateChunk[] = [];
  const prompts = ['Say hello.', 'A much longer prompt, so the batch needs left padding: ' + 'la '.repeat(30), 'Short'];
  // Sent together, these run as one left-padded batch.
  const results = await Promise.all(prompts.map((p, i) => backend.generate({ messages: chat(p), sampling: sampling({ seed: i }) }, i === 0 ? (c) => chunks.push(c) : undefined)));
  for (const [i, r] of results.entries()) {
    assert.ok(r.responseTokens.length > 0);
    assert.equal(r.weightVersion, 'base');
    assert.deepEqual(r.promptTokens, await backend.encodeChat(chat(prompts[i])));
    const scored = await backend.score(r.promptTokens, r.responseTokens);
    assert.ok(close(scored, r.logprobs, 1e-4), `prompt ${i}: generate ${r.logprobs} vs score ${scored}`);
    assert.ok(close(await backend.score(r.promptTokens, r.responseTokens, { reference: true }), scored, 0), 'no adapter yet: reference = served');
  }
  assert.equal(chunks.map((c) => c.text).join(''), results[0].text);
  assert.deepEqual(chunks.flatMap((c) => c.tokens.map((t) => t.token)), results[0].responseTokens);
  const greedy = await backend.generate({ messages: chat('x'), sampling: sampling({ temperature: 0, maxTokens: 5, topLogprobs: 3 }) });
  for (const t of greedy.tokens) assert.equal(t.top![0].token, t.token, 'greedy picks the top token');
});

test('an aborted generate rejects and the worker keeps serving', { skip }, async () => {
  const ac = new AbortController();
  const pending = backend.generate({ messages: chat('long'), sampling: sampling({ maxTokens: 400, temperature: 1 }), signal: ac.signal }, () => ac.abort());
  await assert.rejects(pending);
  const r = await backend.generate({ messages: chat('after'), sampling: sampling({ maxTokens: 3 }) });
  assert.ok(r.responseTokens.length > 0);
});

let served: { prompt: number[]; response: number[]; logprobs: number[] };
test('training with a positive advantage raises the logprob; save -> load gives identical logprobs', { skip }, async () => {
  const r = await backend.generate({ messages: chat('Train on me.'), sampling: sampling({ maxTokens: 16 }) });
  const batch = [{ promptTokens: r.promptTokens, responseTokens: r.responseTokens, oldLogprobs: r.logprobs, advantages: r.logprobs.map(() => 1) }];
  for (let step = 0; step < 4; step++) {
    const m = await backend.trainStep(batch, { lr: 1e-2, clipLow: 0.2, clipHigh: 0.28, klCoef: 0.01 });
    assert.equal(m.tokens, r.responseTokens.length);
    assert.ok(Number.isFinite(m.loss) && m.gradNorm > 0);
  }
  const before = await backend.score(r.promptTokens, r.responseTokens);
  assert.ok(close(before, r.logprobs, 1e-4), 'training does not touch the served weights');
  const v1 = join(dir, 'v1');
  await backend.saveAdapter(v1);
  await backend.loadAdapter(v1, 'v1');
  assert.equal(backend.currentVersion(), 'v1');
  const afterTrain = await backend.score(r.promptTokens, r.responseTokens);
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  assert.ok(sum(afterTrain) > sum(before) + 0.1, `logprob ${sum(before)} -> ${sum(afterTrain)}`);
  assert.ok(close(await backend.score(r.promptTokens, r.responseTokens, { reference: true }), before, 1e-6), 'reference stays the base');
  // Round trip through the training copy: load v1 for training, save it again, serve that.
  await backend.loadTrainingAdapter(v1);
  const v1again = join(dir, 'v1-again');
  await backend.saveAdapter(v1again);
  await backend.loadAdapter(v1again, 'v1-again');
  assert.deepEqual(await backend.score(r.promptTokens, r.responseTokens), afterTrain);
  await backend.loadAdapter(v1, 'v1');
  served = { prompt: r.promptTokens, response: r.responseTokens, logprobs: afterTrain };
});

test('a truncated adapter is refused with a clear error and the current one keeps serving', { skip }, async () => {
  const bad = join(dir, 'bad');
  await cp(join(dir, 'v1'), bad, { recursive: true });
  await truncate(join(bad, 'adapter_model.safetensors'), 300);
  await assert.rejects(backend.loadAdapter(bad, 'bad'), /invalid safetensors file .*adapter_model\.safetensors: .*truncated/);
  assert.equal(backend.currentVersion(), 'v1');
  assert.deepEqual(await backend.score(served.prompt, served.response), served.logprobs);
});

test('a killed worker is restarted with its adapter, and calls fail fast while it is down', { skip }, async () => {
  const pid = backend.pid!;
  process.kill(pid, 'SIGKILL');
  await assert.rejects(backend.score(served.prompt, served.response), TorchWorkerDownError);
  await backend.whenUp();
  assert.notEqual(backend.pid, pid);
  assert.equal(backend.currentVersion(), 'v1');
  assert.ok(close(await backend.score(served.prompt, served.response), served.logprobs, 1e-6));
});

test('a bad --model fails the start with a clear message', { skip }, async () => {
  await assert.rejects(TorchBackend.create({ python: PYTHON, model: '/nonexistent/model' }), /model directory \/nonexistent\/model does not exist/);
  await assert.rejects(TorchBackend.create({ python: PYTHON, model: 'no_such_module:factory' }), /model factory 'no_such_module:factory' not found/);
  // An HF id: without transformers (as on CI) the message says how to install it.
  await assert.rejects(TorchBackend.create({ python: PYTHON, model: 'Qwen/Qwen3-0.6B-nonexistent' }), /transformers is not installed for \/usr\/bin\/python3.*pip install transformers|could not load model/);
  await assert.rejects(TorchBackend.create({ python: '/nonexistent/python', model: 'tiny-test' }), /could not start \/nonexistent\/python/);
});

test('the GPU check runs its whole path on the CPU (--dry-run), also as two ranks, and names a model it does not know', { skip }, () => {
  const script = join(dirname(WORKER_PATH), 'gpu_check.py');
  const run = spawnSync(PYTHON, ['-B', script, '--dry-run', '--python', PYTHON], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(run.status, 0, run.stderr);
  const [header, , row] = run.stdout.trim().split('\n');
  assert.match(header!, /^\| model \| train tokens\/s \| MFU \(6N\) \| MFU \(4N, LoRA\) \|/);
  // Measured, and save -> serve -> reload gave the same logprobs (the script asserts it).
  assert.match(row!, /^\| gpu_check:tiny \| [\d,]+ \| n\/a \(CPU\) \| n\/a \(CPU\) \| [\d.]+ GiB RSS \| [\d,]+ \| growing cache \| \d[\d,]* ms \| off \| /);
  const bad = spawnSync(PYTHON, ['-B', script, '--models', '70b'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown model '70b'; choose from 0.6b, 8b, toy, tiny-qwen3/);
  // --gpus 2: the worker under torchrun as the daemon starts it, here as two CPU ranks.
  const ranks = spawnSync(PYTHON, ['-B', script, '--dry-run', '--gpus', '2', '--python', PYTHON], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(ranks.status, 0, ranks.stderr);
  assert.match(ranks.stdout.trim().split('\n')[2]!, /^\| gpu_check:tiny, 2 ranks \((FSDP|unsharded)\) \| [\d,]+ \| .* \| growing cache \| \d[\d,]* ms \| on \| /);
  assert.doesNotMatch(ranks.stderr, /ChildFailedError|terminate called/, 'every rank exits cleanly');
});
