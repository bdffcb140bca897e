"""A key/value cache written in place, for batched greedy decoding on a CPU.

transformers' DynamicCache grows by torch.cat: every decoding step copies every layer's whole
cache into newly allocated memory. For a batch of 152 questions that is ~0.5 GB per step, and
for DSPy's 48 prompts with ~450 tokens of demos ~1 GB, which on a 2-core CPU took longer than
the model's own arithmetic (benchmarks/README.md). Here each layer gets its buffer once, sized
for the prompt and the longest answer, and a step writes one column into it; the attention sees
the filled part as a view, the same numbers as the concatenated tensor.

    preallocated(cache, n_layers, capacity)   a DynamicCache whose layers write in place
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
