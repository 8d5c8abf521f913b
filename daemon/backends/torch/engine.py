"""The worker's model work: generation, scoring, training steps, adapters and stats, on one model.

One process serves and trains. LoRA slots (lora.py) let one copy of the base weights run as the
served policy, the training policy, or the frozen reference. Under torchrun (world > 1) every rank
runs every operation on the same inputs, because FSDP's forward is a collective: rank 0 alone
talks to the daemon and shares each request and each sampled token with the other ranks (Dist).
On the CPU (tests) the ranks run on gloo: sharded with FSDP where torch is 2.x, else (torch 1.13,
whose FSDP needs CUDA: CI) with a whole model each, gradients averaged as FSDP averages them.
"""

import contextlib
import gc
import os
import sys
import time

import torch
import torch.distributed

from decode import GrowingDecoder, StaticDecoder
from lora import LoraPair, add_lora, read_adapter, reset_training, save_adapter
from models import Policy, static_cache_supported, use_grouped_decode_attention


class Cancelled(Exception):
    pass


class Dist:
    """torch.distributed glue for running under torchrun; with one process every method is the identity.

    `device` is the requested one; `self.device` is this rank's: GPU LOCAL_RANK (NCCL) or the CPU (gloo).
    """

    def __init__(self, device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if self.world > 1:
            if device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def share(self, obj):
        """Rank 0's `obj`, on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def share_tensor(self, t):
        if self.world > 1:
            torch.distributed.broadcast(t, src=0)
        return t

    def sum(self, values, device):
        """Element-wise sum of a list of floats over the ranks."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def close(self):
        """Ends this rank's part of the group (exiting with gloo's threads still up aborts the process)."""
        if self.world > 1:
            torch.distributed.destroy_process_group()

    def average(self, tensors):
        """Each tensor averaged over the ranks, in place (gloo has no AVG: a sum, then a division)."""
        for t in tensors:
            torch.distributed.all_reduce(t)
            t /= self.world


def policy_loss(logp, old_logp, adv, mask, clip_low, clip_high, kl_coef, ref_logp=None, weight=None):
    """The trainer loss of daemon/backends/loss.ts, in autograd (all tensors [N], float).

    `weight` normalises the sums (default Σ mask: the token-level mean). A training step passes the
    whole batch's Σ mask to each microbatch, so their losses and gradients add up to the batch's.
    Returns {loss (a tensor, differentiable in logp), clipFraction, meanRatio, kl} with the
    reported values as tensors of these sums / weight.
    """
    if kl_coef != 0 and ref_logp is None:
        raise ValueError("policy_loss: klCoef > 0 needs ref_logp")
    if weight is None:
        weight = mask.sum().item()
    if weight == 0:
        zero = logp.sum() * 0
        return {"loss": zero, "clipFraction": zero.detach(), "meanRatio": zero.detach(), "kl": zero.detach()}
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * adv
    # The clipped term is constant in logp (its gradient is 0 in loss.ts): detach it outright.
    clipped = ratio.detach().clamp(1 - clip_low, 1 + clip_high) * adv
    is_clipped = unclipped > clipped  # clipped strictly the min: gradient cut off
    loss_t = -torch.where(is_clipped, clipped, unclipped)
    kl = torch.zeros((), dtype=logp.dtype, device=logp.device)
    if ref_logp is not None:
        d = ref_logp - logp
        loss_t = loss_t + kl_coef * (torch.exp(d) - d - 1)  # k3 estimator of KL(π_θ‖π_ref)
        kl = (mask * -d).detach().sum() / weight
    return {
        "loss": (mask * loss_t).sum() / weight,
        "clipFraction": (mask * is_clipped).sum() / weight,
        "meanRatio": (mask * ratio).detach().sum() / weight,
        "kl": kl,
    }


class StreamDecoder:
    """Text of a growing token list, one piece per token; a piece that ends inside a multi-byte
    character waits for the rest (the pieces concatenate to decode(all tokens)). Decodes only a
    short window, so it costs O(1) per token with any tokenizer."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.ids = []
        self.prefix = 0  # window start: one already-shown token of context (word-initial spaces)
        self.read = 0  # tokens up to here are shown

    def push(self, token):
        self.ids.append(token)
        shown = self.tok.decode(self.ids[self.prefix:self.read])
        text = self.tok.decode(self.ids[self.prefix:])
        if text.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(shown):]

    def flush(self):
        """Whatever is held back (an incomplete character shows as U+FFFD)."""
        if self.read == len(self.ids):
            return ""
        shown = self.tok.decode(self.ids[self.prefix:self.read])
        text = self.tok.decode(self.ids[self.prefix:])
        self.prefix = self.read = len(self.ids)
        return text[len(shown):]


def stop_prefix_length(text, stops):
    """How much of the end of `text` could be the start of a stop string: held back from streaming."""
    return max((k for s in stops for k in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:k])), default=0)


class Row:
    """One request's reply as it is sampled: the same rules as the embedded backend's sample.ts.

    Stops at a turn-ending token (kept in the tokens, not shown in the text), a stop string (the
    text is cut before it), or `limit` tokens.
    """

    def __init__(self, req, prompt, truncated, tokenizer, limit, device):
        self.id = req["id"]
        self.sampling = req["sampling"]
        self.prompt, self.truncated = prompt, truncated
        self.tok = tokenizer
        self.limit = limit
        self.stops = [s for s in self.sampling.get("stop") or [] if s]
        self.decoder = StreamDecoder(tokenizer)
        self.tokens, self.logprobs, self.entries = [], [], []
        self.text, self.streamed = "", 0
        self.finish = None if limit > 0 else "length"
        self.generator = torch.Generator(device=device)
        seed = self.sampling.get("seed")
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def add(self, token, logprob, top):
        """Appends a sampled token; returns the chunk to stream ({text, tokens})."""
        ends = token in self.tok.stop_ids
        piece = self.decoder.flush() if ends else self.decoder.push(token)
        entry = {"token": token, "text": piece, "logprob": logprob}
        if top:
            entry["top"] = [{"token": t, "text": self.tok.decode([t]), "logprob": lp} for t, lp in top]
        self.tokens.append(token)
        self.logprobs.append(logprob)
        self.entries.append(entry)
        search_from = max(0, len(self.text) - max((len(s) for s in self.stops), default=0) + 1)
        self.text += piece
        cuts = [at for at in (self.text.find(s, search_from) for s in self.stops) if at >= 0]
        if cuts:
            self.text = self.text[:min(cuts)]
        if ends or cuts:
            self.finish = "stop"
        elif len(self.tokens) >= self.limit:
            self.finish = "length"
            self.text += self.decoder.flush()
        safe = len(self.text) if self.finish else len(self.text) - stop_prefix_length(self.text, self.stops)
        chunk = {"text": self.text[self.streamed:max(self.streamed, safe)], "tokens": [entry]}
        self.streamed = max(self.streamed, safe)
        return chunk

    def result(self, version):
        return {
            "promptTokens": self.prompt,
            "promptTruncated": self.truncated,
            "responseTokens": self.tokens,
            "logprobs": self.logprobs,
            "tokens": self.entries,
            "text": self.text,
            "finishReason": self.finish,
            "weightVersion": version,
        }


class Engine:
    def __init__(self, loaded, *, lora_rank, lora_alpha, seed, device, grad_ckpt, micro_batch_tokens, dist, decode="auto"):
        net = loaded.net
        self.tok, self.name, self.context = loaded.tokenizer, loaded.name, loaded.context
        self.device, self.dtype = device, next(net.parameters()).dtype
        self.dist, self.seed, self.micro_batch_tokens = dist, seed, micro_batch_tokens
        self.vocab = net.get_output_embeddings().weight.shape[0]
        self.base_params = sum(p.numel() for p in net.parameters())
        self.lora_state, self.layers = add_lora(net, lora_rank, lora_alpha, seed)
        self.lora_rank, self.lora_alpha = lora_rank, lora_alpha
        # Recomputing activations costs a third more compute, so "auto" keeps them until a step
        # runs out of memory. Under torchrun it recomputes from the start: ranks cannot retry alone.
        self.net, self.grad_ckpt, self.checkpointing = net, grad_ckpt, False
        self._set_checkpointing(grad_ckpt == "on" or (grad_ckpt == "auto" and dist.world > 1))
        # Counted before FSDP leaves each rank a shard.
        self.lora_params = sum(p.numel() for layer in self.layers.values() for p in (layer.lora.A, layer.lora.B))
        self.policy = Policy(net)
        if dist.world > 1 and device.type == "cpu":
            # Every rank starts from rank 0's weights: FSDP's sync_module_states does this on CUDA only.
            for t in self.policy.state_dict().values():
                dist.share_tensor(t)
        self.sharded = dist.world > 1 and (device.type == "cuda" or cpu_fsdp_supported())
        if self.sharded:
            self.policy = _wrap_fsdp(self.policy, net, device)
            # FSDP sets itself up at its root's first forward; gathering a LoRA unit before that (a
            # restarted worker loading its adapter) would make that unit a root and break the next forward.
            with torch.no_grad(), self.mode(None):
                self.logprobs([([0], [0])])
        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        use_grouped_decode_attention(net)
        # A static cache pays off where kernel launches dominate a step: on CUDA, as CUDA graphs.
        # One process only: a graph cannot hold FSDP's collectives, and ranks cannot fall back alone.
        if decode == "static" and not (dist.world == 1 and static_cache_supported(net)):
            raise ValueError("--decode static needs one process and a model whose layers all attend to the whole sequence")
        if decode == "static" or (decode == "auto" and device.type == "cuda" and dist.world == 1 and static_cache_supported(net)):
            self.decoder = StaticDecoder(self.policy, net, device, self.dtype, use_graphs=device.type == "cuda")
        else:
            self.decoder = GrowingDecoder(self.policy)
        self.optimizer = self._new_optimizer()
        self.served_version = "base"
        self.counters = {"genTokens": 0, "genSeconds": 0.0, "trainTokens": 0, "trainSeconds": 0.0, "steps": 0, "lastStepMs": 0.0}

    def _new_optimizer(self):
        return torch.optim.AdamW(self.params, lr=0.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def _set_checkpointing(self, on):
        if not hasattr(self.net, "gradient_checkpointing_enable"):
            return
        if on:
            # Non-reentrant: the frozen base's inputs need no requires_grad for LoRA grads to flow.
            self.net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.net.gradient_checkpointing_disable()
        self.checkpointing = on

    @contextlib.contextmanager
    def mode(self, slot, training=False):
        """Run the LoRA `slot` ("train", "serve" or None: the reference), in train or eval mode."""
        saved = self.lora_state.active, self.policy.training
        self.lora_state.active = slot
        self.policy.train(training)
        try:
            yield
        finally:
            self.lora_state.active = saved[0]
            self.policy.train(saved[1])

    @contextlib.contextmanager
    def _batch(self):
        try:
            yield
        finally:
            self.decoder.release()  # the batch's growing cache: garbage now

    @contextlib.contextmanager
    def full_lora(self, writeback):
        """The training adapter's full (unsharded) tensors, for reading or writing them."""
        if not self.sharded:
            yield
            return
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with contextlib.ExitStack() as stack:
            for layer in self.layers.values():
                stack.enter_context(FSDP.summon_full_params(layer.lora, writeback=writeback))
            yield

    # -- tokens ---------------------------------------------------------------------------------

    def encode_chat(self, messages, tools):
        """Prompt ids and whether they were cut. As the embedded backend: the prompt may use 3/4 of
        the context; a longer one keeps the first quarter of that (the head of the system prompt)
        and fills the rest from the end (the latest turns and the assistant marker)."""
        ids = self.tok.encode_chat(messages, tools)
        budget = self.context - self.context // 4
        if len(ids) <= budget:
            return ids, False
        head = budget // 4
        return ids[:head] + ids[len(ids) - (budget - head):], True

    def _check_tokens(self, what, ids):
        bad = next((t for t in ids if not (isinstance(t, int) and 0 <= t < self.vocab)), None)
        if bad is not None:
            raise ValueError(f"{what}: token {bad!r} is not an id of this model's vocabulary of {self.vocab}")

    def logprobs(self, examples):
        """log π(response_t | prompt, response_<t) of [(prompt, response), ...], flattened to [N] in
        order, in the current mode. One right-padded forward over the batch."""
        for p, r in examples:
            if not p:
                raise ValueError("the prompt is empty: a response needs at least one token to condition on")
            if len(p) + len(r) > self.context:
                raise ValueError(f"prompt + response of {len(p) + len(r)} tokens do not fit the context of {self.context}")
            self._check_tokens("prompt", p)
            self._check_tokens("response", r)
        B, T = len(examples), max(len(p) + len(r) for p, r in examples)
        ids = torch.zeros(B, T, dtype=torch.long)
        mask = torch.zeros(B, T, dtype=torch.long)
        rows, cols, targets = [], [], []
        for b, (p, r) in enumerate(examples):
            ids[b, :len(p) + len(r)] = torch.tensor(p + r)
            mask[b, :len(p) + len(r)] = 1
            rows += [b] * len(r)
            cols += range(len(p), len(p) + len(r))
            targets += r
        positions = torch.arange(T).expand(B, T)
        to = lambda t: t.to(self.device)
        return self.policy(to(ids), to(mask), to(positions), rows=to(torch.tensor(rows, dtype=torch.long)),
                           cols=to(torch.tensor(cols, dtype=torch.long)), targets=to(torch.tensor(targets, dtype=torch.long)))

    # -- serving ---------------------------------------------------------------------------------

    def score(self, prompt, response, reference):
        with torch.no_grad(), self.mode(None if reference else "serve"):
            return self.logprobs([(prompt, response)]).tolist()

    def generate(self, reqs, on_chunk, on_done, is_cancelled):
        """Samples replies to a batch of requests ({id, messages, tools, sampling}) together.

        Prompts are left-padded into one batch with a KV cache; each row stops on its own rules and
        is answered (on_done(id, result or exception)) as soon as it stops. Reported logprobs are
        of the raw model distribution (temperature 1, no top-p), the quantity `score` returns.
        """
        started = time.perf_counter()
        rows = []
        for req in reqs:
            try:
                prompt, truncated = self.encode_chat(req["messages"], req.get("tools"))
                if not prompt:
                    raise ValueError("the chat template produced an empty prompt")
                self._check_tokens("prompt", prompt)
                # The last sampled token is never fed back, so a reply may reach context - prompt + 1.
                limit = min(int(req["sampling"]["maxTokens"]), self.context - len(prompt) + 1)
                rows.append(Row(req, prompt, truncated, self.tok, limit, self.device))
            except Exception as err:  # noqa: BLE001 -- a bad request fails alone, not its batch
                on_done(req["id"], err)
        for row in rows:
            if row.finish:
                on_done(row.id, row.result(self.served_version))
        rows = [row for row in rows if not row.finish]
        if not rows:
            return
        B, T = len(rows), max(len(row.prompt) for row in rows)
        ids = torch.zeros(B, T, dtype=torch.long)
        mask = torch.zeros(B, T, dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, T - len(row.prompt):] = torch.tensor(row.prompt)
            mask[b, T - len(row.prompt):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(1) - 1).clamp(min=0)  # [B, T]; left padding sits at position 0
        top_k = max(int(row.sampling.get("topLogprobs") or 0) for row in rows)
        generated = 0
        with torch.no_grad(), self.mode("serve"), self._batch():
            logits = self.decoder.prefill(ids, mask, positions, max(row.limit for row in rows))  # [B, V]
            while True:
                logp = torch.log_softmax(logits, -1)  # [B, V]
                next_ids = self.dist.share_tensor(self._sample(logits, rows))  # [B]
                chosen = logp.gather(1, next_ids[:, None])[:, 0].tolist()
                tops = None
                if top_k:
                    top_logp, top_ids = logp.topk(top_k, -1)  # [B, k]
                    tops = [list(zip(i, lp)) for i, lp in zip(top_ids.tolist(), top_logp.tolist())]
                for b, (row, token) in enumerate(zip(rows, next_ids.tolist())):
                    if row.finish:
                        continue
                    if is_cancelled(row.id):
                        row.finish = "cancelled"
                        on_done(row.id, Cancelled("generation cancelled"))
                        continue
                    want = int(row.sampling.get("topLogprobs") or 0)
                    on_chunk(row.id, row.add(token, chosen[b], tops[b][:want] if want else None))
                    generated += 1
                    if row.finish:
                        on_done(row.id, row.result(self.served_version))
                # Rank 0 alone knows of cancellations: its word decides whether the batch goes on
                # (an int: gloo cannot broadcast a bool).
                if not self.dist.share_tensor(torch.tensor([int(any(not r.finish for r in rows))], device=self.device)).item():
                    break
                logits = self.decoder.step(next_ids)
        self.counters["genTokens"] += generated
        self.counters["genSeconds"] += time.perf_counter() - started

    def _sample(self, logits, rows):
        """Next token of each row [B] under its temperature and top-p (temperature 0: greedy)."""
        out = logits.argmax(-1)
        for b, row in enumerate(rows):
            temperature, top_p = float(row.sampling.get("temperature", 1)), float(row.sampling.get("topP", 1))
            if row.finish or temperature <= 0:
                continue
            probs = torch.softmax(logits[b] / temperature, -1)  # [V]
            if top_p < 1:
                # Nucleus: the smallest set of most likely tokens whose mass reaches top_p.
                probs, order = probs.sort(descending=True)
                probs = probs * ((probs.cumsum(0) - probs) < top_p)
                out[b] = order[torch.multinomial(probs, 1, generator=row.generator)[0]]
            else:
                out[b] = torch.multinomial(probs, 1, generator=row.generator)[0]
        return out

    # -- training --------------------------------------------------------------------------------

    def _microbatches(self, examples):
        """Consecutive groups whose padded size (examples x longest) fits micro_batch_tokens per rank."""
        budget = self.micro_batch_tokens * self.dist.world
        group, longest = [], 0
        for ex in examples:
            n = len(ex["promptTokens"]) + len(ex["responseTokens"])
            if group and (len(group) + 1) * max(longest, n) > budget:
                yield group
                group, longest = [], 0
            group.append(ex)
            longest = max(longest, n)
        if group:
            yield group

    def train_step(self, batch, opts, between=None):
        """One AdamW step of policy_loss over the batch on the training adapter; `between` runs
        after each microbatch (the server answers waiting generate requests there)."""
        started = time.perf_counter()
        for i, ex in enumerate(batch):
            n = len(ex["responseTokens"])
            ex.setdefault("mask", [1] * n)
            for key in ("oldLogprobs", "advantages", "mask"):
                if len(ex[key]) != n:
                    raise ValueError(f"example {i}: {key} has {len(ex[key])} entries, responseTokens has {n}")
        total = sum(sum(ex["mask"]) for ex in batch)
        metrics = {"loss": 0.0, "clipFraction": 0.0, "meanRatio": 0.0, "kl": 0.0, "gradNorm": 0.0, "tokens": total}
        examples = [ex for ex in batch if sum(ex["mask"]) != 0]
        if not examples:
            return {**metrics, "durationMs": (time.perf_counter() - started) * 1000}
        for group in self.optimizer.param_groups:
            group["lr"], group["weight_decay"] = float(opts["lr"]), float(opts.get("weightDecay") or 0)
        # The step's memory: generation between its microbatches grows its caches meanwhile.
        self.decoder.clear()
        self.decoder.paused = True
        try:
            sums, tokens = self._accumulate_fitting(examples, opts, total, between)
        finally:
            self.decoder.paused = False
        self.counters["trainTokens"] += tokens
        sums = self.dist.sum(sums, self.device)
        max_norm = float(opts.get("maxGradNorm") or 1.0)
        if self.sharded:
            grad_norm = self.policy.clip_grad_norm_(max_norm)
        else:
            if self.dist.world > 1:
                self.dist.average([p.grad for p in self.params])  # unsharded CPU ranks: what FSDP's backward does
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        duration = time.perf_counter() - started
        self.counters["trainSeconds"] += duration
        self.counters["steps"] += 1
        self.counters["lastStepMs"] = duration * 1000
        metrics.update(zip(("loss", "clipFraction", "meanRatio", "kl"), sums))
        return {**metrics, "gradNorm": float(grad_norm), "durationMs": duration * 1000}

    def _accumulate_fitting(self, examples, opts, total, between):
        """_accumulate, run again with checkpointing if keeping activations ran out of memory (auto)."""
        out_of_memory = None
        try:
            return self._accumulate(examples, opts, total, between)
        except torch.cuda.OutOfMemoryError as err:
            if self.grad_ckpt != "auto" or self.checkpointing:
                raise
            out_of_memory = str(err).splitlines()[0]
        # Out of the except block: its traceback held the failed try's frames and activations.
        gc.collect()
        self.forget_gradients()
        self._set_checkpointing(True)
        print(f"torch worker: a training step ran out of memory keeping activations ({out_of_memory}); "
              f"recomputing them from now on (--grad-ckpt on skips this first try)", file=sys.stderr)
        return self._accumulate(examples, opts, total, between)

    def _accumulate(self, examples, opts, total, between):
        """Forward and backward of every microbatch, gradients summed; returns the metric sums
        (loss, clipFraction, meanRatio, kl) and the tokens that went through the model."""
        kl_coef = float(opts.get("klCoef") or 0)
        self.optimizer.zero_grad(set_to_none=True)
        sums, tokens = [0.0, 0.0, 0.0, 0.0], 0
        # Every rank runs the same number of forward/backward passes (FSDP's are collective); a
        # rank with no example in a microbatch runs a zero-weight one.
        idle = {"promptTokens": [0], "responseTokens": [0], "oldLogprobs": [0.0], "advantages": [0.0], "mask": [0]}
        for micro in self._microbatches(examples):
            mine = micro[self.dist.rank::self.dist.world] or [idle]
            pairs = [(ex["promptTokens"], ex["responseTokens"]) for ex in mine]
            flat = lambda key: torch.tensor([x for ex in mine for x in ex[key]], dtype=torch.float32, device=self.device)
            ref = None
            if kl_coef != 0:
                with torch.no_grad(), self.mode(None):
                    ref = self.logprobs(pairs)
            with self.mode("train", training=True):
                out = policy_loss(self.logprobs(pairs), flat("oldLogprobs"), flat("advantages"), flat("mask"),
                                  float(opts["clipLow"]), float(opts["clipHigh"]), kl_coef, ref, weight=total)
                # The ranks' gradients are averaged (by FSDP, or below); scaling by the world size
                # makes that their sum.
                (out["loss"] * self.dist.world).backward()
            for k, key in enumerate(("loss", "clipFraction", "meanRatio", "kl")):
                sums[k] += out[key].item()
            tokens += sum(len(ex["promptTokens"]) + len(ex["responseTokens"]) for ex in micro)
            if between:
                between()
        return sums, tokens

    def forget_gradients(self):
        """After a failed step (e.g. out of memory): drop partial gradients and cached blocks."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- adapters --------------------------------------------------------------------------------

    def save_adapter(self, folder):
        with self.full_lora(writeback=False):
            # Copies: on CPU ranks .cpu() would alias FSDP's gathered storage, which it frees after.
            pairs = {name: (layer.lora.A.detach().to("cpu", copy=True), layer.lora.B.detach().to("cpu", copy=True))
                     for name, layer in self.layers.items()}
            alpha = next(iter(self.layers.values())).scale * self.lora_rank
            if self.dist.rank == 0:
                save_adapter(folder, pairs, self.lora_rank, alpha, self.name)

    def load_adapter(self, folder, version):
        """Swaps the served adapter (None: the base weights); a bad adapter leaves the current one serving."""
        served = {}
        if folder is not None:
            pairs, _, scale = read_adapter(folder, self.layers)
            served = {name: (A.to(self.device, self.dtype), B.to(self.device, self.dtype), scale) for name, (A, B) in pairs.items()}
        for name, layer in self.layers.items():
            layer.served = served.get(name)
        self.decoder.clear()  # its graphs hold the old adapter's tensors
        self.served_version = version

    def load_training_adapter(self, folder):
        """Resets the training copy to an adapter (None: a fresh one) with a fresh optimiser."""
        pairs = None
        if folder is not None:
            pairs, rank, scale = read_adapter(folder, self.layers)
            if rank != self.lora_rank:
                raise ValueError(f"adapter {folder} has r={rank}; the training adapter has r={self.lora_rank} (--lora-rank)")
        with self.full_lora(writeback=True), torch.no_grad():
            if pairs is None:
                reset_training(self.layers, self.seed)
                scale = self.lora_alpha / self.lora_rank
            for name, layer in self.layers.items():
                if pairs is not None:
                    # A layer the adapter leaves out starts at B = 0: no change, as in the file.
                    A, B = pairs.get(name, (layer.lora.A, torch.zeros_like(layer.lora.B)))
                    layer.lora.A.copy_(A)
                    layer.lora.B.copy_(B)
                layer.scale = scale
        self.optimizer = self._new_optimizer()

    # -- stats -----------------------------------------------------------------------------------

    def stats(self, reset_peak=False):
        c = self.counters
        rate = lambda tokens, seconds: tokens / seconds if seconds > 0 else 0.0
        out = {
            "model": self.name,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "worldSize": self.dist.world,
            "sharded": self.sharded,
            "context": self.context,
            "vocab": self.vocab,
            "params": self.base_params,
            "loraParams": self.lora_params,
            "gradCheckpointing": self.checkpointing,
            "decode": self.decoder.kind(),
            "decodeCounts": dict(getattr(self.decoder, "counts", {})),
            "servedVersion": self.served_version,
            "generate": {"tokens": c["genTokens"], "seconds": c["genSeconds"], "tokensPerSecond": rate(c["genTokens"], c["genSeconds"])},
            "train": {"steps": c["steps"], "tokens": c["trainTokens"], "seconds": c["trainSeconds"],
                      "tokensPerSecond": rate(c["trainTokens"], c["trainSeconds"]), "lastStepMs": c["lastStepMs"]},
        }
        if self.device.type == "cuda":
            out["memory"] = {
                "allocatedBytes": torch.cuda.memory_allocated(),
                "peakAllocatedBytes": torch.cuda.max_memory_allocated(),
                "reservedBytes": torch.cuda.memory_reserved(),
                "totalBytes": torch.cuda.get_device_properties(self.device).total_memory,
            }
            if reset_peak:
                torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/status") as f:
                rss = next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")), 0)
            out["memory"] = {"rssBytes": rss}
        return out


def cpu_fsdp_supported():
    """FSDP on CPU ranks (gloo): torch 1.13's needs CUDA; 2.x's runs there (checked with 2.13)."""
    return int(torch.__version__.split(".")[0]) >= 2


def _wrap_fsdp(policy, net, device):
    """Shards the base across ranks: one FSDP unit per decoder layer (transformers names the class
    in _no_split_modules) and one per LoraPair, because a unit flattens its parameters into one
    tensor and the LoRA parameters are fp32 while the base is bf16."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    layer_names = set(getattr(net, "_no_split_modules", None) or ())
    units = {type(m) for m in net.modules() if type(m).__name__ in layer_names} | {LoraPair}
    on_cuda = device.type == "cuda"
    # sync_module_states: a random-init model (gpu_check) differs per rank until rank 0's is sent
    # (on the CPU the Engine has sent it already).
    return FSDP(policy, auto_wrap_policy=ModuleWrapPolicy(units), device_id=torch.cuda.current_device() if on_cuda else device,
                use_orig_params=True, sync_module_states=on_cuda)
