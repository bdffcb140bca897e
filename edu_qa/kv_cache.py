"""A key/value cache written in place, for batched greedy decoding on a CPU.

transformers' DynamicCache grows by torch.cat: every decoding step copies every layer's whole
cache into newly allocated memory. For a batch of 152 questions that is ~0.5 GB per step, and
for DSPy's 48 prompts with ~450 tokens of demos ~1 GB, which on a 2-core CPU took longer than
the model's own arithmetic (benchmarks/README.md). Here each layer gets its buffer once, sized
for the prompt and the longest answer, and a step writes one column into it; the attention sees
the filled part as a view, the same numbers as the concatenated tensor.

    preallocated(cache, n_layers, capacity)   a DynamicCache whose layers write in place
    rows_of(cache, start, stop, skip)         some of its rows, writing into it
    LastPrompt                                the last single prompt's cache, for the next
    shared_length(rows, limit)                how many first tokens the rows have in common
"""

from __future__ import annotations

from transformers.cache_utils import DynamicCache, DynamicLayer


class InPlaceLayer(DynamicLayer):
    """A DynamicLayer whose keys and values live in a buffer of `capacity` positions; keys and
    values are the filled part (a view), so everything that reads a DynamicLayer reads it."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.filled = capacity, 0

    def lazy_initialization(self, key_states, value_states) -> None:
        batch, heads, _, dim = key_states.shape
        self.dtype, self.device = key_states.dtype, key_states.device
        self.key_buffer = key_states.new_empty(batch, heads, self.capacity, dim)
        self.value_buffer = value_states.new_empty(batch, value_states.shape[1], self.capacity,
                                                   value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, self.filled = self.filled, self.filled + key_states.shape[-2]
        if self.filled > self.capacity:
            raise RuntimeError(f"key/value cache full: {self.filled} > {self.capacity} positions")
        self.key_buffer[:, :, start:self.filled] = key_states
        self.value_buffer[:, :, start:self.filled] = value_states
        return self._views()

    def _views(self):
        self.keys = self.key_buffer[:, :, :self.filled]
        self.values = self.value_buffer[:, :, :self.filled]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.filled

    def rows(self, start: int, stop: int, skip: int) -> "InPlaceLayer":
        """Rows start:stop as a layer of their own that writes into this one's buffer (a
        view), after `skip` positions set to zero: padding, which the attention mask hides
        (zeros, so that a masked position adds exactly nothing)."""
        part = InPlaceLayer(self.capacity)
        part.dtype, part.device, part.is_initialized = self.dtype, self.device, True
        part.key_buffer = self.key_buffer[start:stop]
        part.value_buffer = self.value_buffer[start:stop]
        part.filled = self.filled + skip
        part.key_buffer[:, :, self.filled:part.filled] = 0
        part.value_buffer[:, :, self.filled:part.filled] = 0
        part._views()
        return part

    def advance(self, positions: int) -> None:
        """The next `positions` were written through row views (rows()): count them."""
        self.filled += positions
        self._views()

    def batch_select_indices(self, indices) -> None:
        """Keep only these rows: one copy of the filled part, into a buffer of the new size."""
        if self.is_initialized:
            self.key_buffer = self.key_buffer[indices]
            self.value_buffer = self.value_buffer[indices]
            self._views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self._views()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove < 0 and self.is_initialized:
            self.filled = max(0, self.filled + tokens_to_remove)
            self._views()


def preallocated(cache: DynamicCache | None, n_layers: int, capacity: int) -> DynamicCache:
    """A cache of n_layers in-place layers holding what `cache` holds (None: nothing yet),
    room for `capacity` positions in all."""
    fresh = DynamicCache()
    fresh.layers = [InPlaceLayer(capacity) for _ in range(n_layers)]
    for old, new in zip(cache.layers if cache is not None else [], fresh.layers):
        if old.is_initialized and old.keys.numel():
            new.update(old.keys, old.values)
    return fresh


def rows_of(cache: DynamicCache, start: int, stop: int, skip: int) -> DynamicCache:
    """Rows start:stop of a preallocated cache whose layers hold something, as a cache of their
    own writing into it (InPlaceLayer.rows)."""
    part = DynamicCache()
    part.layers = [layer.rows(start, stop, skip) for layer in cache.layers]
    return part


def shared_length(rows: list[list[int]], limit: int) -> int:
    """How many first tokens all rows have in common, at most limit."""
    n, limit = 0, min(limit, *(len(row) for row in rows))
    while n < limit and all(row[n] == rows[0][n] for row in rows):
        n += 1
    return n


class LastPrompt:
    """The key/value cache of the last prompt answered alone, for the next one that begins the
    same way.

    DSPy's bootstrapping asks the model one training question at a time, and each prompt is
    the same system prompt and demos (~400 tokens) before its own question. Causal attention
    makes the keys and values of a position depend only on the tokens up to it, so those of
    the demos are the ones the last prompt computed: the next prompt reuses them and runs only
    its own tokens through the model (as edu_qa.generate does for the rows of one batch)."""

    def __init__(self, min_shared: int):
        self.min_shared, self.ids, self.layers = min_shared, [], []

    def lookup(self, ids: list[int]) -> DynamicCache | None:
        """A cache of the positions that `ids` shares with the last prompt (one token of its
        own always left to predict from), or None when they share under min_shared."""
        n = shared_length([ids, self.ids], limit=len(ids) - 1)
        if n < self.min_shared:
            return None
        cache = DynamicCache()
        for i, (keys, values) in enumerate(self.layers):
            cache.update(keys[:, :, :n], values[:, :, :n], i)  # copied, not shared
        return cache

    def remember(self, ids: list[int], cache: DynamicCache) -> None:
        """The prompt `ids` and its part of `cache` (a batch of one, after its answer)."""
        self.ids = list(ids)
        self.layers = [(layer.keys[:, :, :len(ids)], layer.values[:, :, :len(ids)])
                       for layer in cache.layers]
