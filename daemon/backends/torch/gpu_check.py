"""GPU check of the torch worker: random-initialised Qwen3-shaped models (built from configs, no
download), driven through the worker's own protocol: generate -> score -> train -> save -> reload.
Prints a markdown table shaped like DESIGN.md's baseline table ("The GPU baseline to beat").

    python gpu_check.py                 # both models on the GPU (~5 min on one H100)
    python gpu_check.py --models 0.6b
    python gpu_check.py --dry-run       # the same path on the CPU, small sizes, the torch-only test model
    python gpu_check.py --dry-run --models tiny-qwen3   # ... a tiny Qwen3 through transformers
    python gpu_check.py --gpus 2        # the worker under torchrun, sharded with FSDP (--dry-run: CPU ranks)

Workloads, as the baseline's: generation of batch 16 (16 concurrent requests, batched by the
worker), 512-token prompts, 128 new tokens; training batch 4 x 2048 tokens (128 prompt + 1920
response tokens each; one example 256 tokens shorter, so padding and masks are exercised),
LoRA r=16 on q/k/v/o/gate/up/down, AdamW, bf16; activations are kept unless they do not fit
(the worker's --grad-ckpt auto), and the table says which.

MFU counts N = all base parameters (embeddings included) and no attention FLOPs: 6N per trained
token for a full forward + backward, 4N for LoRA (the frozen base needs no weight gradients:
forward 2N + input-gradient 2N); 4N is the work LoRA training needs, 6N is the baseline's
counting. Recomputed activations (checkpointing) count in neither. Both against 989 TFLOPS, the
H100's dense bf16 peak, times the GPUs. Tokens per step count prompt and response tokens (all of them go
through the model; the worker applies the vocabulary head only to response positions).
"""

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from wire import read_frame, write_frame

HERE = os.path.dirname(os.path.abspath(__file__))
PEAK_FLOPS = 989e12  # H100 SXM, dense bf16
QWEN3 = {
    # Qwen3-0.6B and Qwen3-8B shapes (their config.json), random weights.
    "0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
    # The transformers path at CPU size, for --dry-run.
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, tie_word_embeddings=True),
}
VOCAB = 151936


def qwen3(size, device, dtype, **overrides):
    """A factory for the worker's --model module:factory: (net, tokenizer). The byte-level toy
    tokenizer stands in for Qwen's (no download); its ids are a subset of the model's vocabulary.
    `overrides` change the config (bench/activations.py: fewer layers)."""
    import torch
    from models import ToyTokenizer, dtype_kwarg, import_transformers

    transformers = import_transformers()
    config = transformers.Qwen3Config(vocab_size=VOCAB, max_position_embeddings=40960, rope_theta=1e6, **{**QWEN3[size], **overrides})
    torch.manual_seed(0)  # the same random model in every run and process
    with torch.device(device):
        net = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", **dtype_kwarg(transformers, dtype))
    return net, ToyTokenizer(vocab_size=VOCAB)


def tiny(device, dtype):
    """The test model through the same factory path, for --dry-run."""
    from models import TinyConfig, TinyLM, ToyTokenizer

    return TinyLM(TinyConfig()).to(device=device, dtype=dtype), ToyTokenizer()


def qwen3_0_6b(device, dtype):
    return qwen3("0.6b", device, dtype)


def qwen3_8b(device, dtype):
    return qwen3("8b", device, dtype)


def qwen3_tiny(device, dtype):
    return qwen3("tiny", device, dtype)


class Client:
    """The daemon's side of the protocol, minimal: send requests, wait for their final replies."""

    def __init__(self, python, model, extra, gpus):
        # As the daemon starts it (daemon/backends/torch/index.ts), torchrun's flags included.
        torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "--redirects", "9:0", "--tee", "9:0"]
        cmd = [python, "-B", *(torchrun if gpus > 1 else []), os.path.join(HERE, "worker.py"),
               "--model", model, "--lora-rank", "16", "--lora-alpha", "32", *extra]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=HERE)
        first = read_frame(self.proc.stdout)
        if first is None or "fatal" in first:
            raise SystemExit(f"worker did not start: {first and first['fatal']}")
        self.info = first["ready"]
        self.next_id = 0
        self.replies = {}
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while (msg := read_frame(self.proc.stdout)) is not None:
            if "chunk" in msg:
                continue
            with self.cond:
                self.replies[msg["id"]] = msg
                self.cond.notify_all()

    def send(self, op, **args):
        self.next_id += 1
        write_frame(self.proc.stdin, {"id": self.next_id, "op": op, **args})
        return self.next_id

    def wait(self, req_id):
        with self.cond:
            self.cond.wait_for(lambda: req_id in self.replies)
            msg = self.replies.pop(req_id)
        if not msg["ok"]:
            raise SystemExit(f"worker error: {msg['error']}")
        return msg["result"]

    def call(self, op, **args):
        return self.wait(self.send(op, **args))

    def close(self):
        """Ends the worker (it exits when stdin closes), killing it if it does not: the next model needs the memory."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def check(python, model, extra, sizes, gpus):
    """Runs one model through the whole path; returns its table row."""
    started = time.perf_counter()
    w = Client(python, model, extra, gpus)
    try:
        return measure(w, model, sizes, started)
    finally:
        w.close()


def measure(w, model, sizes, started):
    gen_batch, prompt_len, new_tokens, train_batch, seq, steps = sizes
    print(f"# {model}: loaded in {time.perf_counter() - started:.0f} s, {w.info['params'] / 1e9:.2f} B params, "
          f"{w.info['device']} {w.info['dtype']}", file=sys.stderr)
    rng = random.Random(0)
    vocab_bytes = lambda n: "".join(chr(rng.randrange(97, 123)) for _ in range(n))
    # <|user|> content <|end|> <|assistant|>: three marker tokens around one byte per letter.
    messages = lambda n=prompt_len: [{"role": "user", "content": vocab_bytes(n - 3)}]
    sampling = {"temperature": 1.0, "topP": 1.0, "maxTokens": new_tokens, "stop": [], "topLogprobs": 0}

    # Prompts of four lengths in one batch: left padding and its mask, checked against score.
    shorter = [w.send("generate", messages=messages(prompt_len - 8 * i), sampling={**sampling, "maxTokens": 8, "seed": i}) for i in range(4)]
    for r in [w.wait(i) for i in shorter]:
        s = w.call("score", prompt=r["promptTokens"], response=r["responseTokens"], reference=False)
        gap = max(abs(a - b) for a, b in zip(s, r["logprobs"]))
        assert all(map(math.isfinite, r["logprobs"])) and gap < 0.1, f"left-padded generate disagrees with score by {gap}"

    # Generation: a warm-up batch of the same shape (a static cache and its CUDA graph are made
    # for it), then gen_batch requests sent together (the worker batches them).
    for i in [w.send("generate", messages=messages(), sampling={**sampling, "maxTokens": 2}) for _ in range(gen_batch)]:
        w.wait(i)
    counts_before = w.call("stats", resetPeak=True)["decodeCounts"]
    t0 = time.perf_counter()
    ids = [w.send("generate", messages=messages(), sampling={**sampling, "seed": i}) for i in range(gen_batch)]
    results = [w.wait(i) for i in ids]
    gen_seconds = time.perf_counter() - t0
    gen_tokens = sum(len(r["responseTokens"]) for r in results)
    gen_stats = w.call("stats", resetPeak=True)
    gen_peak = gen_stats["memory"].get("peakAllocatedBytes", 0)
    timed = {k: v - counts_before.get(k, 0) for k, v in gen_stats["decodeCounts"].items()}
    print(f"# {model}: timed generation: {timed or 'growing cache'}", file=sys.stderr)
    first = results[0]
    assert len(first["promptTokens"]) == prompt_len, len(first["promptTokens"])

    # Score agrees with generate (exactly on CPU fp32; bf16 rounding on GPU differs by path).
    scored = w.call("score", prompt=first["promptTokens"], response=first["responseTokens"], reference=False)
    score_gap = max(abs(a - b) for a, b in zip(scored, first["logprobs"]))

    # Training: old logprobs from the reference (ratio ~1 at the first step), random advantages.
    batch = []
    for i in range(train_batch):
        prompt = [rng.randrange(256) for _ in range(128)]
        response = [rng.randrange(w.info["vocab"]) for _ in range(seq - 128 - (seq // 8 if i == train_batch - 1 else 0))]
        old = w.call("score", prompt=prompt, response=response, reference=True)
        batch.append({"promptTokens": prompt, "responseTokens": response, "oldLogprobs": old,
                      "advantages": [rng.choice((-1.0, 1.0))] * len(response)})
    opts = {"lr": 1e-4, "clipLow": 0.2, "clipHigh": 0.28, "klCoef": 0.0}
    w.call("trainStep", batch=batch, opts=opts)  # warm-up (allocator, kernels)
    w.call("stats", resetPeak=True)
    step_metrics = [w.call("trainStep", batch=batch, opts=opts) for _ in range(steps)]
    step_ms, step_losses = [m["durationMs"] for m in step_metrics], [m["loss"] for m in step_metrics]
    stats = w.call("stats")
    train_peak = stats["memory"].get("peakAllocatedBytes", 0)
    step_s = sum(step_ms) / len(step_ms) / 1000
    train_tps = sum(len(ex["promptTokens"]) + len(ex["responseTokens"]) for ex in batch) / step_s
    assert all(math.isfinite(m) for m in step_losses), f"non-finite training loss: {step_losses}"

    # Save -> serve -> reload for training -> save -> serve: the same logprobs both times.
    folder = tempfile.mkdtemp(prefix="clawrl-gpu-check-")
    try:
        w.call("saveAdapter", dir=os.path.join(folder, "v1"))
        w.call("loadAdapter", dir=os.path.join(folder, "v1"), version="v1")
        s1 = w.call("score", prompt=first["promptTokens"], response=first["responseTokens"], reference=False)
        w.call("loadTrainingAdapter", dir=os.path.join(folder, "v1"))
        w.call("saveAdapter", dir=os.path.join(folder, "v2"))
        w.call("loadAdapter", dir=os.path.join(folder, "v2"), version="v2")
        s2 = w.call("score", prompt=first["promptTokens"], response=first["responseTokens"], reference=False)
        assert s1 == s2, "save -> reload changed the adapter"
        assert s1 != scored, "training did not change the served adapter"
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    n, world = stats["params"], stats["worldSize"]
    on_gpu = stats["device"].startswith("cuda")
    mfu = lambda flops_per_token: f"{100 * flops_per_token * n * train_tps / (PEAK_FLOPS * world):.1f} %" if on_gpu else "n/a (CPU)"
    # Rank 0's memory: with FSDP every rank holds about as much.
    gib = lambda b: f"{b / 2**30:.1f} GiB" if on_gpu else f"{stats['memory']['rssBytes'] / 2**30:.1f} GiB RSS"
    print(f"# {model}: done in {time.perf_counter() - started:.0f} s; gen/score max |Δlogprob| {score_gap:.2e}", file=sys.stderr)
    label = model if world == 1 else f"{model}, {world} ranks ({'FSDP' if stats['sharded'] else 'unsharded'})"
    return (f"| {label} | {train_tps:,.0f} | {mfu(6)} | {mfu(4)} | {gib(max(gen_peak, train_peak))} | "
            f"{gen_tokens / gen_seconds:,.0f} | {stats['decode']} | {step_s * 1000:,.0f} ms | {'on' if stats['gradCheckpointing'] else 'off'} | {score_gap:.1e} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="comma-separated: 0.6b, 8b (default both); with --dry-run: toy (default), tiny-qwen3")
    p.add_argument("--dry-run", action="store_true", help="CPU, small sizes: checks the path, not the speed")
    p.add_argument("--python", default=sys.executable, help="interpreter for the worker")
    p.add_argument("--gpus", type=int, default=1, help="ranks: more than 1 runs the worker under torchrun with FSDP, as the daemon's --gpus (with --dry-run: CPU processes)")
    p.add_argument("--decode", default="auto", choices=["auto", "static", "growing"], help="the worker's --decode (auto: static with CUDA graphs on a GPU)")
    args = p.parse_args()
    factories = {"0.6b": "qwen3_0_6b", "8b": "qwen3_8b", "toy": "tiny", "tiny-qwen3": "qwen3_tiny"}
    names = (args.models or ("toy" if args.dry_run else "0.6b,8b")).split(",")
    unknown = [n for n in names if n not in factories]
    if unknown:
        p.error(f"unknown model {unknown[0]!r}; choose from {', '.join(factories)}")
    if args.gpus < 1:
        p.error(f"--gpus must be at least 1, got {args.gpus}")
    extra, sizes = (["--device", "cpu"], (4, 64, 16, 2, 256, 2)) if args.dry_run else ([], (16, 512, 128, 4, 2048, 3))
    print("| model | train tokens/s | MFU (6N) | MFU (4N, LoRA) | peak memory | generate tokens/s (b16) | decoding | step time | activations recomputed | gen/score max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    failed = False
    for name in names:
        model = f"gpu_check:{factories[name]}"
        # Each row as soon as it is measured: a model that fails (out of memory, say) keeps the
        # others'. A failure with static decoding (never yet run on a GPU) is tried once more with
        # a growing cache, so one GPU session still measures training.
        for decode in [args.decode] + (["growing"] if args.decode != "growing" else []):
            try:
                print(check(args.python, model, extra + ["--decode", decode], sizes, args.gpus), flush=True)
                break
            except (Exception, SystemExit) as err:  # noqa: BLE001 -- reported, then the next try runs
                failed = True
                print(f"| {model} | failed with --decode {decode}: {str(err).splitlines()[0] if str(err) else type(err).__name__} |", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
