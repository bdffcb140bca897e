"""The plain-prompt baseline: the one "before" every method is measured against.

    plain_prompt_baseline()   the test answers of a model to the plain chat prompt, answered
                              by the first script that needs them and saved to
                              results/baseline.json; the other scripts read them back
    read_baseline()           that file, or None
    baseline_score()          its answers graded as a method's are (summarize)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .cli import say
from .data import SYSTEM_PROMPT, QADataset, chat_messages
from .machine_facts import machine
from .results import (BASELINE_FILE, RESULTS_DIR, SCHEMA_VERSION, portable, prediction_rows,
                      results_file, summarize, write_json)
from .scoring import score

BASELINE_TITLE = "Plain prompt (no adaptation)"


def plain_prompt_baseline(model: str, data: QADataset, max_new_tokens: int, answer,
                          console, results_dir: str | Path = RESULTS_DIR) -> tuple[list, dict]:
    """The test answers of `model` to the plain chat prompt (SYSTEM_PROMPT + the question,
    greedy): the one "before" of every method on that model. Computed by the first script that
    needs it, with `answer(conversations) -> answers`, saved to results/baseline.json, and
    read back by the others, so every method is measured against the same answers."""
    test = data.split("test")
    settings = {"model": model, "dataset_sha256": data.sha256, "system_prompt": SYSTEM_PROMPT,
                "max_new_tokens": max_new_tokens, "decoding": "greedy"}
    path = results_file(results_dir, BASELINE_FILE)
    saved = read_baseline(path)
    if saved and saved.get("settings") == settings and \
            [p["question"] for p in saved["predictions"]] == [ex.question for ex in test]:
        say(console, "before: ", f"the plain-prompt baseline every method shares, "
            f"{portable(path)} ({saved['created'][:16].replace('T', ' ')}), not answered again")
        return [p["answer"] for p in saved["predictions"]], \
            {"kind": "plain-prompt baseline", "file": portable(path), "this_run": False}
    start = time.perf_counter()
    answers = answer([chat_messages(ex.question) for ex in test])
    seconds = time.perf_counter() - start
    rows = prediction_rows(test, answers, None)
    baseline = {"schema_version": SCHEMA_VERSION, "method": "baseline", "title": BASELINE_TITLE,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                "model": model, "settings": settings, "seconds": round(seconds, 2),
                "score": score(test, answers),
                "predictions": [{"question": r["question"], "reference": r["reference"],
                                 "key": r["key"], "subject": r["subject"], "answer": r["before"],
                                 "correct": r["before_correct"]} for r in rows]}
    path = write_json(Path(results_dir) / BASELINE_FILE, baseline)
    console.print(f"before: the plain-prompt baseline of this model, answered now "
                  f"({seconds:.1f} s) and saved to {portable(path)} for the other methods")
    return answers, {"kind": "plain-prompt baseline", "file": portable(path), "this_run": True}


def read_baseline(path: Path) -> dict | None:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return saved if isinstance(saved, dict) and isinstance(saved.get("predictions"), list) \
        else None
def baseline_score(baseline: dict | None, dataset: QADataset) -> dict | None:
    """The shared baseline's answers graded as summarize() grades a method's (None when the
    file is missing or made from another dataset)."""
    if not baseline or baseline.get("settings", {}).get("dataset_sha256") != dataset.sha256:
        return None
    rows = [dict(r, after=r["answer"]) for r in baseline["predictions"]]
    return summarize({"predictions": rows})["after"]
