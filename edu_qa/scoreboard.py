"""Step 6's scoreboard: every method's results side by side, on the same test questions.

    save_and_compare()        step 6 of every script: write results, then the two views below
    print_scoreboard()        one row per method (and the plain prompt), with where its
                              numbers come from (notices.which_method says what they support)
    print_one_question()      one test question through every method, and what each sends
    scoreboard_columns()      the rows as data (report.py writes the README's table from them)
"""

from __future__ import annotations

from pathlib import Path

from . import scoring
from .baseline import BASELINE_TITLE, baseline_score, read_baseline
from .before_after import mark
from .cli import UserError, notice, say, visible
from .data import QA, QADataset
from .local_model import describe_model
from .notices import which_method
from .results import (BASELINE_FILE, METHODS, RESULTS_DIR, current_results, fmt_bytes,
                      fmt_seconds, load_all_results, portable, results_file, summarize,
                      write_results)
from .scoring import f1, is_correct, normalize
from .seeds import spread_in_words

# what each method makes, for "what it produced" (a file's size alone does not say)
PRODUCES = {"dspy": "prompt program", "huggingface_lora": "LoRA adapter",
            "openai_finetune": "fine-tuned model"}
# in the terminal's narrow columns
SHORT_NAMES = {"dspy": "DSPy", "huggingface_lora": "LoRA", "openai_finetune": "OpenAI-style",
               "baseline": "Plain prompt"}


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
            "model": describe_model(baseline["model"]), **_score_cells(sc),
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
                     this_run: str | None = None) -> list[dict]:
    """One row per method, the measures that compare them, and where each row's numbers come
    from; the rest of SCOREBOARD_FIELDS (strict accuracy, parse failures, what each produced,
    what left the machine) is in report.py's README block and in results/*.json. Returns the
    columns (scoreboard_columns)."""
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
    print_method_vs_method(console, dataset, results_dir)
    say(console, "Strict accuracy, parse failures, what each produced, what left this machine: ",
        "python report.py")
    return columns


def print_seed_spread(console, dataset: QADataset, columns: list[dict],
                      this_run: str | None) -> None:
    """One line per method with recorded seed runs: one run is one draw of the training
    seed, and this says how far other draws landed."""
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
            rows.append({"who": f"{BASELINE_TITLE}: {describe_model(baseline['model'])}",
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
                     question: str | None) -> Path:
    """Step 6 of every script: write results, the scoreboard, one question through all, and
    the step's notice: which method these numbers support, and when."""
    path = write_results(results, results_dir)
    console.print(f"results: {portable(path)}")
    columns = print_scoreboard(console, dataset, results_dir, this_run=results["method"])
    print_one_question(console, dataset, question, results_dir, this_run=results["method"])
    notice(console, which_method(columns, results))
    return path
