"""The decoding steps of generate: prefill a left-padded batch, then one token per row per step.

Two ways, the same numbers:
  GrowingDecoder  the model's own cache, one step longer each step (any model, CPU, torchrun);
  StaticDecoder   a KV cache of fixed length, and on CUDA each step is one replayed CUDA graph.

Eager decoding of a big model at a small batch spends most of a step launching hundreds of
kernels from Python; a captured graph launches them all at once. A graph needs fixed shapes and
addresses: a static KV cache (transformers' StaticCache, or the test model's own), inputs written
into fixed buffers, and the same served adapter (the engine drops the graphs when it swaps one).
Rows are padded to a power of two and the cache length rounded up, so a few shapes serve every
batch; they are dropped before training, which needs the memory.
"""

import sys

import torch

from models import new_static_cache

LENGTH_STEP = 256  # cache lengths are multiples of this
MAX_SHAPES = 4  # static caches (and graphs) kept, most recent last


class GrowingDecoder:
    def __init__(self, policy):
        self.policy = policy

    def kind(self):
        return "growing cache"

    def clear(self):
        pass  # nothing is kept between batches

    def prefill(self, ids, mask, positions, new_tokens):
        # ids, mask, positions [B, T]; returns the last position's logits [B, V]
        self.mask, self.positions = mask, positions
        logits, self.cache = self.policy(ids, mask, positions, use_cache=True)
        return logits

    def step(self, next_ids):
        # next_ids [B]: each row's newest token, fed back; returns logits [B, V]
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(next_ids), 1)], 1)
        self.positions = self.positions[:, -1:] + 1
        logits, self.cache = self.policy(next_ids[:, None], self.mask, self.positions, cache=self.cache, use_cache=True)
        return logits


class Shape:
    """A static cache of `rows` x `length` and the fixed buffers of one decoding step on it."""

    def __init__(self, policy, net, rows, length, device, dtype):
        self.policy, self.rows, self.length = policy, rows, length
        self.cache = new_static_cache(net, length)
        self.ids = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(rows, 1, dtype=torch.long, device=device)
        # Additive attention mask over the cache slots: 0 where a row may look, the dtype's minimum
        # elsewhere (not -inf: a padding row that sees nothing must not turn into NaN).
        self.blocked = torch.finfo(dtype).min
        self.mask = torch.full((rows, 1, 1, length), self.blocked, dtype=dtype, device=device)
        self.graph = None
        self.logits = None

    def forward(self):
        return self.policy(self.ids, self.mask, self.positions, cache=self.cache, use_cache=True)[0]

    def capture(self):
        """Records one step as a CUDA graph: warm-up on a side stream first (lazy cache allocation,
        kernel selection), as torch.cuda.graphs asks; what the warm-up wrote is reset after."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.forward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.logits = self.forward()
        self.graph = graph


class StaticDecoder:
    def __init__(self, policy, net, device, dtype, use_graphs):
        self.policy, self.net, self.device, self.dtype = policy, net, device, dtype
        self.use_graphs = use_graphs
        self.shapes = {}  # (rows, length) -> Shape, least recently used first
        self.current = None
        # For a batch whose cache of the whole reply does not fit (a long max_tokens while a
        # training step holds memory, say): it grows its cache as it goes instead.
        self.growing = GrowingDecoder(policy)
        self.grows = False

    def kind(self):
        return "static cache, CUDA graphs" if self.use_graphs else "static cache"

    def clear(self):
        """Frees the caches and graphs: the served adapter changed, or training needs the memory."""
        self.shapes.clear()
        self.current = None

    def _shape(self, rows, length):
        key = (rows, length)
        shape = self.shapes.pop(key, None)
        if shape is None:
            while len(self.shapes) >= MAX_SHAPES:
                self.shapes.pop(next(iter(self.shapes)))
            shape = Shape(self.policy, self.net, rows, length, self.device, self.dtype)
            if self.use_graphs:
                self._capture(shape)
        self.shapes[key] = shape
        return shape

    def _capture(self, shape):
        # On a blank cache: what the warm-up and the capture write is reset before each prefill.
        try:
            shape.capture()
        except torch.cuda.OutOfMemoryError:
            shape.graph = None  # this shape decodes eagerly; a later one may have the room
        except Exception as err:  # noqa: BLE001 -- a model that cannot be captured still decodes, eagerly
            print(f"torch worker: cannot capture a decoding step as a CUDA graph ({type(err).__name__}: {err}); "
                  f"decoding eagerly from now on", file=sys.stderr)
            self.use_graphs = False
            shape.graph = None

    def prefill(self, ids, mask, positions, new_tokens):
        try:
            self.grows = False
            return self._prefill(ids, mask, positions, new_tokens)
        except torch.cuda.OutOfMemoryError:
            pass  # out of the except block, so its traceback's tensors are freed first
        self.clear()
        torch.cuda.empty_cache()
        self.grows = True
        return self.growing.prefill(ids, mask, positions, new_tokens)

    def _prefill(self, ids, mask, positions, new_tokens):
        B, T = ids.shape
        rows = 1 << (B - 1).bit_length()
        # The prompt, then every fed-back token (the last sampled one never is).
        length = -(-(T + max(new_tokens - 1, 1)) // LENGTH_STEP) * LENGTH_STEP
        s = self.current = self._shape(rows, length)
        self.rows, self.slot = B, T
        s.cache.reset()
        pad = lambda t: torch.cat([t, t.new_zeros(rows - B, T)]) if rows > B else t
        ids, mask, positions = pad(ids), pad(mask), pad(positions)
        # Prompt slots a query may see: causal, and not padding.
        seen = mask.bool()  # [rows, T]
        causal = torch.arange(length, device=self.device)[None, :] <= torch.arange(T, device=self.device)[:, None]  # [T, length]
        visible = causal[None, None] & torch.nn.functional.pad(seen, (0, length - T))[:, None, None, :]  # [rows, 1, T, length]
        prompt_mask = torch.zeros(visible.shape, dtype=self.dtype, device=self.device).masked_fill_(~visible, s.blocked)
        logits = self.policy(ids, prompt_mask, positions, cache=s.cache, use_cache=True)[0]
        # The step's buffers: each row sees its prompt; every step opens one slot more.
        s.mask.fill_(s.blocked)
        s.mask[:, 0, 0, :T].masked_fill_(seen, 0)
        s.positions.copy_(positions[:, -1:])
        s.ids.zero_()
        return logits[:B]

    def step(self, next_ids):
        if self.grows:
            return self.growing.step(next_ids)
        s = self.current
        s.ids[:self.rows, 0] = next_ids
        s.positions.add_(1)
        s.mask[:self.rows, 0, 0, self.slot] = 0
        self.slot += 1
        if s.graph is not None:
            s.graph.replay()
            return s.logits[:self.rows]
        return s.forward()[:self.rows]
