"""The LoRA recipe's settings, in one place: huggingface_lora.py's defaults, what the local
fine-tuning service trains a job with, and what the benchmarks measure.

Why the values live here and the calls do not: huggingface_lora.py makes the library calls
(LoraConfig, get_peft_model, TrainingArguments, Trainer) in plain sight, because they are the
lesson; the service (edu_qa/service) is another program, an OpenAI-style job runner whose jobs
are chat files, whose checkpoints are OpenAI's objects and whose training must stop on cancel,
so it makes the same calls in its own training unit. What must not drift between them, the
numbers that decide what is trained, is read by both from this file (a test checks it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# the embedded model (SmolLM2-135M-Instruct) under an OpenAI-style model id: the name the
# local service serves it as, and the OpenAI script's default --local-model
EMBEDDED_ID = "smollm2-135m-instruct"


@dataclass(frozen=True)
class LoraRecipe:
    lora_r: int = 16              # rank of each update: small ranks suffice for a narrow task
    lora_alpha: int = 32          # the update is scaled by alpha / r; 2 * r is usual
    # no dropout: with 0.05 the dev-judged quality was the same over 5 seeds, and drawing its
    # random masks took a fifth of a CPU step (benchmarks/README.md); on a GPU, 0 is what the
    # measured QLoRA figure used
    lora_dropout: float = 0.0
    target_modules: str = "all-linear"  # attention + MLP: adapts more than q,v alone
    epochs: float = 2             # chosen on the dev loss (one under-fits)
    learning_rate: float = 2e-3   # LoRA tolerates ~10x the full fine-tuning rate
    batch_size: int = 8           # examples per optimizer step (the effective batch)
    max_length: int = 160         # tokens per example; longer are cut
    lr_scheduler_type: str = "cosine"  # decays to ~0 so the last epoch settles
    warmup_steps: int = 2

    def as_dict(self) -> dict:
        return asdict(self)


LORA = LoraRecipe()
