"""Results: what every script writes, and the views built from all of them.

    results/<method>.json     one schema for every method (new_results, write_results)
    results/baseline.json     the plain-prompt answers every method is measured against
    report_test_answers()     step 5: before and after graded, compared, two shown in full
    print_scoreboard()        step 6: one row per method, with where its numbers come from
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from . import scoring
from .cli import UserError, notice, run_quietly, say, visible
from .data import HERE, QA, SYSTEM_PROMPT, QADataset, by_subject, chat_messages
from .local_model import EMBEDDED_DESCRIPTION, EMBEDDED_MODEL, disk_size, machine
from .scoring import f1, is_correct, normalize, score

RESULTS_DIR = HERE / "results"        # the README's measured runs (committed)
EXERCISE_RESULTS = HERE / "outputs" / "results"  # runs with other settings (not committed)
# Step 6 lists the methods in this order; a method without results shows how to produce them.
METHODS = {
    "dspy": ("DSPy prompt optimization", "python dspy_example.py"),
    "huggingface_lora": ("LoRA (transformers + peft)", "python huggingface_lora.py"),
    "openai_finetune": ("OpenAI fine-tuning", "python openai_finetune.py"),
}
# what each method makes, for "what it produced" (a file's size alone does not say)
PRODUCES = {"dspy": "prompt program", "huggingface_lora": "LoRA adapter",
            "openai_finetune": "fine-tuned model"}
# in the terminal's narrow columns
SHORT_NAMES = {"dspy": "DSPy", "huggingface_lora": "LoRA", "openai_finetune": "OpenAI-style",
               "baseline": "Plain prompt"}
BASELINE_FILE = "baseline.json"
BASELINE_TITLE = "Plain prompt (no adaptation)"
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


def run_for_results(script, argv: list[str], results_dir, baseline=None) -> dict:
    """A teaching script run as a student would (cli.run_quietly) with --results-dir
    results_dir, and the results file it wrote. The shared baseline is copied in first, so
    it is not answered again."""
    import shutil
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


def report_test_answers(console, test: list[QA], before: list[str], after: list[str],
                        title: str, parse_failures: dict | None = None):
    """Score both sets of answers, say whether the change is more than noise, list the
    questions fixed and broken, and show one fixed and one broken answer in full.
    Returns (scores, rows, change)."""
    failures = parse_failures or {}
    scores = {"before": score(test, before, failures.get("before")),
              "after": score(test, after, failures.get("after"))}
    rows = prediction_rows(test, before, after)
    change = scoring.compare(rows)
    console.print(f"test, {len(test)} questions (95% intervals; F1: word overlap with the "
                  "reference):")
    for when, label in (("before", "before (plain prompt)"), ("after", "after")):
        sc = scores[when]
        note = f" | parse failures {sc['parse_failures']}/{sc['n']}" \
            if sc.get("parse_failures") is not None else ""
        console.print(f"  {label:21}: accuracy {scoring.fmt_ci(sc['accuracy'], sc['accuracy_ci'])}"
                      f" | strict {sc['strict_accuracy']:.2f} | F1 "
                      f"{scoring.fmt_ci(sc['f1'], sc['f1_ci'])}{note}")
    console.print("change in accuracy: " + scoring.change_in_words(change))
    console.print("change in word-overlap F1: " + scoring.change_in_words(change, "f1"))
    print_changed_questions(console, change)
    show_changed_examples(console, rows, title)
    notice(console, style_or_facts(scores["before"], scores["after"], change))
    return scores, rows, change


def style_or_facts(before: dict, after: dict, change: dict) -> str:
    """Did the method change how the model answers, what it knows, or both?"""
    first = [s.get("answer_first") for s in (before, after)]
    words = f"answers went from {before['words_per_answer']:.0f} to " \
            f"{after['words_per_answer']:.0f} words"
    if None not in first:
        words += f", and right answers give the key fact first {first[0]:.0%} -> {first[1]:.0%}"
    style = abs(after["words_per_answer"] - before["words_per_answer"]) >= 5 or \
        (None not in first and abs(first[1] - first[0]) >= 0.1)
    facts = change["accuracy_beyond_noise"]
    verdict = ("both the style and the facts changed" if style and facts else
               "the style changed; whether the facts did is within noise" if style else
               "the facts changed more than noise, the style little" if facts else
               "neither style nor facts changed beyond noise")
    return f"{words}: {verdict}."


SHOWN = 4  # changed questions named in step 5; the results file lists them all


def print_changed_questions(console, change: dict) -> None:
    """The questions the method fixed and broke; how many stay wrong (results/<method>.json
    and the README's results list them)."""
    def first(questions: list[str]) -> str:
        more = f"; ... {len(questions) - SHOWN} more" if len(questions) > SHOWN else ""
        return "; ".join(questions[:SHOWN]) + more if questions else "none"
    say(console, f"fixed ({len(change['fixed'])}): ", first(change["fixed"]))
    say(console, f"broken ({len(change['broken'])}): ", first(change["broken"])
        + f" | still wrong: {len(change['still_wrong'])} (all of them: the results file)")


def mark(correct) -> str:
    return "" if correct is None else "✓ " if correct else "✗ "


def show_changed_examples(console, rows: list[dict], title: str = "") -> None:
    """Step 5: one fixed and one broken question (else the first), the answer before and
    after in full (✓ key found, ✗ not): what the change looks like, not only its count."""
    picks = [(label, next((r for r in rows if r.get("before_correct") is not None
                           and (r["before_correct"], r["after_correct"]) == pair), None))
             for label, pair in (("fixed", (False, True)), ("broken", (True, False)))]
    picks = [(label, r) for label, r in picks if r] or [("first question", rows[0])]
    if title:
        say(console, f"{title} (✓ key fact found, ✗ not):")
    for label, r in picks:
        say(console, f"{label}: ", f"{r['question']} (key: {r['key'] or 'the whole answer'})")
        for when in ("before", "after"):
            say(console, f"  {when:6} ", mark(r.get(f"{when}_correct")) + (r[when] or "–"))


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


def produced(res: dict) -> str:
    """'LoRA adapter, 23.1 MB'; for a model kept at a service, its id."""
    artifact = res.get("artifact") or {}
    noun = PRODUCES.get(res.get("method"), "artifact")
    if not artifact:
        return "nothing kept (the base was best on dev)" if res.get("after") else "–"
    if artifact.get("bytes"):
        return f"{noun}, {fmt_bytes(artifact['bytes'])}"
    return f"{noun} at the service: {artifact.get('path')}"


def _source(path: Path, res: dict, this_run: str | None, short: bool = False) -> str:
    if res.get("method") == this_run:
        return "this run"
    when = str(res.get("created", ""))[:16].replace("T", " ")
    return when[5:] if short else f"{portable(path)}, {when}"


def baseline_score(baseline: dict | None, dataset: QADataset) -> dict | None:
    """The shared baseline's answers graded as summarize() grades a method's (None when the
    file is missing or made from another dataset)."""
    if not baseline or baseline.get("settings", {}).get("dataset_sha256") != dataset.sha256:
        return None
    rows = [dict(r, after=r["answer"]) for r in baseline["predictions"]]
    return summarize({"predictions": rows})["after"]


def scoreboard_columns(dataset: QADataset, results_dir: str | Path = RESULTS_DIR,
                       this_run: str | None = None) -> list[dict]:
    """The plain-prompt baseline, then one column per method, in METHODS order: each says where
    its numbers come from (this run, or a results file and its date); results for another
    dataset are not mixed in."""
    results_dir = Path(results_dir)
    n_test = len(dataset.split("test"))
    columns = []
    baseline_path = results_file(results_dir, BASELINE_FILE)
    baseline = read_baseline(baseline_path)
    found = load_all_results(results_dir)
    made_now = ((found.get(this_run) or {}).get("before_source") or {}).get("this_run")
    sc = baseline_score(baseline, dataset)
    if sc:
        columns.append({
            "method": BASELINE_TITLE, "short": SHORT_NAMES["baseline"], "status": "ok",
            "source": "this run" if made_now
            else _source(baseline_path, baseline, None),
            "short_source": "this run" if made_now
            else _source(baseline_path, baseline, None, short=True),
            "model": _model_name(baseline["model"]), **_score_cells(sc),
            "vs_accuracy": "(the common before)", "vs_f1": "", "tune_time": "–",
            "short_vs_accuracy": "(the common before)", "short_vs_f1": "",
            "cost": "$0.00 (free)", "trainable": "0", "produced": "–",
            "data_sent": "no", "note": ""})
    for method, (title, command) in METHODS.items():
        res = found.get(method)
        path = results_file(results_dir, f"{method}.json")
        col = {"method": title, "short": SHORT_NAMES[method], "status": "ok"}
        if res is None:
            col.update(status="missing", note=f"not run: {command}")
        elif "unreadable" in res:
            col.update(status="unreadable", note=res["unreadable"])
        elif res.get("dataset", {}).get("sha256") != dataset.sha256:
            col.update(status="other-dataset",
                       note=f"results are for another dataset ({res['dataset'].get('file')}); "
                            f"re-run: {command}")
        else:
            summary = summarize(res)
            col.update(scores=summary.get("after"), seed=(res.get("config") or {}).get("seed"),
                       change=summary.get("change"), tune_s=res["wall_time_s"].get("tune"),
                       left_machine=bool(res.get("data_left_machine")),
                       dry_run=bool(res.get("dry_run")))
            cost = res["cost_usd"]
            change = summary.get("change")
            col.update(
                source=_source(path, res, this_run), model=res["model"],
                short_source=_source(path, res, this_run, short=True),
                **_score_cells(summary.get("after")),
                vs_accuracy=scoring.change_in_words(change) if change else "–",
                vs_f1=scoring.change_in_words(change, "f1") if change else "–",
                short_vs_accuracy=scoring.short_change(change) if change else "–",
                short_vs_f1=scoring.short_change(change, "f1") if change else "–",
                tune_time=fmt_seconds(res["wall_time_s"].get("tune")),
                cost=f"${cost['amount']:.2f} ({cost['kind']})",
                trainable=(f"{res['trainable_params']:,}" if res.get("trainable_params") is not None
                           else "–"),
                produced=produced(res), data_sent=data_sent(res),
                note="dry run: nothing trained or scored" if res.get("dry_run") else "")
            if res.get("dry_run"):
                col.update(accuracy="– (dry run)", f1="–")
        columns.append(col)
    for col in columns:
        col.setdefault("n_test", n_test)
    return columns


def _model_name(model: str) -> str:
    return EMBEDDED_DESCRIPTION if model == EMBEDDED_MODEL else model


def _score_cells(sc: dict | None) -> dict:
    if not sc:
        return {"accuracy": "–", "strict": "–", "f1": "–", "style": "–", "parse": "–"}
    first = "–" if sc.get("answer_first") is None else f"{sc['answer_first']:.0%}"
    return {"accuracy": scoring.fmt_ci(sc["accuracy"], sc["accuracy_ci"]),
            "strict": scoring.fmt_ci(sc["strict_accuracy"], sc.get("strict_accuracy_ci")),
            "f1": scoring.fmt_ci(sc["f1"], sc["f1_ci"]),
            "style": f"{sc['words_per_answer']:.0f} words; key first in {first} of right answers",
            "parse": "–" if sc.get("parse_failures") is None else
            f"{sc['parse_failures']}/{sc['n']}"}


def data_sent(res: dict) -> str:
    """What left this machine, and what would with --execute."""
    if res.get("data_left_machine"):
        return "yes: " + {"openai_finetune": "training file uploaded, test questions sent",
                          "dspy": "every prompt sent to the hosted LM"}.get(res["method"], "yes")
    if res["method"] == "openai_finetune" and res.get("dry_run"):
        return "no (a plan only); with --execute the training file is uploaded"
    if res["method"] == "openai_finetune":
        return "no (local service); with --execute the training file is uploaded"
    if res["method"] == "dspy":
        return "no (local LM); a hosted --lm gets every prompt"
    return "no"


SCOREBOARD_FIELDS = (
    ("source", "numbers from"), ("model", "model"),
    ("accuracy", "accuracy: key fact in the answer (95% interval)"),
    ("vs_accuracy", "accuracy vs the plain prompt"),
    ("strict", "strict accuracy: key in the first sentence"),
    ("f1", "word-overlap F1 with the reference (95% interval)"),
    ("vs_f1", "F1 vs the plain prompt"),
    ("style", "how it answers"), ("parse", "replies that failed to parse"),
    ("tune_time", "tuning time"), ("cost", "cost"), ("trainable", "trainable params"),
    ("produced", "what it produced"), ("data_sent", "data sent off this machine"),
    ("note", "note"))


TERMINAL_FIELDS = (("accuracy", "accuracy (95%)"), ("short_vs_accuracy", "vs plain prompt"),
                   ("f1", "F1 (95%)"), ("short_vs_f1", "vs plain prompt"),
                   ("tune_time", "tuning"), ("cost", "cost"))


def print_scoreboard(console, dataset: QADataset, results_dir: str | Path = RESULTS_DIR,
                     this_run: str | None = None) -> None:
    """One row per method, the measures that compare them, and where each row's numbers come
    from; the rest of SCOREBOARD_FIELDS (strict accuracy, parse failures, what each produced,
    what left the machine) is in report.py's README block and in results/*.json."""
    from rich import box
    from rich.table import Table
    columns = scoreboard_columns(dataset, results_dir, this_run)
    table = Table(title=f"Scoreboard: the same {len(dataset.split('test'))} test questions of "
                        f"{visible(dataset.path.name)} (sha256 {dataset.sha256[:12]})",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=True)
    table.add_column("method", style="bold", no_wrap=True)  # short names
    for field, label in TERMINAL_FIELDS:
        narrow = field in ("tune_time", "cost")  # short values: never folded
        table.add_column(label, overflow="fold", no_wrap=narrow,
                         ratio=None if narrow else 5 if field.startswith("short_vs") else 3)
    sources = []
    for c in columns:
        name = c["short"]
        if c["status"] != "ok":
            table.add_row(name, visible(c["note"]), *[""] * (len(TERMINAL_FIELDS) - 1))
        else:  # a dry run: its note ("nothing trained or scored") beside its estimated cost
            cells = dict(c, cost=c["cost"].replace(" (", "\n("))  # the amount, then its kind
            if c.get("note"):
                cells["short_vs_accuracy"] = c["note"]
            table.add_row(name, *[visible(str(cells.get(field, "–")))
                                  for field, _ in TERMINAL_FIELDS])
        if c.get("short_source"):
            sources.append(f"{name} {visible(c['short_source'])}")
    console.print(table)
    say(console, "numbers from: ", ", ".join(sources) + " (results/*.json)")
    print_seed_spread(console, dataset, columns, this_run)
    notice(console, which_method(columns))
    print_method_vs_method(console, dataset, results_dir)
    say(console, "Strict accuracy, parse failures, what each produced, what left this machine: ",
        "python report.py")


def which_method(columns: list[dict]) -> str:
    """Step 6's notice: which method these numbers support, and what else decides."""
    done = [c for c in columns if c.get("scores") and c.get("change") and not c["dry_run"]]
    if not done:
        return ""
    by_accuracy = sorted(done, key=lambda c: -c["scores"]["accuracy"])
    text = "highest accuracy: " + ", ".join(f"{c['short']} {c['scores']['accuracy']:.2f}"
                                            for c in by_accuracy)
    passed = [c["short"] for c in done if c["change"]["accuracy_beyond_noise"]]
    passed_f1 = [c["short"] for c in done if c["change"]["f1_beyond_noise"]]
    text += (f"; accuracy gain over the plain prompt more than noise: "
             f"{', '.join(passed) or 'none'} (F1: {', '.join(passed_f1) or 'none'})")
    timed = [c for c in done if c.get("tune_s") is not None]
    if timed:
        fastest = min(timed, key=lambda c: c["tune_s"])
        text += f"; fastest to adapt: {fastest['short']} ({fmt_seconds(fastest['tune_s'])})"
    sent = [c["short"] for c in done if c["left_machine"]]
    text += f"; data sent off this machine: {', '.join(sent) or 'none'}. "
    if passed:
        return text + (f"The data supports {' and '.join(passed)} on accuracy: weigh it "
                       "against time, cost and where the data goes")
    return text + ("No method's accuracy gain is more than noise here, so choose by what each "
                   "needs: DSPy no training and the same weights, LoRA your own hardware with "
                   "data that stays, a service your data uploaded")


def print_seed_spread(console, dataset: QADataset, columns: list[dict],
                      this_run: str | None) -> None:
    """One line per method with recorded seed runs: one run is one draw of the training
    seed, and this says how far other draws landed."""
    from .seeds import spread_in_words
    for method in METHODS:
        col = next((c for c in columns if c["method"] == METHODS[method][0]), None)
        this = col.get("scores") if col and method == this_run else None
        line = spread_in_words(dataset, method, this, col.get("seed") if col else None)
        if line:
            say(console, f"{SHORT_NAMES[method]} over seeds: ", line)


def method_vs_method(dataset: QADataset, results_dir: str | Path = RESULTS_DIR) -> list[dict]:
    """Every pair of methods with answers, paired question by question on the test split."""
    found = {m: r for m, r in current_results(dataset, results_dir).items()
             if not r.get("dry_run") and summarize(r).get("after")}
    pairs = []
    names = list(found)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            answers_b = {r["question"]: r["after"] for r in found[b]["predictions"]}
            rows = [{"question": r["question"], "key": r.get("key"), "reference": r["reference"],
                     "before": answers_b[r["question"]], "after": r["after"]}
                    for r in found[a]["predictions"] if r["question"] in answers_b]
            if rows:
                pairs.append({"a": METHODS[a][0], "b": METHODS[b][0], "short_a": SHORT_NAMES[a],
                              "short_b": SHORT_NAMES[b], "change": scoring.compare(rows)})
    return pairs


def print_method_vs_method(console, dataset: QADataset, results_dir) -> None:
    for p in method_vs_method(dataset, results_dir):
        c = p["change"]
        say(console, f"{p['short_a']} minus {p['short_b']}: ",
            f"accuracy {scoring.short_change(c)} | F1 {scoring.short_change(c, 'f1')}")


def pick_question(dataset: QADataset, choice: str | None) -> QA:
    """--question: a test question's number (1-based) or words from it; default the first."""
    test = dataset.split("test")
    if not choice:
        return test[0]
    if choice.isdigit() and 1 <= int(choice) <= len(test):
        return test[int(choice) - 1]
    for ex in test:
        if normalize(choice) in normalize(ex.question):
            return ex
    raise UserError(f"--question {choice!r}: not a test question number (1-{len(test)}) "
                    "or words from one")


def one_question_rows(dataset: QADataset, ex: QA, results_dir: str | Path = RESULTS_DIR):
    """One test question through every method with results: who answered, what, its grade."""
    found = current_results(dataset, results_dir)
    rows = []
    baseline = read_baseline(results_file(results_dir, BASELINE_FILE))
    if baseline and baseline.get("settings", {}).get("dataset_sha256") == dataset.sha256:
        pred = next((p for p in baseline["predictions"] if p["question"] == ex.question), None)
        if pred:
            rows.append({"who": f"{BASELINE_TITLE}: {_model_name(baseline['model'])}",
                         "answer": pred["answer"], "short": SHORT_NAMES["baseline"]})
    for method, (title, command) in METHODS.items():
        res = found.get(method)
        if res is None:
            rows.append({"who": title, "answer": None, "note": f"not run: {command}",
                         "short": SHORT_NAMES[method]})
            continue
        if res.get("dry_run"):
            cost = res["cost_usd"]["amount"]
            rows.append({"who": title, "answer": None, "prompt": res.get("prompt_template"),
                         "note": f"not run: dry run (estimated ${cost:.2f}); add --execute",
                         "short": SHORT_NAMES[method]})
            continue
        pred = next((p for p in res["predictions"] if p["question"] == ex.question), None)
        if pred is None:
            continue
        rows.append({"who": f"{title}: {res.get('tuned_model') or res['model']}",
                     "answer": pred["after"], "prompt": res.get("prompt_template"),
                     "short": SHORT_NAMES[method]})
    for row in rows:
        if row.get("answer") is not None:
            row["correct"] = is_correct(row["answer"], ex.key, ex.answer)
            row["f1"] = round(f1(row["answer"], ex.answer), 2)
    return rows


def print_one_question(console, dataset: QADataset, choice: str | None,
                       results_dir: str | Path = RESULTS_DIR, this_run: str | None = None):
    """Step 6: follow one test question through every method, and show what each sends."""
    ex = pick_question(dataset, choice)
    rows = one_question_rows(dataset, ex, results_dir)
    say(console, "One question through every method: ",
        f"{ex.question} (key: {ex.key or 'the whole answer'})")
    say(console, f"  {'reference':13} ", f"{ex.answer} (F1 1.00)")
    for r in rows:
        name = r["short"]
        if r.get("answer") is None:
            say(console, f"  {name:13} ", r["note"])
        else:
            say(console, f"  {name:13} ", f"{mark(r['correct'])}{r['answer']} (F1 {r['f1']:.2f})")
    for r in rows:
        if r.get("prompt") and (this_run is None or r["who"].startswith(METHODS[this_run][0])):
            say(console, f"What {r['who'].split(':')[0]} sends its model:")
            lines = r["prompt"].replace("{question}", ex.question).split("\n")
            if len(lines) > 12:  # the demos, printed in full in step 4, are not repeated here
                lines = lines[:4] + [f"[... {len(lines) - 6} more lines: the earlier turns; "
                                     "the whole prompt is in its results file ...]"] + lines[-2:]
            console.print(visible("\n".join(lines)), soft_wrap=True)


def save_and_compare(console, dataset: QADataset, results: dict, results_dir,
                     question: str | None) -> None:
    """Step 6 of every script: write results, the scoreboard, one question through all."""
    path = write_results(results, results_dir)
    console.print(f"results: {path}")
    print_scoreboard(console, dataset, results_dir, this_run=results["method"])
    print_one_question(console, dataset, question, results_dir, this_run=results["method"])
