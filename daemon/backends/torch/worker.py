"""clawrl's torch worker: serves and trains one model, started and supervised by the daemon
(daemon/backends/torch/index.ts). Needs torch; transformers only for real models.

Protocol (wire.py frames: 4-byte big-endian length + a msgpack map) on stdin/stdout:
  worker -> daemon, once:  {ready: {...stats}}  or  {fatal: message}  (then exit)
  daemon -> worker:        {id, op, ...args}, ops:
    encodeChat {messages, tools}             -> {tokens, truncated}
    generate   {messages, tools, sampling}   -> {promptTokens, promptTruncated, responseTokens,
                                                 logprobs, tokens, text, finishReason, weightVersion}
                                                streamed before it as {id, chunk: {text, tokens}}
    cancel     {target}                      (no reply; the target's generate fails "cancelled")
    score      {prompt, response, reference} -> [logprob]
    trainStep  {batch, opts}                 -> TrainMetrics
    saveAdapter {dir} / loadAdapter {dir, version} / loadTrainingAdapter {dir}  -> null
    stats      {resetPeak?}                  -> {memory, generate, train, ...}
  worker -> daemon replies:  {id, ok: true, result}  or  {id, ok: false, error}
The names and shapes are those of daemon/backends/types.ts. Requests run in arrival order, so an
adapter swap lands between two generations; consecutive generate requests run as one batch, and
generate requests waiting during a multi-microbatch training step are answered between its
microbatches. The worker exits when stdin closes.

Under torchrun (--gpus N in the daemon) every rank runs this script; rank 0 talks to the daemon
and the others follow it (engine.Dist): one GPU each with NCCL, or with --device cpu processes on
gloo (how the tests run it). Stray prints from any library go to stderr, never into
the frames.
"""

import argparse
import collections
import os
import sys
import threading
import traceback

from wire import read_frame, write_frame

MAX_BATCH = 64


def describe(err, op):
    """A clear one-line message for the daemon, with a hint where one helps."""
    text = str(err)
    if "out of memory" in text.lower():
        return (f"{op}: GPU out of memory ({text.splitlines()[0]}); hint: fewer tokens per step "
                f"(--micro-batch-tokens, a smaller training batch, shorter contexts) or more GPUs (--gpus)")
    if isinstance(err, (ValueError, KeyError, TypeError)):
        return f"{op}: {text}" if isinstance(err, ValueError) else f"{op}: bad request ({type(err).__name__}: {text})"
    return f"{op}: {type(err).__name__}: {text}"


def run_op(engine, req, between=None):
    """Runs one non-generate request on the engine; returns its result."""
    op = req["op"]
    if op == "encodeChat":
        tokens, truncated = engine.encode_chat(req["messages"], req.get("tools"))
        return {"tokens": tokens, "truncated": truncated}
    if op == "score":
        return engine.score(req["prompt"], req["response"], bool(req.get("reference")))
    if op == "trainStep":
        try:
            return engine.train_step(req["batch"], req["opts"], between)
        except BaseException:
            engine.forget_gradients()
            raise
    if op == "saveAdapter":
        return engine.save_adapter(req["dir"])
    if op == "loadAdapter":
        return engine.load_adapter(req["dir"], req["version"])
    if op == "loadTrainingAdapter":
        return engine.load_training_adapter(req["dir"])
    if op == "stats":
        return engine.stats(bool(req.get("resetPeak")))
    raise ValueError(f"unknown op {op!r}")


class Server:
    """Rank 0: reads requests on a thread (so cancels and new requests arrive while the model runs)
    and runs them in order on the main thread, the only one that writes frames."""

    def __init__(self, engine, inp, out):
        self.engine, self.inp, self.out = engine, inp, out
        self.queue = collections.deque()
        self.cond = threading.Condition()
        self.cancelled = set()
        self.closed = False

    def read_loop(self):
        try:
            while (msg := read_frame(self.inp)) is not None:
                with self.cond:
                    if msg.get("op") == "cancel":
                        self.cancelled.add(msg.get("target"))
                    else:
                        self.queue.append(msg)
                        self.cond.notify()
        except ValueError as err:
            print(f"torch worker: bad frame from the daemon, stopping: {err}", file=sys.stderr)
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify()

    def take(self, block, generate_only=False):
        """The next unit of work: the run of generate requests at the head of the queue (one batch),
        or one other request. None when nothing waits (block=False) or the daemon hung up."""
        with self.cond:
            while block and not self.queue and not self.closed:
                self.cond.wait()
            if not self.queue or (generate_only and self.queue[0]["op"] != "generate"):
                return None
            if self.queue[0]["op"] != "generate":
                return [self.queue.popleft()]
            batch = []
            while self.queue and self.queue[0]["op"] == "generate" and len(batch) < MAX_BATCH:
                batch.append(self.queue.popleft())
            return batch

    def run(self):
        threading.Thread(target=self.read_loop, daemon=True).start()
        while (work := self.take(block=True)) is not None:
            self.dispatch(work)

    def serve_waiting_generation(self):
        """Between training microbatches: answer generate requests waiting at the head of the queue."""
        work = self.take(block=False, generate_only=True)
        if work:
            self.dispatch(work)

    def reply(self, msg):
        write_frame(self.out, msg)

    def is_cancelled(self, req_id):
        with self.cond:
            return req_id in self.cancelled

    def dispatch(self, work):
        self.engine.dist.share(work)
        if work[0]["op"] == "generate":
            self.generate(work)
            return
        req = work[0]
        try:
            between = self.serve_waiting_generation if self.engine.dist.world == 1 else None
            self.reply({"id": req["id"], "ok": True, "result": run_op(self.engine, req, between)})
        except Exception as err:  # noqa: BLE001 -- every failure goes back to the daemon as a message
            if not isinstance(err, ValueError):
                traceback.print_exc()
            self.reply({"id": req.get("id"), "ok": False, "error": describe(err, req.get("op"))})

    def generate(self, reqs):
        done = set()

        def on_done(req_id, result):
            done.add(req_id)
            with self.cond:
                self.cancelled.discard(req_id)
            if isinstance(result, Exception):
                self.reply({"id": req_id, "ok": False, "error": describe(result, "generate")})
            else:
                self.reply({"id": req_id, "ok": True, "result": result})

        try:
            self.engine.generate(reqs, lambda req_id, chunk: self.reply({"id": req_id, "chunk": chunk}), on_done, self.is_cancelled)
        except Exception as err:  # noqa: BLE001 -- the whole batch failed (e.g. out of memory)
            traceback.print_exc()
            for req in reqs:
                if req["id"] not in done:
                    on_done(req["id"], err)


def follow(engine):
    """Ranks > 0: run whatever rank 0 runs, until it shares None."""
    ignore = lambda *args: None
    while (work := engine.dist.share(None)) is not None:
        try:
            if work[0]["op"] == "generate":
                engine.generate(work, ignore, ignore, lambda req_id: False)
            else:
                run_op(engine, work[0])
        except Exception:  # noqa: BLE001 -- rank 0 reports the same failure to the daemon
            traceback.print_exc()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="tiny-test, module:factory, a local model directory or a Hugging Face id")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"], help="auto: bfloat16 on GPU, float32 on CPU")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32)
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh training adapter")
    p.add_argument("--context", type=int, default=None, help="cap on prompt + reply tokens (default: the model's)")
    p.add_argument("--micro-batch-tokens", type=int, default=4096, help="padded tokens per forward/backward in a training step")
    p.add_argument("--decode", default="auto", choices=["auto", "static", "growing"],
                   help="KV cache of generation: static (fixed length; CUDA graphs on one GPU) or growing; auto: static on CUDA")
    p.add_argument("--grad-ckpt", default="auto", choices=["auto", "on", "off"],
                   help="recompute activations in the backward pass: auto keeps them until a step runs out of GPU memory")
    return p.parse_args()


def main():
    args = parse_args()
    # Frames get their own copy of stdout; fd 1 becomes stderr, so a print() in any library cannot
    # corrupt the frame stream.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    rank0 = os.environ.get("RANK", "0") == "0"

    def fatal(message):
        if rank0:
            write_frame(out, {"fatal": message})
        print(f"torch worker: {message}", file=sys.stderr)
        sys.exit(2)

    try:
        import torch
    except ImportError as err:
        fatal(f"torch is not installed for {sys.executable} ({err}): pip install torch, or point --python / CLAWRL_PYTHON "
              f"at an interpreter that has it (on Debian: apt-get install python3-torch, then /usr/bin/python3)")
    from engine import Dist, Engine
    from models import ModelLoadError, load_model

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.device == "auto" and not torch.cuda.is_available():
        fatal("--gpus N needs CUDA, and torch sees no GPU here (torch.cuda.is_available() is False); "
              "run with --gpus 1, or fix the CUDA install")
    try:
        dist = Dist(torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                                 "cpu" if args.device == "auto" else args.device))
        device = dist.device
        if device.type == "cuda" and hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
            # torch >= 2.11 tries cuDNN's attention first on Hopper; with attention masks (padded
            # batches) it has produced NaNs (pytorch#196678): flash and mem-efficient remain.
            torch.backends.cuda.enable_cudnn_sdp(False)
        dtype = getattr(torch, args.dtype) if args.dtype != "auto" else torch.bfloat16 if device.type == "cuda" else torch.float32
        loaded = load_model(args.model, device, dtype, args.context)
        engine = Engine(loaded, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, seed=args.seed, device=device,
                        grad_ckpt=args.grad_ckpt, decode=args.decode,
                        micro_batch_tokens=args.micro_batch_tokens, dist=dist)
    except ModelLoadError as err:
        fatal(str(err))
    except Exception as err:  # noqa: BLE001 -- whatever stops the start reaches the daemon as one message
        traceback.print_exc()
        fatal(describe(err, f"loading {args.model}"))

    if rank0:
        write_frame(out, {"ready": engine.stats()})
        Server(engine, sys.stdin.buffer, out).run()
        engine.dist.share(None)  # releases the followers
    else:
        follow(engine)
    engine.dist.close()
    if engine.dist.world > 1:
        # Under torch 2.x a rank sometimes aborts in interpreter shutdown (a C++ thread left
        # unjoined), which torchrun reports as a failure. Nothing is left to write: end here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
