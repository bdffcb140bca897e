"""A training batch's shared prompt goes through the model once, not once per row.

Every training example begins with the same tokens: the chat template's system prompt and the
start of the user turn, 31 of a training example's ~74 tokens for the embedded model. A batch
of 8 computes them 8 times, with the same result each time: the same tokens at the same
positions see only each other. Here they go through the model once (one row), and their keys
and values are repeated to every row of the batch, which then computes only its own tokens
against them, exactly as generation reuses a prompt's cache (local_model.generate). Gradients
flow back through the repeated keys and values, so LoRA's matrices learn from the shared
prompt as from every row: the same loss and gradients, rounded differently (a matrix product
of 1 row instead of 8; tests/test_lora.py), and a CPU step 1.15x to 1.3x shorter
(benchmarks/cpu_training.py, benchmarks/README.md).

    shared_length(batch)   how many first tokens every row has, with no loss read on them
    through_once(model, batch)   the shared prompt's pass; the batch then holds its cache
    SharedPromptTrainer    transformers' Trainer, with through_once before each loss
"""

from __future__ import annotations

import torch
from transformers import Trainer

from . import kv_cache

# fewer shared tokens than this are computed in the rows as before: a second pass through
# the model costs its per-layer overhead whatever its length
MIN_SHARED = 8


def shared_length(batch: dict) -> int:
    """The number of first positions that are the same real tokens in every row and predict no
    answer token (no label, and no kept logit, on them or the position after them): the part
    of the batch that can go through the model once. 0 if it is too short to be worth it."""
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    if len(ids) < 2:
        return 0
    rows = [row[m.bool()].tolist() for row, m in zip(ids, mask)]  # the real tokens
    limit = min(len(row) for row in rows) - 1  # every row keeps a token of its own
    # the logits at position i predict the token at i + 1: the shared positions must be
    # followed by a position whose label is -100 too, so the loss reads none of their logits
    read = (labels != -100).any(0).nonzero()
    if len(read):
        limit = min(limit, int(read[0]) - 1)
    n = kv_cache.shared_length(rows, limit)  # as generation finds a batch's shared prefix
    return n if n >= MIN_SHARED else 0


def through_once(model, batch: dict) -> dict:
    """Run the batch's shared prompt (batch["shared_prompt"] tokens, set by the collator) once
    and put its keys and values, repeated to every row, in batch["past_key_values"]; the rows'
    input_ids, labels and kept-logit positions then start after it. The attention mask stays
    whole (prompt and rows), as with any cache. Changes batch in place, and returns it."""
    shared = batch.pop("shared_prompt", 0)
    if not shared:
        return batch
    rows = len(batch["input_ids"])
    # no logits needed from the prompt's pass: only its keys and values (logits_to_keep=1
    # computes the last position's, the least the models allow)
    prompt = model(input_ids=batch["input_ids"][:1, :shared], use_cache=True, logits_to_keep=1)
    cache = prompt.past_key_values
    cache.batch_repeat_interleave(rows)  # differentiable: each row's gradient flows back
    for key in ("input_ids", "labels", "logits_to_keep"):
        if key in batch:
            batch[key] = batch[key][:, shared:]
    batch["past_key_values"] = cache
    return batch


class SharedPromptTrainer(Trainer):
    """transformers' Trainer whose loss, in training and in evaluation, computes the batch's
    shared prompt once (through_once); a batch without a shared prompt (on a GPU, or too short
    a prompt) goes through plain Trainer, and so does every batch where sharing would not be
    the same training (can_share)."""

    def can_share(self) -> bool:
        """False under several processes or GPUs (DistributedDataParallel and DataParallel
        expect one forward pass per backward), with gradient checkpointing (which keeps no keys
        and values), and with dropout (LoRA's or the attention's: it draws a mask per row,
        which one pass for all rows would share)."""
        model = self.model
        if self.accelerator.num_processes > 1 or self.args.n_gpu > 1 or \
                getattr(model, "is_gradient_checkpointing", False):
            return False
        return getattr(model.config, "attention_dropout", 0) == 0 and not any(
            isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.can_share():  # asked every step (~1 ms): train() may turn checkpointing on
            inputs.pop("shared_prompt", None)
        return super().compute_loss(model, through_once(model, inputs), return_outputs,
                                    num_items_in_batch)
