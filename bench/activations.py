"""Activation memory of the torch worker's training step on a Qwen3-8B-shaped model, measured on the CPU.

What a step keeps for its backward pass (without checkpointing) decides whether an 8B step fits
beside serving on one GPU. Its size does not depend on the device, so it is measured here: the
worker's own training forward (LoRA r=16 on the "train" slot, bf16) runs on a random model of
Qwen3-8B's layer shape with 1 and with 2 decoder layers, and a saved-tensors hook adds up the
distinct storages autograd keeps (parameters excluded); the difference is one layer's share.
Attention is the CPU's SDPA kernel, which keeps its output and log-sum-exp as CUDA's do.

    CLAWRL_PYTHON=<python with torch + transformers> ; $CLAWRL_PYTHON bench/activations.py [--tokens 2048]
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon", "backends", "torch"))
import gpu_check  # noqa: E402 -- after the path above
from engine import Dist, Engine  # noqa: E402
from models import Loaded  # noqa: E402

GIB = 2**30


def saved_bytes(layers, tokens, response):
    """Bytes autograd keeps for one training forward of `tokens` tokens (`response` of them scored)."""
    net, tokenizer = gpu_check.qwen3("8b", "cpu", torch.bfloat16, num_hidden_layers=layers)
    cpu = torch.device("cpu")
    engine = Engine(Loaded(net, tokenizer, "probe", 40960), lora_rank=16, lora_alpha=32, seed=0, device=cpu,
                    grad_ckpt="off", micro_batch_tokens=tokens, dist=Dist(cpu))
    params = {p.untyped_storage().data_ptr() for p in engine.policy.parameters()}
    kept = {}  # storage address -> bytes: a tensor saved by several ops counts once

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    prompt = [1 + i % 250 for i in range(tokens - response)]
    reply = [1 + i % 250 for i in range(response)]
    with engine.mode("train", training=True), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        engine.logprobs([(prompt, reply)])
    return sum(kept.values())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=2048, help="sequence length (gpu_check trains on 2048)")
    p.add_argument("--response", type=int, default=1920, help="scored tokens among them (gpu_check: 1920)")
    args = p.parse_args()
    started = time.perf_counter()
    one, two = (saved_bytes(n, args.tokens, args.response) for n in (1, 2))
    per_layer = two - one
    per_token_layer = per_layer / args.tokens
    print(f"kept for backward: {one / 2**20:.0f} MiB with 1 layer, {two / 2**20:.0f} MiB with 2 "
          f"({args.tokens} tokens, {time.perf_counter() - started:.0f} s)")
    print(f"per token per layer: {per_token_layer / 1024:.1f} KiB; outside the layers: {(one - per_layer) / 2**20:.0f} MiB")
    layers, microbatch = gpu_check.QWEN3["8b"]["num_hidden_layers"], 4096
    print(f"Qwen3-8B ({layers} layers), a microbatch of {microbatch} tokens (the worker's default): "
          f"{per_token_layer * layers * microbatch / GIB:.1f} GiB of activations")


if __name__ == "__main__":
    main()
