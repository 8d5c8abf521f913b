"""The decoding steps of generate: prefill a left-padded batch, then one token per row per step.

Two ways, the same numbers:
  GrowingDecoder  the model's own cache, one slot longer each step (any model, CPU, torchrun);
  StaticDecoder   a KV cache of fixed length, and on CUDA each step is one replayed CUDA graph.

Eager decoding of a big model at a small batch spends most of a step launching hundreds of
kernels from Python; a captured graph launches them all at once. A graph needs fixed shapes and
addresses: a static KV cache (transformers' StaticCache, or the test model's own), inputs written
into fixed buffers, and the same served adapter (the engine drops the graphs when it swaps one).
A kept shape serves any batch with no more rows and no longer replies (decoding reads the weights
once a step however many rows there are), so a few graphs serve every batch.
"""

import sys

import torch

from models import copy_prefix, new_static_cache

LENGTH_STEP = 256  # cache lengths are multiples of this
MAX_SHAPES = 4  # static caches (and graphs) kept, most recently used last


class GrowingDecoder:
    def __init__(self, policy):
        self.policy = policy
        self.cache = self.mask = self.positions = None
        self.paused = False  # nothing to pause: nothing is kept between batches

    def kind(self):
        return "growing cache"

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

    def release(self):
        """After a batch: its cache is garbage, and memory a training step may need."""
        self.cache = self.mask = self.positions = None

    def clear(self):
        self.release()


class Shape:
    """A static cache of `rows` x `length` and the fixed buffers of one decoding step on it."""

    def __init__(self, policy, net, rows, length, device, dtype):
        self.policy, self.rows, self.length = policy, rows, length
        # Allocated here, on the current stream, not lazily inside a capture's warm-up on its side
        # stream (whose freed blocks the allocator would not hand to training).
        self.cache = new_static_cache(net, rows, length, device, dtype)
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
        """Records one step as a CUDA graph, after a warm-up on a side stream (kernel selection,
        workspaces) as torch.cuda.graphs asks. What they write into the cache is overwritten by
        the next prefill."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.forward()
        finally:
            torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.logits = self.forward()
        self.graph = graph


def _out_of_memory(err):
    """An out-of-memory error, or one a failed capture raised over it (capture_end reports the
    invalidated capture and hides the allocation failure as its context)."""
    while err is not None:
        if isinstance(err, torch.cuda.OutOfMemoryError):
            return True
        err = err.__cause__ or err.__context__
    return False


class StaticDecoder:
    def __init__(self, policy, net, device, dtype, use_graphs):
        self.policy, self.net, self.device, self.dtype = policy, net, device, dtype
        self.use_graphs = use_graphs
        self.shapes = {}  # (rows, length) -> Shape, least recently used first
        self.current = None
        # For a batch with no cache or graph of its own (no room for one; during a training step,
        # whose memory it is; a model that cannot be captured): it grows its cache as it goes.
        self.growing = GrowingDecoder(policy)
        self.grows = False
        self.paused = False  # set by the engine during a training step
        self.broken = False  # a capture failed other than for memory: graphs are off for good
        self.counts = {"captures": 0, "graphSteps": 0, "staticSteps": 0, "grownBatches": 0}

    def kind(self):
        if self.broken:
            return "growing cache (no CUDA graph could be captured)"
        return "static cache, CUDA graphs" if self.use_graphs else "static cache"

    def release(self):
        self.growing.release()

    def clear(self):
        """Frees the caches and graphs: the served adapter changed, or training needs the memory."""
        self.shapes.clear()
        self.current = None
        self.growing.clear()

    def prefill(self, ids, mask, positions, new_tokens):
        self.grows = False
        if not (self.paused or self.broken):
            out_of_memory = False
            try:
                logits = self._prefill(ids, mask, positions, new_tokens)
                if logits is not None:
                    return logits
            except torch.cuda.OutOfMemoryError:
                out_of_memory = True  # handled below, out of the except block: its traceback's tensors go first
            if out_of_memory:
                self.clear()
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        self.grows = True
        self.counts["grownBatches"] += 1
        return self.growing.prefill(ids, mask, positions, new_tokens)

    def _shape(self, rows, length):
        """The smallest kept shape that holds the batch, else a new one (captured on CUDA); None
        when capturing failed."""
        fits = [key for key in self.shapes if key[0] >= rows and key[1] >= length]
        key = min(fits, key=lambda k: k[0] * k[1], default=None)
        if key is not None:
            shape = self.shapes.pop(key)
            self.shapes[key] = shape
            return shape
        while len(self.shapes) >= MAX_SHAPES:
            self.shapes.pop(next(iter(self.shapes)))
        shape = Shape(self.policy, self.net, rows, length, self.device, self.dtype)
        if self.use_graphs:
            try:
                shape.capture()
                self.counts["captures"] += 1
            except Exception as err:  # noqa: BLE001 -- a model that cannot be captured still decodes
                if _out_of_memory(err):
                    raise torch.cuda.OutOfMemoryError(f"capturing a decoding step: {err}") from None
                print(f"torch worker: cannot capture a decoding step as a CUDA graph ({type(err).__name__}: {err}); "
                      f"decoding with a growing cache from now on", file=sys.stderr)
                self.use_graphs, self.broken = False, True
                return None
        self.shapes[(rows, length)] = shape
        return shape

    def _prefill(self, ids, mask, positions, new_tokens):
        """The prompt's logits [B, V], decoding set up on a static shape; None if no graph could be made."""
        B, T = ids.shape
        rows = 1 << (B - 1).bit_length()
        # The prompt, then every fed-back token (the last sampled one never is).
        length = -(-(T + max(new_tokens - 1, 1)) // LENGTH_STEP) * LENGTH_STEP
        s = self._shape(rows, length)
        if s is None:
            return None
        # The prompt through the model's own (growing) cache, on the real rows only, then copied
        # into the static one: the same numbers as growing decoding, no [rows, T, length] mask.
        logits, prefix = self.policy(ids, mask, positions, use_cache=True)
        copy_prefix(s.cache, prefix, T)
        s.mask.fill_(s.blocked)
        s.mask[:B, 0, 0, :T].masked_fill_(mask.bool(), 0)
        s.positions.zero_()
        s.positions[:B].copy_(positions[:, -1:])
        s.ids.zero_()
        self.current, self.rows, self.slot = s, B, T
        return logits

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
            self.counts["graphSteps"] += 1
            return s.logits[:self.rows]  # the graph's output buffer: read before the next replay
        self.counts["staticSteps"] += 1
        return s.forward()[:self.rows]
