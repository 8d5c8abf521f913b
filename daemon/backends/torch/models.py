"""The small model interface the worker runs on, and the models behind it.

load_model(spec) returns a Loaded(net, tokenizer, name, context) where
  net        a causal LM in transformers' shape: net.get_decoder()(input_ids, attention_mask,
             position_ids, past_key_values, use_cache) -> .last_hidden_state [B, T, D],
             .past_key_values; net.get_output_embeddings() maps D -> vocab
  tokenizer  encode_chat(messages, tools) -> ids, decode(ids) -> str, stop_ids (ids that end the
             assistant's turn), vocab_size
Specs:
  tiny-test            TinyLM + ToyTokenizer below: torch only, seeded, for tests and CPU CI
  module:factory       factory(device, dtype) -> (net, tokenizer), imported from sys.path
  <dir or hf id>       transformers AutoModelForCausalLM + AutoTokenizer (imported only here)
"""

import importlib
import json
import math
import os
import sys
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.utils.checkpoint
from torch import nn
from torch.nn import functional as F


class ModelLoadError(Exception):
    """A model that cannot load; the message says why and what to do."""


@dataclass
class Loaded:
    net: nn.Module
    tokenizer: object
    name: str
    context: int


# ---------------------------------------------------------------------------------------------
# Toy tokenizer: ids 0..255 are UTF-8 bytes, then markers only the template inserts (the same
# template as the embedded backend's, so content that spells "<|user|>" stays bytes).

MARKERS = ("<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|end|>")


class ToyTokenizer:
    def __init__(self, vocab_size=256 + len(MARKERS)):
        assert vocab_size >= 256 + len(MARKERS)
        self.vocab_size = vocab_size
        self.marker = {text: 256 + i for i, text in enumerate(MARKERS)}
        # A reply ends at <|end|> or at any turn marker.
        self.stop_ids = set(self.marker.values())

    def encode_chat(self, messages, tools):
        turns = list(messages)
        if tools and (not turns or turns[0]["role"] != "system"):
            turns.insert(0, {"role": "system", "content": ""})
        ids = []
        for i, m in enumerate(turns):
            text = m.get("content") or ""
            if tools and i == 0:
                text += "\n\n# Tools\n" + "\n".join(json.dumps(t, sort_keys=True) for t in tools)
            for call in m.get("toolCalls") or []:
                text += f"<tool_call>{json.dumps({'name': call['name'], 'arguments': _json_or_text(call['arguments'])})}</tool_call>"
            ids += [self.marker[f"<|{m['role']}|>"], *text.encode("utf-8"), self.marker["<|end|>"]]
        return ids + [self.marker["<|assistant|>"]]

    def decode(self, ids):
        text, pending = [], bytearray()
        for t in ids:
            if t < 256:
                pending.append(t)
                continue
            text.append(pending.decode("utf-8", errors="replace"))
            pending.clear()
            text.append(MARKERS[t - 256] if t < 256 + len(MARKERS) else "")
        text.append(pending.decode("utf-8", errors="replace"))
        return "".join(text)


# ---------------------------------------------------------------------------------------------
# TinyLM: a pre-norm transformer with SwiGLU MLPs and learned positions, laid out with
# transformers' module names (model.layers.N.self_attn.q_proj, ...), so LoRA and PEFT names work
# on it exactly as on a real model.

@dataclass
class TinyConfig:
    vocab: int = 256 + len(MARKERS)
    context: int = 512
    dim: int = 64
    layers: int = 2
    heads: int = 4
    mlp: int = 128
    seed: int = 0


class TinyAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c.heads
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(c.dim, c.dim, bias=False) for _ in range(4))

    def forward(self, x, bias, past):
        # past: None, this layer's (k, v) so far, or a static cache's write for this layer
        B, T, D = x.shape
        split = lambda t: t.view(B, T, self.heads, D // self.heads).transpose(1, 2)  # [B, H, T, hd]
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        if callable(past):
            k, v = past(k, v)  # [B, H, S, hd]: the whole static cache, this step written in
        elif past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)  # [B, H, S, hd]
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D // self.heads) + bias  # [B, H, T, S]
        y = att.softmax(-1) @ v  # [B, H, T, hd]
        return self.o_proj(y.transpose(1, 2).reshape(B, T, D)), (k, v)


class TinyMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.dim, c.mlp, bias=False)
        self.up_proj = nn.Linear(c.dim, c.mlp, bias=False)
        self.down_proj = nn.Linear(c.mlp, c.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TinyBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(c.dim)
        self.self_attn = TinyAttention(c)
        self.post_attention_layernorm = nn.LayerNorm(c.dim)
        self.mlp = TinyMLP(c)

    def forward(self, x, bias, past):
        a, cache = self.self_attn(self.input_layernorm(x), bias, past)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), cache


class TinyBackbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab, c.dim)
        self.embed_positions = nn.Embedding(c.context, c.dim)
        self.layers = nn.ModuleList(TinyBlock(c) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.dim)

    checkpointing = False  # recompute each block's activations in the backward pass (training only)

    def forward(self, input_ids, attention_mask, position_ids, past_key_values=None, use_cache=False):
        # input_ids, position_ids [B, T]; attention_mask [B, S] over past + new tokens (0 = padding),
        # or, as transformers takes it, a prepared additive mask [B, 1, T, S] (with a static cache).
        T, S = input_ids.shape[1], attention_mask.shape[-1]
        x = self.embed_tokens(input_ids) + self.embed_positions(position_ids)
        if attention_mask.dim() == 4:
            bias = attention_mask
        else:
            # Query t (absolute index S - T + t) sees keys j <= S - T + t that are not padding. A large
            # negative rather than -inf: a left-padding query sees no key at all, and must not be NaN.
            causal = torch.arange(S, device=x.device)[None, :] <= torch.arange(S - T, S, device=x.device)[:, None]  # [T, S]
            allowed = causal[None, None] & attention_mask[:, None, None, :].bool()  # [B, 1, T, S]
            bias = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(~allowed, torch.finfo(x.dtype).min)
        static = isinstance(past_key_values, TinyStaticCache)
        caches = []
        for i, layer in enumerate(self.layers):
            if static:
                past = lambda k, v, i=i: past_key_values.update(k, v, i)
            else:
                past = past_key_values[i] if past_key_values else None
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x, cache = torch.utils.checkpoint.checkpoint(layer, x, bias, past, use_reentrant=False)
            else:
                x, cache = layer(x, bias, past)
            caches.append(cache)
        return SimpleNamespace(last_hidden_state=self.norm(x), past_key_values=(past_key_values if static else caches) if use_cache else None)


class TinyStaticCache:
    """transformers' StaticCache for TinyLM: per layer K/V [rows, H, length, hd], written in place
    at a position held on the device, so a CUDA graph replays the write at the right slot."""

    def __init__(self, config, rows, length, device, dtype):
        hd = config.dim // config.heads
        self.layers = [(torch.zeros(rows, config.heads, length, hd, device=device, dtype=dtype),
                        torch.zeros(rows, config.heads, length, hd, device=device, dtype=dtype),
                        torch.zeros((), dtype=torch.long, device=device)) for _ in range(config.layers)]

    def update(self, k, v, layer_idx):
        keys, values, written = self.layers[layer_idx]
        at = torch.arange(k.shape[2], device=k.device) + written
        keys.index_copy_(2, at, k)
        values.index_copy_(2, at, v)
        written.add_(k.shape[2])
        return keys, values


def static_cache_supported(net):
    """Whether decode.StaticDecoder can run `net`: the test model, or a transformers model whose
    layers all attend to the whole sequence (one additive mask fits every layer)."""
    if isinstance(net, TinyLM):
        return True
    transformers = sys.modules.get("transformers")
    config = getattr(net, "config", None)
    return (transformers is not None and hasattr(transformers, "StaticCache") and hasattr(config, "num_key_value_heads")
            and all(t == "full_attention" for t in getattr(config, "layer_types", None) or ["full_attention"]))


def new_static_cache(net, rows, length, device, dtype):
    """An empty KV cache of rows x length slots for `net`, allocated now (see decode.py)."""
    if isinstance(net, TinyLM):
        return TinyStaticCache(net.config, rows, length, device, dtype)
    config = net.config
    cache = import_transformers().StaticCache(config=config, max_cache_len=length)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    cache.early_initialization(rows, config.num_key_value_heads, head_dim, dtype, device)
    return cache


def copy_prefix(static, prefix, length):
    """Puts a prompt's K/V from the model's own cache (`prefix`, [B, H, length, hd] a layer) into
    rows 0..B-1 of a static cache, and its write position after them."""
    if isinstance(static, TinyStaticCache):
        for (keys, values, written), (k, v) in zip(static.layers, prefix):
            keys[:k.shape[0], :, :length].copy_(k)
            values[:v.shape[0], :, :length].copy_(v)
            written.fill_(length)
        return
    for layer, grown in zip(static.layers, prefix.layers):
        layer.keys[:grown.keys.shape[0], :, :length].copy_(grown.keys)
        layer.values[:grown.values.shape[0], :, :length].copy_(grown.values)
        layer.cumulative_length.fill_(length)


class TinyLM(nn.Module):
    _no_split_modules = ["TinyBlock"]  # as transformers models name their layer class (for FSDP)

    def __init__(self, c):
        super().__init__()
        self.config = c
        # PyTorch's default init, from the config's seed: every process builds the same weights.
        with torch.random.fork_rng():
            torch.manual_seed(c.seed)
            self.model = TinyBackbone(c)
            self.lm_head = nn.Linear(c.dim, c.vocab, bias=False)

    def get_decoder(self):
        return self.model

    def get_output_embeddings(self):
        return self.lm_head

    # transformers' names, so the worker switches checkpointing on either kind of model.
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.model.checkpointing = True

    def gradient_checkpointing_disable(self):
        self.model.checkpointing = False


# ---------------------------------------------------------------------------------------------
# transformers

class HFTokenizer:
    """AutoTokenizer behind the worker's tokenizer interface; the chat template is the model's own."""

    def __init__(self, tok, generation_config):
        self.tok = tok
        self.vocab_size = len(tok)
        eos = getattr(generation_config, "eos_token_id", None)
        eos = eos if isinstance(eos, list) else [eos]
        self.stop_ids = {i for i in eos + [tok.eos_token_id] if i is not None}

    def encode_chat(self, messages, tools):
        def to_hf(m):
            out = {"role": m["role"], "content": m.get("content") or ""}
            if m.get("toolCalls"):
                out["tool_calls"] = [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": _json_or_text(c["arguments"])}}
                    for c in m["toolCalls"]
                ]
            if m.get("toolCallId"):
                out["tool_call_id"] = m["toolCallId"]
            if m.get("name"):
                out["name"] = m["name"]
            return out

        hf_tools = [{"type": "function", "function": {k: v for k, v in t.items() if v is not None}} for t in tools or []] or None
        # Render to text, then tokenize: what apply_chat_template(tokenize=True) returns differs
        # between transformers versions (ids vs a BatchEncoding); the text form does not.
        text = self.tok.apply_chat_template([to_hf(m) for m in messages], tools=hf_tools, tokenize=False, add_generation_prompt=True)
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids):
        return self.tok.decode(ids, skip_special_tokens=False)


def _json_or_text(arguments):
    # Chat templates render arguments with `| tojson` when they are a mapping; keep text otherwise.
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def dtype_kwarg(transformers, dtype):
    """The keyword that sets a model's dtype: transformers 4.56 renamed torch_dtype to dtype."""
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def import_transformers():
    try:
        import transformers
    except ImportError as err:
        raise ModelLoadError(
            f"transformers is not installed for {sys.executable} ({err}): pip install transformers "
            f"(or run the worker with another interpreter: --python / CLAWRL_PYTHON)"
        ) from None
    return transformers


def grouped_decode_attention(sdpa):
    """transformers' sdpa attention, but a single query per row with a mask (decoding a padded
    batch, or from a static cache) reads each cached K/V head once: sdpa would first copy every
    K/V head once per query head sharing it (repeat_kv), in every layer at every step. The query
    heads of a K/V head are taken as that head's queries."""

    def attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
        # query [B, H, 1, hd]; key, value [B, kvH, S, hd]; attention_mask [B, 1, 1, >= S]
        B, H, T, hd = query.shape
        kv_heads = key.shape[1]
        if T != 1 or attention_mask is None or kv_heads == H or kwargs.get("dropout"):
            return sdpa(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
        grouped = query.reshape(B, kv_heads, H // kv_heads, hd)  # head kv * n_rep + r is (kv, r), as repeat_kv orders them
        mask = attention_mask[:, :, :, :key.shape[-2]]
        scores = (grouped @ key.transpose(-1, -2)).float() * (scaling if scaling is not None else hd ** -0.5)  # [B, kvH, n_rep, S]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        out = scores.softmax(-1).to(value.dtype) @ value  # [B, kvH, n_rep, hd]
        return out.reshape(B, H, 1, hd).transpose(1, 2).contiguous(), None  # [B, 1, H, hd], as sdpa's

    return attention


def use_grouped_decode_attention(net):
    """Installs grouped_decode_attention as transformers' "sdpa" for this process, if `net` is a transformers model."""
    transformers = sys.modules.get("transformers")
    if transformers is None or not isinstance(net, transformers.PreTrainedModel):
        return
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    transformers.AttentionInterface.register("sdpa", grouped_decode_attention(sdpa_attention_forward))


def _load_hf(spec, device, dtype):
    transformers = import_transformers()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(spec)
        net = transformers.AutoModelForCausalLM.from_pretrained(spec, attn_implementation="sdpa", **dtype_kwarg(transformers, dtype)).to(device)
    except Exception as err:  # noqa: BLE001 -- transformers raises many types; all mean "cannot load"
        raise ModelLoadError(
            f"could not load model {spec!r}: {type(err).__name__}: {err}. "
            f"--model takes a local directory with config.json and weights, or a Hugging Face id that is in the cache or can be downloaded"
        ) from None
    if tok.chat_template is None:
        raise ModelLoadError(f"the tokenizer of {spec!r} has no chat template; use an instruct/chat model")
    context = getattr(net.config, "max_position_embeddings", None) or 4096
    return Loaded(net, HFTokenizer(tok, net.generation_config), spec, context)


def load_model(spec, device, dtype, context=None):
    """The model for `spec` on `device`; `context` caps the usable sequence length."""
    if spec == "tiny-test":
        net = TinyLM(TinyConfig()).to(device=device, dtype=dtype)
        loaded = Loaded(net, ToyTokenizer(), spec, net.config.context)
    elif ":" in spec and not os.path.exists(spec):
        module_name, _, factory_name = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), factory_name)
        except (ImportError, AttributeError) as err:
            raise ModelLoadError(f"model factory {spec!r} not found ({err}); module:factory must be importable from PYTHONPATH") from None
        net, tokenizer = factory(device=device, dtype=dtype)
        max_pos = getattr(getattr(net, "config", None), "max_position_embeddings", None)
        loaded = Loaded(net, tokenizer, spec, max_pos or getattr(net.config, "context", 4096))
    elif spec.startswith((".", "/", "~")) and not os.path.isdir(os.path.expanduser(spec)):
        raise ModelLoadError(f"model directory {spec} does not exist")
    else:
        loaded = _load_hf(os.path.expanduser(spec), device, dtype)
    if context:
        loaded.context = min(loaded.context, context)
    return loaded


class Policy(nn.Module):
    """Backbone + head in one module, so one forward (FSDP's root forward) covers both.

    It never materialises logits for every position: generation needs only the last position, and
    scoring/training only the response positions, in chunks whose softmax is recomputed in the
    backward pass (a 2048 x 150k fp32 logit block alone would be 1.2 GB).
    """

    HEAD_CHUNK = 1024

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, ids, mask, positions, cache=None, use_cache=False, rows=None, cols=None, targets=None):
        # ids, positions [B, T]; mask [B, S]. With targets [N]: logprobs [N] of targets[n] at
        # position cols[n] - 1 of row rows[n] (the position that predicts it). Without: the last
        # position's logits [B, V] in fp32 and the new cache.
        out = self.net.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=use_cache)
        head = self.net.get_output_embeddings()
        h = out.last_hidden_state  # [B, T, D]
        if targets is None:
            return head(h[:, -1]).float(), out.past_key_values
        picked = h[rows, cols - 1]  # [N, D]
        chunk_logprobs = lambda hc, tc: torch.log_softmax(head(hc).float(), -1).gather(-1, tc[:, None])[:, 0]
        parts = []
        for i in range(0, len(targets), self.HEAD_CHUNK):
            hc, tc = picked[i:i + self.HEAD_CHUNK], targets[i:i + self.HEAD_CHUNK]
            if torch.is_grad_enabled():
                parts.append(torch.utils.checkpoint.checkpoint(chunk_logprobs, hc, tc, use_reentrant=False))
            else:
                parts.append(chunk_logprobs(hc, tc))
        return torch.cat(parts) if parts else picked.new_zeros(0, dtype=torch.float32)
