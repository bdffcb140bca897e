"""Results: what every script writes, in one schema, and reading those files back.

    results/<method>.json     one schema for every method (new_results, write_results)
    results/baseline.json     the shared plain-prompt answers (written by baseline.py)
    load_all_results()        every method's file; summarize() grades its answers again
    run_for_results()         a script run as a student would, and the results it wrote

The views built from these files are in before_after.py (step 5) and scoreboard.py (step 6).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

from . import scoring
from .cli import run_quietly
from .data import HERE, QA, QADataset, by_subject
from .machine_facts import disk_size, machine
from .scoring import is_correct, score

RESULTS_DIR = HERE / "results"        # the README's measured runs (committed)
EXERCISE_RESULTS = HERE / "outputs" / "results"  # runs with other settings (not committed)
# Step 6 lists the methods in this order; a method without results shows how to produce them.
METHODS = {
    "dspy": ("DSPy prompt optimization", "python dspy_example.py"),
    "huggingface_lora": ("LoRA (transformers + peft)", "python huggingface_lora.py"),
    "openai_finetune": ("OpenAI fine-tuning", "python openai_finetune.py"),
}
BASELINE_FILE = "baseline.json"  # the shared plain-prompt answers (baseline.py)
# 2: before/after carry 95% intervals, strict accuracy and how answers are written; rows carry
# their grades; "before_source" names the shared plain-prompt baseline. Files of version 1
# still read: the scoreboard grades every file's answers again with today's metric.
SCHEMA_VERSION = 2


def command_line(method: str, cfg) -> str:
    """The command that reproduces a run: the script plus every setting that is not default."""
    from .settings import with_results_dir
    parts = [METHODS[method][1]]
    chosen = with_results_dir(dataclasses.replace(cfg, results_dir=None)).results_dir \
        if hasattr(cfg, "results_dir") else None
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value == f.default or (f.name == "results_dir" and value == chosen):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def prediction_rows(examples: list[QA], before: list[str] | None, after: list[str] | None):
    """One row per test question: the reference, the key, both answers and whether each
    holds the key (the grade a reader of results/*.json would otherwise recompute)."""
    rows = []
    for i, ex in enumerate(examples):
        row = {"question": ex.question, "reference": ex.answer, "key": ex.key,
               "subject": ex.subject, "before": before[i] if before else None,
               "after": after[i] if after else None}
        for when in ("before", "after"):
            if row[when] is not None:
                row[f"{when}_correct"] = is_correct(row[when], ex.key, ex.answer)
        rows.append(row)
    return rows


def new_results(method: str, cfg, data: QADataset, *, model: str, dry_run: bool = False,
                train=None, scores: dict | None = None, rows=None, **fields) -> dict:
    """The results of a run, in the one schema of every method (README: 'Results schema'):
    train (the examples learned from), scores (before and after, from step 5), rows (the
    answers) and any other field by name; times are rounded, a folder's size is measured."""
    results = _skeleton(method, cfg, data, model, dry_run)
    if train is not None:
        results["dataset"].update(train_used=len(train), train_by_subject=by_subject(train))
    if scores:
        results.update(before=scores["before"], after=scores["after"])
    if rows is not None:
        results["predictions"] = rows
    for name in ("wall_time_s", "tokens"):
        results[name].update({k: round(v, 3) if isinstance(v, float) else v
                              for k, v in fields.pop(name, {}).items()})
    results.update(fields)
    return results


def artifact(path) -> dict:
    """What a method made, where and how big: an adapter folder, a program file."""
    return {"path": str(path), "bytes": disk_size(path)}


def _skeleton(method, cfg, data, model, dry_run) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "method": method,
        "title": METHODS[method][0],
        "dry_run": dry_run,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command_line(method, cfg),
        "machine": machine(),
        "model": model,
        "tuned_model": None,
        "dataset": {"file": portable(data.path), "sha256": data.sha256,
                    "split_sizes": data.sizes(), "train_used": None,
                    "train_by_subject": None},
        "config": {k: portable(v) for k, v in dataclasses.asdict(cfg).items()},
        "before": None,
        "before_source": None,
        "after": None,
        "predictions": [],
        "wall_time_s": {"prepare": None, "tune": None, "infer_per_question": None},
        "tokens": {"training": None, "inference": None},
        "cost_usd": {"amount": 0.0, "kind": "free"},
        "trainable_params": None,
        "total_params": None,
        "artifact": None,
        "data_left_machine": False,
        "versions": {},
        "prompt_template": None,
        "extra": {},
    }


def portable(value):
    """A path inside the project, relative to it, so results files read the same anywhere."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str) and value.startswith(str(HERE) + os.sep):
        return os.path.relpath(value, HERE)
    return value


def write_results(results: dict, results_dir: str | Path = RESULTS_DIR) -> Path:
    if results.get("artifact"):
        results["artifact"]["path"] = portable(results["artifact"]["path"])
    return write_json(Path(results_dir) / f"{results['method']}.json", results)


def results_file(results_dir: str | Path, name: str) -> Path:
    """results_dir/name; for an exercise's folder (outputs/results/...) without that file, the
    README's results/name, so its scoreboard shows the measured rows beside the exercise."""
    path = Path(results_dir) / name
    exercise = Path(results_dir).resolve().is_relative_to(EXERCISE_RESULTS.resolve())
    return RESULTS_DIR / name if exercise and not path.exists() else path


def load_all_results(results_dir: str | Path = RESULTS_DIR) -> dict[str, dict]:
    found = {}
    for method in METHODS:
        path = results_file(results_dir, f"{method}.json")
        if path.exists():
            try:
                found[method] = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                found[method] = {"unreadable": f"{path}: {err}"}
    return found


def current_results(dataset: QADataset, results_dir: str | Path = RESULTS_DIR) -> dict:
    """The readable results files made from this dataset (same sha256), by method."""
    return {m: r for m, r in load_all_results(results_dir).items()
            if "unreadable" not in r and r["dataset"].get("sha256") == dataset.sha256}



def run_for_results(script, argv: list[str], results_dir, baseline=None) -> dict:
    """A teaching script run as a student would (cli.run_quietly) with --results-dir
    results_dir, and the results file it wrote. The shared baseline is copied in first, so
    it is not answered again."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    if baseline is not None and Path(baseline).exists():
        shutil.copy(baseline, results_dir / BASELINE_FILE)
    run_quietly(script, [*argv, "--results-dir", str(results_dir)])
    method = next(m for m, (_, command) in METHODS.items()
                  if command.endswith(" " + Path(script).name))
    return json.loads((results_dir / f"{method}.json").read_text(encoding="utf-8"))


def write_json(path: Path, obj: dict) -> Path:
    """Written whole or not at all: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def summarize(res: dict) -> dict:
    """A results file's answers graded again with today's metric (so a file of any schema
    version, or from before a grader fix, reads right): scores with intervals, and the paired
    change from before to after."""
    rows = [r for r in res.get("predictions") or [] if isinstance(r, dict)]
    examples = [QA(r["question"], r["reference"], r.get("key"), r.get("subject") or "general",
                   "test", 0) for r in rows]
    out = {}
    for when in ("before", "after"):
        answers = [r.get(when) for r in rows]
        if rows and all(isinstance(a, str) for a in answers):
            failures = (res.get(when) or {}).get("parse_failures")
            out[when] = score(examples, answers, failures)
    if "before" in out and "after" in out:
        out["change"] = scoring.compare(rows)
    return out


def fmt_seconds(s):
    if s is None:
        return "–"
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def fmt_bytes(n):
    return "–" if not n else f"{n / 1e3:.1f} kB" if n < 1e6 else f"{n / 1e6:.1f} MB"
