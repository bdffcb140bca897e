"""One run's record, and the small records each step returns.

The three scripts share the shape of a run: step 1 returns Prepared, step 4 Tuned, step 5
Answered, in all of them, so that a diff of two scripts shows the method and not its plumbing.
A Run is made in step 1; each step writes its own facts into it (settings, timings, scores,
artifacts, choices) as it learns them; step 6 saves it as results/<method>.json, in the one
schema of every method (README: 'Results schema'), and compares.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import QADataset, by_subject


@dataclass(frozen=True)
class Prepared:
    """Step 1: the dataset and its splits (train possibly a --train-size sample), and where
    the method runs: a frozen record decided once (device and precision, the LM, the
    service)."""
    data: QADataset
    train: list
    dev: list
    test: list
    where: Any


@dataclass(frozen=True)
class Tuned:
    """Step 4: what answers "after" (a model with its adapter, a program, a model id), which
    candidate was kept and why it is that one, how long tuning took, what it left on disk."""
    model: Any
    kept: str
    seconds: float
    artifact: Path | str | None = None
    optimized: Any = None  # the optimized candidate even when not kept (DSPy scores it too)


@dataclass(frozen=True)
class Answered:
    """Step 5: the plain prompt's and the kept model's answers to the test questions, graded
    alike (scores and the per-question rows), and how long answering took."""
    before: list[str]
    after: list[str]
    scores: dict
    rows: list[dict]
    seconds: float


@dataclass
class Run:
    """The results file of one run, filled in step by step; saved once, in step 6."""
    method: str
    cfg: Any
    data: QADataset
    results: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, method: str, cfg, data: QADataset, train, model: str) -> Run:
        """Step 1: the run's settings, command, machine, dataset and training sample."""
        from . import new_results  # (at call time: the package is loaded by then)
        run = cls(method, cfg, data, new_results(method, cfg, data, model=model))
        run.results["dataset"].update(train_used=len(train), train_by_subject=by_subject(train))
        return run

    def set(self, **fields) -> None:
        """Top-level facts: model, tuned_model, versions, artifact, trainable_params, ..."""
        self.results.update(fields)

    def timed(self, **seconds: float) -> None:
        """wall_time_s: prepare (steps 1-3), tune (step 4), infer_per_question (step 5)."""
        self.results["wall_time_s"].update(
            {k: round(v, 3) if isinstance(v, float) else v for k, v in seconds.items()})

    def prepared(self) -> None:
        """Steps 1-3 are done: what getting ready took."""
        self.timed(prepare=time.perf_counter() - self.started)

    def counted(self, **tokens) -> None:
        """tokens: training (tokens trained on), inference (generated), input, output, ..."""
        self.results["tokens"].update(tokens)

    def extra(self, **fields) -> None:
        """The method's own facts: its choices, its log, its checks."""
        self.results["extra"].update(fields)

    def answered(self, answered: Answered, source: dict, per_question_answers: int) -> None:
        """Step 5's scores and answers; per_question_answers: how many answers each test
        question needed (before and after, and any other stage), for the time per answer."""
        self.results.update(before=answered.scores["before"], after=answered.scores["after"],
                            predictions=answered.rows, before_source=source)
        self.timed(infer_per_question=answered.seconds /
                   (per_question_answers * len(self.data.split("test"))))

    def save_and_compare(self, console) -> Path:
        """Step 6: the whole run's time, results/<method>.json, the scoreboard, one question
        through every method, and which method the numbers support (save_and_compare)."""
        from . import save_and_compare
        self.timed(total=time.perf_counter() - self.started)
        return save_and_compare(console, self.data, self.results, self.cfg.results_dir,
                                self.cfg.question)
