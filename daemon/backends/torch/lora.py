"""LoRA for the torch worker, without peft: linear layers wrapped in place, adapters in PEFT's layout.

Every nn.Linear whose name ends in one of TARGETS becomes a LoraLinear with two slots on the same
frozen base weight:
  - "train": the training copy, fp32 parameters (A [r, in], B [out, r]) updated by the optimiser;
  - "serve": the adapter now serving, plain tensors in the model's dtype, swapped between requests.
One shared LoraState says which slot runs (or none: the base model, i.e. the reference policy), so
serving, training and reference scoring all run on one copy of the base weights.

On disk (what peft, vLLM and SGLang load): adapter_config.json + adapter_model.safetensors with
tensors named base_model.model.<module name>.lora_A.weight / .lora_B.weight, where <module name> is
the Linear's name inside the transformers model (e.g. model.layers.0.self_attn.q_proj).
"""

import json
import math
import os
import sys

import torch
from torch import nn

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


# ---------------------------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length N, N bytes of JSON
# {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}, then the data.

SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
_DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


def save_safetensors(path, tensors, metadata=None):
    assert sys.byteorder == "little", "safetensors data is little-endian"
    header = {"__metadata__": metadata} if metadata else {}
    blobs, offset = [], 0
    for name, t in tensors.items():
        blob = t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": _DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header).encode("utf-8")
    head += b" " * (-len(head) % 8)  # pad so the data starts 8-byte aligned, as the format recommends
    # Write then rename, so a crash mid-write never leaves a half file under the real name.
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def load_safetensors(path):
    """{name: tensor} on the CPU; every field is checked, and any problem names the file."""

    def fail(problem):
        raise ValueError(f"invalid safetensors file {path}: {problem}")

    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        fail(f"truncated: {len(data)} bytes, shorter than the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        fail(f"truncated: header claims {n} bytes but only {len(data) - 8} follow")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except ValueError as err:
        fail(f"header is not valid JSON ({err})")
    if not isinstance(header, dict):
        fail("header is not a JSON object")
    body = memoryview(data)[8 + n:]
    tensors, covered = {}, 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFETENSORS_DTYPES.get(entry.get("dtype")) if isinstance(entry, dict) else None
        if dtype is None:
            fail(f"tensor {name}: unsupported or missing dtype {entry!r}")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            fail(f"tensor {name}: bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and o >= 0 for o in offsets)):
            fail(f"tensor {name}: bad data_offsets {offsets!r}")
        begin, end = offsets
        if begin > end or end > len(body):
            fail(f"tensor {name}: data_offsets [{begin}, {end}] out of range of {len(body)} data bytes (truncated?)")
        count = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if end - begin != count * itemsize:
            fail(f"tensor {name}: shape {shape} needs {count * itemsize} bytes, data_offsets give {end - begin}")
        # bytearray copy: frombuffer needs a writable buffer, and the tensor must outlive `data`.
        raw = torch.frombuffer(bytearray(body[begin:end]), dtype=torch.uint8) if count else torch.empty(0, dtype=torch.uint8)
        tensors[name] = raw.view(dtype).reshape(shape)
        covered += end - begin
    if covered != len(body):
        fail(f"tensors cover {covered} of {len(body)} data bytes")
    return tensors


# ---------------------------------------------------------------------------------------------
# The modules.

class LoraState:
    """Which slot every LoraLinear runs: "train", "serve" or None (the base weights)."""

    def __init__(self):
        self.active = None


def add_lora_delta(y, x, A, B, scale):
    """y + scale · (x Aᵀ) Bᵀ, with x [..., in], y [..., out], A [r, in], B [out, r].

    The second product, the scale and the sum are one addmm (one pass over y, not three). A and B
    are cast to x's dtype (bf16 on GPU) so the fp32 training parameters get gradients through it.
    """
    xa = x.reshape(-1, x.shape[-1]) @ A.to(x.dtype).t()  # [N, r]
    return torch.addmm(y.reshape(-1, y.shape[-1]), xa, B.to(x.dtype).t(), alpha=scale).view(y.shape)


class LoraPair(nn.Module):
    """The trainable A, B of one layer; its own module so FSDP can shard it as a uniform-dtype unit."""

    def __init__(self, n_in, n_out, rank, device):
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, n_in, device=device, dtype=torch.float32))
        self.B = nn.Parameter(torch.zeros(n_out, rank, device=device, dtype=torch.float32))

    def reset(self, generator):
        # As peft: A ~ kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0, so a fresh
        # adapter leaves the model unchanged.
        bound = 1 / math.sqrt(self.A.shape[1])
        with torch.no_grad():
            self.A.copy_((torch.rand(self.A.shape, generator=generator) * 2 - 1) * bound)
            self.B.zero_()

    def forward(self, y, x, scale):
        # The scale is LoraLinear's, outside any FSDP wrapper, so it can be changed.
        return add_lora_delta(y, x, self.A, self.B, scale)


class LoraLinear(nn.Module):
    def __init__(self, base, state, rank, alpha):
        super().__init__()
        self.base = base
        self.state = state
        self.lora = LoraPair(base.in_features, base.out_features, rank, base.weight.device)
        self.scale = alpha / rank  # of the training slot
        self.served = None  # (A, B, scale) of the serving adapter, or None: base weights only

    def forward(self, x):
        y = self.base(x)
        if self.state.active == "train":
            return self.lora(y, x, self.scale)
        if self.state.active == "serve" and self.served is not None:
            return add_lora_delta(y, x, *self.served)
        return y


def add_lora(net, rank, alpha, seed):
    """Freezes `net`, wraps its target Linears; returns (state, {module name: LoraLinear})."""
    for p in net.parameters():
        p.requires_grad_(False)
    state = LoraState()
    targets = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in TARGETS]
    if not targets:
        raise ValueError(f"the model has no Linear layers named {', '.join(TARGETS)}: LoRA has nothing to adapt")
    layers = {}
    for name, base in targets:
        parent_name, _, child = name.rpartition(".")
        wrapped = LoraLinear(base, state, rank, alpha)
        setattr(net.get_submodule(parent_name) if parent_name else net, child, wrapped)
        layers[name] = wrapped
    reset_training(layers, seed)
    return state, layers


def reset_training(layers, seed):
    """A fresh training adapter: seeded, so a restarted worker starts from the same one."""
    generator = torch.Generator().manual_seed(seed)
    for layer in layers.values():
        layer.lora.reset(generator)


def tensor_names(module_name):
    prefix = f"base_model.model.{module_name}"
    return f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"


def save_adapter(folder, pairs, rank, alpha, base_name):
    """Writes {module name: (A, B)} in PEFT's layout; weights first, so a present config means complete weights."""
    os.makedirs(folder, exist_ok=True)
    tensors = {}
    for name, (A, B) in pairs.items():
        a_name, b_name = tensor_names(name)
        tensors[a_name], tensors[b_name] = A.float(), B.float()
    save_safetensors(os.path.join(folder, ADAPTER_WEIGHTS), tensors, {"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "inference_mode": True,
        "target_modules": sorted({name.rsplit(".", 1)[-1] for name in pairs}),
        "base_model_name_or_path": base_name,
    }
    with open(os.path.join(folder, ADAPTER_CONFIG), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def read_adapter(folder, layers):
    """Reads and checks a PEFT LoRA adapter against `layers`; returns ({module name: (A, B)}, r, scale).

    Raises a ValueError naming the problem; nothing is changed, so a bad adapter never half-loads.
    Modules the adapter does not mention get no delta (an adapter may target only q_proj/v_proj).
    """
    config_path = os.path.join(folder, ADAPTER_CONFIG)
    try:
        with open(config_path) as f:
            config = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read adapter config {config_path}: {err}") from None
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{config_path}: peft_type {config.get('peft_type')!r} is not LORA")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if not (isinstance(rank, int) and rank > 0 and isinstance(alpha, (int, float))):
        raise ValueError(f"{config_path}: bad r {rank!r} or lora_alpha {alpha!r}")
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    weights_path = os.path.join(folder, ADAPTER_WEIGHTS)
    try:
        tensors = load_safetensors(weights_path)
    except OSError as err:
        raise ValueError(f"cannot read adapter weights {weights_path}: {err}") from None
    pairs = {}
    for name, layer in layers.items():
        a_name, b_name = tensor_names(name)
        if a_name not in tensors and b_name not in tensors:
            continue
        A, B = tensors.pop(a_name, None), tensors.pop(b_name, None)
        n_out, n_in = layer.base.out_features, layer.base.in_features
        if A is None or tuple(A.shape) != (rank, n_in):
            raise ValueError(f"{weights_path}: {a_name} has shape {None if A is None else list(A.shape)}, expected [{rank}, {n_in}]")
        if B is None or tuple(B.shape) != (n_out, rank):
            raise ValueError(f"{weights_path}: {b_name} has shape {None if B is None else list(B.shape)}, expected [{n_out}, {rank}]")
        pairs[name] = (A, B)
    if tensors:
        raise ValueError(f"{weights_path}: tensors that match no LoRA layer of this model, e.g. {next(iter(tensors))}")
    if not pairs:
        raise ValueError(f"{weights_path}: no LoRA tensors for this model")
    return pairs, rank, scale
