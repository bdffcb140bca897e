"""Runs of one method that differ only in --seed: where a single run falls among them.

    SEEDS_DIR             results/seeds/seed-S/<method>.json (seed 0 is results/<method>.json)
    seed_runs()           every recorded seed run of a method on this dataset and settings
    spread()              mean and range of accuracy and F1 over those runs
    spread_in_words()     "this run (seed 0): 0.71; seeds 0-4: 0.66-0.74, mean 0.70"
    EXERCISES             LESSON.md's exercises that are settings of their own, and
    exercise_runs()       their runs over seeds (python seeds.py --exercises)

A run counts for a method's spread only when its settings are the default run's apart from
the seed and where things are written: other settings answer another question.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from .data import QADataset
from .results import RESULTS_DIR, summarize
from .scoring import grade

SEEDS_DIR = RESULTS_DIR / "seeds"
EXERCISES_DIR = RESULTS_DIR / "exercises"
# LESSON.md's exercises whose finding is a run of other settings: (method, the settings)
EXERCISES = {
    "adapter-chat": ("dspy", ["--adapter", "chat"]),                 # 2: DSPy's field markers
    "epochs-4": ("huggingface_lora", ["--epochs", "4"]),             # 3: more epochs
    "optimizer-labeled": ("dspy", ["--optimizer", "labeled"]),       # 5: cheaper optimizers
    "optimizer-bootstrap": ("dspy", ["--optimizer", "bootstrap"]),
}
# settings that say where a run writes, not what it does
WHERE = {"seed", "results_dir", "output_dir", "question"}


def _folders(results_dir: Path | None) -> tuple[Path, Path, Path]:
    """(results, seeds, exercises) folders: results/'s, or those of another results folder
    (report.py --results-dir, e.g. the committed files checked out elsewhere)."""
    if results_dir is None:
        return RESULTS_DIR, SEEDS_DIR, EXERCISES_DIR
    return Path(results_dir), Path(results_dir) / "seeds", Path(results_dir) / "exercises"


def seed_folder(seed: int, results_dir: Path | None = None) -> Path:
    """Where `python seeds.py` writes seed S (seed 0 is the default run, in results/)."""
    results, seeds, _ = _folders(results_dir)
    return results if seed == 0 else seeds / f"seed-{seed}"


def exercise_folder(exercise: str, seed: int) -> Path:
    """Where `python seeds.py --exercises` writes an exercise's seed S."""
    return EXERCISES_DIR / exercise / f"seed-{seed}"


def exercise_runs(dataset: QADataset, exercise: str,
                  results_dir: Path | None = None) -> list[dict]:
    """The results files of an exercise's runs on this dataset, by seed: those whose settings
    are the default run's with the exercise's settings instead (others answer another question)."""
    method, settings = EXERCISES[exercise]
    results, _, exercises = _folders(results_dir)
    default = _read(results / f"{method}.json")
    if not default:
        return []
    changed = {flag.removeprefix("--").replace("-", "_"): value
               for flag, value in zip(settings[::2], settings[1::2])}
    want = {k: v for k, v in _what(default).items() if k not in changed}
    found = {}
    for path in sorted((exercises / exercise).glob(f"seed-*/{method}.json")):
        res = _read(path)
        if not res or res["dataset"].get("sha256") != dataset.sha256:
            continue
        what = _what(res)
        if {k: v for k, v in what.items() if k not in changed} == want and \
                all(_same(what.get(k), v) for k, v in changed.items()):
            found[res["config"]["seed"]] = res
    return [found[s] for s in sorted(found)]


def _same(value, typed: str) -> bool:
    """A setting's recorded value is what was typed: --epochs 4 is recorded as 4.0."""
    if str(value) == typed:
        return True
    try:
        return float(value) == float(typed)
    except (TypeError, ValueError):
        return False


def _read(path: Path) -> dict | None:
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return res if isinstance(res, dict) and not res.get("dry_run") else None


def _what(res: dict) -> dict:
    return {k: v for k, v in (res.get("config") or {}).items() if k not in WHERE}


def seed_runs(dataset: QADataset, method: str, tests: bool = True,
              results_dir: Path | None = None) -> list[dict]:
    """[{seed, accuracy, f1, kept, *_beyond_noise}] for the method's runs on this dataset whose
    settings are those of results/<method>.json apart from the seed, by seed. tests=False
    (the scoreboard's line, which shows only the scores) grades the answers without the
    intervals and paired tests, which cost a bootstrap per file."""
    results, seeds, _ = _folders(results_dir)
    default = _read(results / f"{method}.json")
    if not default or default["dataset"].get("sha256") != dataset.sha256:
        return []
    found = {}
    for path in [results / f"{method}.json", *sorted(seeds.glob(f"seed-*/{method}.json"))]:
        res = _read(path)
        if not res or res["dataset"].get("sha256") != dataset.sha256 or \
                _what(res) != _what(default):
            continue
        summary = summarize(res) if tests else {"after": graded_means(res)}
        after, change = summary.get("after"), summary.get("change") or {}
        if after:
            found[res["config"]["seed"]] = {
                "seed": res["config"]["seed"], "accuracy": after["accuracy"],
                "f1": after["f1"], "kept": (res.get("extra") or {}).get("kept"),
                "accuracy_beyond_noise": change.get("accuracy_beyond_noise"),
                "f1_beyond_noise": change.get("f1_beyond_noise")}
    return [found[s] for s in sorted(found)]


def graded_means(res: dict) -> dict | None:
    """Accuracy and F1 of a results file's answers, graded with today's metric, as
    summarize() grades them, without its intervals."""
    rows = [r for r in res.get("predictions") or [] if isinstance(r, dict)]
    if not rows or not all(isinstance(r.get("after"), str) for r in rows):
        return None
    grades = [grade(r["after"], r.get("key"), r["reference"]) for r in rows]
    return {"accuracy": round(statistics.fmean(g["correct"] for g in grades), 4),
            "f1": round(statistics.fmean(g["f1"] for g in grades), 4)}


def spread(runs: list[dict], metric: str = "accuracy") -> dict | None:
    """Mean, lowest and highest of a metric over seed runs (None for fewer than two)."""
    values = [r[metric] for r in runs]
    if len(values) < 2:
        return None
    return {"n": len(values), "mean": statistics.fmean(values), "low": min(values),
            "high": max(values), "seeds": [r["seed"] for r in runs]}


def seeds_label(seeds: list[int]) -> str:
    """'seeds 0-4' for a run of consecutive seeds, else 'seeds 0, 2, 7'; 'seed 0' for one."""
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def spread_in_words(dataset: QADataset, method: str, this: dict | None = None,
                    seed: int | None = None) -> str | None:
    """Where a run falls among the recorded seeds, e.g. 'this run (seed 0): accuracy 0.71;
    seeds 0-4: 0.66-0.74 (mean 0.70)'. None when fewer than two seeds are recorded."""
    runs = seed_runs(dataset, method, tests=False)
    acc, f1 = spread(runs), spread(runs, "f1")
    if not acc:
        return None
    text = (f"{seeds_label(acc['seeds'])} (python seeds.py): accuracy {acc['low']:.2f}-"
            f"{acc['high']:.2f} (mean {acc['mean']:.2f}), F1 {f1['low']:.2f}-{f1['high']:.2f} "
            f"(mean {f1['mean']:.2f})")
    if this is not None:
        text = f"this run (seed {seed}): accuracy {this['accuracy']:.2f}, F1 " \
               f"{this['f1']:.2f}; {text}"
    return text


def holds_in_words(runs: list[dict], measure: str = "accuracy") -> str:
    """'more than noise in 3 of 5 seeds': how often the gain over the plain prompt passed its
    paired test (exact McNemar for accuracy, paired bootstrap for F1)."""
    passed = sum(bool(r[f"{measure}_beyond_noise"]) for r in runs)
    return f"more than noise in {passed} of {len(runs)} seeds"
