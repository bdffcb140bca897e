"""DSPy's machinery that a student need not read to learn prompt optimization: the local model
behind DSPy's engine interface, answering in batches; a hosted LM's calls, tokens and dated
prices; the optimizer's report and the table of every optimizer run so far.

dspy_example.py makes the method's calls itself (Signature, Predict, the optimizer and its
compile, Evaluate, save, load) and calls these for the rest.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

from . import scoring
from .cli import UserError, say, visible
from .data import chat_messages
from .local_model import BatchedGenerator, load_local_model
from .baseline import plain_prompt_baseline
from .results import (EXERCISE_RESULTS, RESULTS_DIR, fmt_seconds, portable, results_file,
                      summarize, write_json)

OPTIMIZER_RUNS = "dspy_optimizers.json"


class LocalEngine:
    """A DSPy 3.4 engine: complete(Request) -> Response, on a local transformers model.

    DSPy's threads call complete() concurrently; BatchedGenerator gathers the requests that
    arrive together and answers them with ONE batched generate() call, several times faster
    on a CPU than one question at a time; prompts that begin with the same demos share that
    prefix's computation, within a batch and, for the questions bootstrapping asks one at a
    time, from one call to the next. The model loads on the first call, so a run served from
    DSPy's cache needs none."""

    def __init__(self, model_name: str, max_new_tokens: int, max_batch: int = 8):
        self.max_new_tokens = max_new_tokens
        self.calls = self.input_tokens = self.output_tokens = 0
        self.generator = BatchedGenerator(lambda: load_local_model(model_name),
                                          max_batch=max_batch, reuse_last_prompt=True)

    def complete(self, request):
        from dspy.lm15 import Message, Response, Usage
        conversation = ([{"role": "system", "content": request.system}] if request.system
                        else [])
        conversation += [{"role": m.role, "content": "".join(p.text for p in m.parts)}
                         for m in request.messages]
        max_tokens = min(request.config.max_tokens or self.max_new_tokens, self.max_new_tokens)
        reply = self.answer(conversation, max_tokens, tuple(request.config.stop or ()))
        return Response(id=None, model=request.model, message=Message.assistant(reply["text"]),
                        finish_reason="stop",
                        usage=Usage(input_tokens=reply["input_tokens"],
                                    output_tokens=reply["output_tokens"]))

    def answer(self, conversation: list[dict], max_tokens: int, stop: tuple = ()) -> dict:
        reply = self.generator(conversation, max_tokens, stop)
        self.calls += 1
        self.input_tokens += reply["input_tokens"]
        self.output_tokens += reply["output_tokens"]
        return reply


_ASKING_AHEAD = {"lock": threading.Lock(), "open": 0}  # the patch is the class's: once


@contextlib.contextmanager
def teacher_questions_together():
    """Within it, DSPy's BootstrapFewShot (also inside random search and MIPROv2) asks its
    teacher the training questions it will ask anyway together, as one batch.

    Bootstrapping asks one training question at a time and stops once it has `need` demos, so
    the next `need` questions are asked whatever their answers. Here they are asked together
    first, each exactly as the loop will ask it (the teacher's demos without the question
    itself, the teacher's settings), through DSPy's cache; the loop's own calls are then cache
    hits: the same requests and LM calls. Only where DSPy would cache the reply (a dspy.LM with
    its cache on), and a question repeated within a batch is left to the loop. A call that
    fails is not cached, so the loop asks it again, as DSPy's own retries would. A reply is a
    batch's, which rounds in other last bits than one question alone; the default run's 50
    teacher calls gave the same demos and results either way, 90 s against 116 s
    (benchmarks/README.md)."""
    import dspy
    from dspy.teleprompt.bootstrap import BootstrapFewShot
    from dspy.utils.parallelizer import ParallelExecutor
    bootstrap, one = BootstrapFewShot._bootstrap, BootstrapFewShot._bootstrap_one_example

    def tracked(self, *, max_bootstraps=None):
        self._ahead = {"limit": max_bootstraps or self.max_bootstrapped_demos, "found": 0,
                       "asked": set()}
        return bootstrap(self, max_bootstraps=max_bootstraps)

    def caches(self) -> bool:  # DSPy's own rule; without its cache, asking ahead asks twice
        for _, predictor in self.teacher.named_predictors():
            lm = predictor.lm or self.teacher_settings.get("lm") or dspy.settings.lm
            if type(lm) is not dspy.LM or not predictor.config.get("cache", lm.cache) or \
                    not (dspy.cache.enable_memory_cache or dspy.cache.enable_disk_cache):
                return False
        return True

    def ask(self, example):  # as _bootstrap_one_example asks it, on a copy of the teacher
        try:
            teacher = self.teacher.deepcopy()
            for (_, mine), (_, theirs) in zip(teacher.named_predictors(),
                                              self.teacher.named_predictors()):
                mine.demos = [x for x in theirs.demos if x != example]
            with dspy.context(trace=[], **self.teacher_settings):
                teacher(**example.inputs())
        except Exception:  # the loop's own call meets it again, and counts it as DSPy does
            pass

    def ahead(self, example, round_idx=0):
        state = getattr(self, "_ahead", None)
        if state is not None and round_idx == 0 and id(example) not in state["asked"] \
                and caches(self):
            at = next((i for i, x in enumerate(self.trainset) if x is example), None)
            batch, inputs = [], []
            for x in [] if at is None else self.trainset[at:at + state["limit"] - state["found"]]:
                if id(x) not in state["asked"] and x.inputs() not in inputs:
                    batch.append(x)
                    inputs.append(x.inputs())
            state["asked"].update(map(id, batch))
            if len(batch) > 1:  # timeout 0: a slow question is waited for, never sent again
                ParallelExecutor(num_threads=min(len(batch), dspy.settings.num_threads or 8),
                                 disable_progress_bar=True, timeout=0).execute(
                    lambda x: ask(self, x), batch)
        success = one(self, example, round_idx)
        if state is not None and success:
            state["found"] += 1
        return success

    with _ASKING_AHEAD["lock"]:
        _ASKING_AHEAD["open"] += 1
        if _ASKING_AHEAD["open"] == 1:  # the first opened: these wrap DSPy's own methods
            _ASKING_AHEAD["dspy's"] = bootstrap, one
            BootstrapFewShot._bootstrap, BootstrapFewShot._bootstrap_one_example = tracked, ahead
    try:
        yield
    finally:
        with _ASKING_AHEAD["lock"]:
            _ASKING_AHEAD["open"] -= 1
            if _ASKING_AHEAD["open"] == 0:
                BootstrapFewShot._bootstrap, BootstrapFewShot._bootstrap_one_example = \
                    _ASKING_AHEAD["dspy's"]


def plain_answers(lm, engine, chats: list[list[dict]], max_new_tokens: int,
                  threads: int) -> list[str]:
    """The plain chat prompt's answers, outside DSPy: the baseline every method shares."""
    if engine is None:
        return [lm(messages=c)[0] for c in chats]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(threads) as pool:  # together: one batch
        return list(pool.map(lambda c: engine.answer(c, max_new_tokens)["text"], chats))


def render_messages(messages: list[dict]) -> str:
    return "\n".join(f"--- {m['role']} ---\n{m['content']}" for m in messages)


def last_messages(lm) -> list[dict]:
    entry = lm.history[-1] if lm.history else {}
    return entry.get("messages") or []


def history_text(entry: dict) -> str:
    outputs = entry.get("outputs") or [""]
    first = outputs[0]
    return first.get("text", "") if isinstance(first, dict) else str(first)


def show_unparsed_reply(console, lm, marker: str = "[[ ## answer ## ]]") -> None:
    """One reply the adapter could not parse, word for word: what the model wrote instead."""
    raw = next((h for h in lm.history if marker not in history_text(h)), None)
    if raw is not None:
        say(console, "A reply the adapter could not parse", f" (no '{marker}' field), word "
            "for word:")
        console.print(repr(history_text(raw)))


def usage(lm, engine) -> dict:
    """LM calls that reached the model (cache hits excluded) and their tokens."""
    if engine is not None:
        return {"calls": engine.calls, "input_tokens": engine.input_tokens,
                "output_tokens": engine.output_tokens, "cost": 0.0}
    # DSPy 3.4 marks no cache hit in its history; a hit's entry has no usage
    entries = [h for h in lm.history if h.get("usage") and not h.get("cache_hit")]
    used = [h.get("usage") or {} for h in entries]
    return {"calls": len(entries),
            "input_tokens": sum(u.get("prompt_tokens", 0) or 0 for u in used),
            "output_tokens": sum(u.get("completion_tokens", 0) or 0 for u in used),
            "cost": round(sum(h.get("cost") or 0.0 for h in entries), 6)}


def record_usage(run, lm, engine, hosted: bool) -> None:
    """Step 6's facts on the run: the LM calls and tokens that reached the model (cache hits
    excluded), and what a hosted LM charged for them."""
    used = usage(lm, engine)
    run.counted(inference=used["input_tokens"] + used["output_tokens"],
                input=used["input_tokens"], output=used["output_tokens"])
    run.extra(lm_calls=used["calls"])
    if hosted:
        run.set(cost_usd={"amount": used["cost"], "kind": "actual"})


def demo_rows(demos, train) -> list[dict]:
    """The chosen demos with their subject, whether they are the model's own answer or the
    reference, and whether they state the key fact."""
    by_question = {t.question: t for t in train}
    rows = []
    for d in demos:
        t = by_question.get(d["question"])
        rows.append({"question": d["question"], "answer": d["answer"],
                     "subject": t.subject if t else "general",
                     "kind": "bootstrapped: the model's own answer" if d.get("augmented")
                     else "labeled: the reference answer",
                     "correct": scoring.is_correct(d["answer"], t.key or None, t.answer)
                     if t else None})
    return rows


def candidate_scores(optimized) -> list[float]:
    """The dev F1 of every program an optimizer tried and compared (random search's demo
    sets: zero-shot, labeled only, then bootstrapped ones), in the order tried."""
    tried = getattr(optimized, "candidate_programs", None) or []
    by_seed = sorted((c for c in tried if isinstance(c, dict) and "score" in c),
                     key=lambda c: c.get("seed", 0))
    return [round(c["score"] / 100, 3) for c in by_seed]


def optimizer_report(optimized, cfg, train, seconds: float, seen: set, lm_calls: int,
                     console) -> dict:
    """What the optimizer did and chose, printed in full (demos with their grades)."""
    predictor = optimized.predictors()[0]
    report = {"optimizer": cfg.optimizer, "adapter": cfg.adapter, "seconds": round(seconds, 2),
              "lm_calls": lm_calls, "examples_looked_at": len(seen),
              "demos": demo_rows(predictor.demos, train),
              "instruction": predictor.signature.instructions,
              "candidates_dev_f1": candidate_scores(optimized)}
    print_report(console, cfg.optimizer, report, len(train))
    return report


def stage_score(name: str, test, answers: list[str], failures: int, before: list[str],
                console) -> dict:
    """One program's test answers scored, with how many are the plain prompt's word for word
    (and the answers themselves, under "answers")."""
    score = scoring.score(test, answers, failures)
    score["answers_identical_to_baseline"] = sum(a == b for a, b in zip(answers, before))
    console.print(f"test, {name:>17}: accuracy {score['accuracy']:.2f} | F1 {score['f1']:.2f} "
                  f"| parse failures {failures}/{len(test)} | same answer as the plain prompt: "
                  f"{score['answers_identical_to_baseline']}/{len(test)}")
    return dict(score, answers=answers)


def print_report(console, optimizer: str, report: dict, n_train: int) -> None:
    """What the optimizer tried, what it cost and what it chose, demos in full."""
    console.print(f"{optimizer}: ran the program on {report['examples_looked_at']} of "
                  f"{n_train} training examples, {report['lm_calls']} LM calls (cache hits "
                  f"excluded), {report['seconds']:.1f} s")
    if report.get("candidates_dev_f1"):
        scores = report["candidates_dev_f1"]
        say(console, f"tried {len(scores)} programs (zero-shot, labeled demos, bootstrapped "
            "sets), dev F1 of each: ", ", ".join(f"{x:.2f}" for x in scores)
            + f"; chose the best, {max(scores):.2f}")
    say(console, "instruction: ", report["instruction"])
    for i, d in enumerate(report["demos"], 1):
        right = "" if d["correct"] is None else " ✓ key fact" if d["correct"] else \
            " ✗ no key fact"
        say(console, f"demo {i} ({d['subject']}; {d['kind']}{right}): ",
            f"{d['question']} -> {d['answer']}")


def record_run(results_dir, data, results: dict) -> dict:
    """results/dspy_optimizers.json: one entry per optimizer, adapter, model and training
    size, so that `--optimizer` runs can be compared in one table."""
    dataset_sha256, extra = data.sha256, results["extra"]
    key = " | ".join([extra["optimizer"], extra["adapter"], results["model"],
                      f"train {results['dataset']['train_used']}"])
    path = Path(results_dir) / OPTIMIZER_RUNS
    if Path(results_dir).resolve().is_relative_to(EXERCISE_RESULTS.resolve()):
        # an exercise (--optimizer labeled, ...): one table for all of them, outside results/,
        # starting from the README's runs so that they stand beside the default
        path = EXERCISE_RESULTS / OPTIMIZER_RUNS
        if not path.exists():
            path = results_file(results_dir, OPTIMIZER_RUNS)
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        runs = {}
    if not isinstance(runs, dict) or runs.get("dataset_sha256") != dataset_sha256:
        runs = {"dataset_sha256": dataset_sha256, "runs": {}}
    report, after = results["extra"]["optimizer_report"], results["after"]
    runs["runs"][key] = {
        "optimizer": report["optimizer"], "adapter": report["adapter"],
        "model": results["model"], "train_used": results["dataset"]["train_used"],
        "examples_looked_at": report["examples_looked_at"], "lm_calls": report["lm_calls"],
        "optimize_s": report["seconds"], "kept": results["extra"]["kept"],
        "accuracy": after["accuracy"], "accuracy_ci": after["accuracy_ci"],
        "f1": after["f1"], "f1_ci": after["f1_ci"],
        "f1_vs_plain_prompt": scoring.short_change(summarize(results)["change"], "f1"),
        "created": results["created"], "command": results["command"]}
    if path.parent == RESULTS_DIR and Path(results_dir).resolve() != RESULTS_DIR.resolve():
        path = EXERCISE_RESULTS / OPTIMIZER_RUNS  # read from results/, never written there
    write_json(path, runs)
    runs["file"] = portable(path)
    return runs


def print_runs(console, runs: dict) -> None:
    """Every optimizer run so far on this dataset: what it ran, cost and kept, and its test
    scores (accuracy's interval is in the scoreboard and the file; model and training size in
    the first column only when they differ)."""
    from rich import box
    from rich.table import Table
    table = Table(title=f"DSPy optimizers tried on this dataset, scored on the test questions "
                        f"({runs.get('file', OPTIMIZER_RUNS)})",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    keys = list(runs["runs"])
    same_rest = len({k.split(" | ", 2)[-1] for k in keys}) == 1
    for col in ("optimizer | adapter" if same_rest else "optimizer | adapter | model | train",
                "examples", "LM calls", "time", "kept", "accuracy", "F1 (95%)",
                "F1 vs plain prompt"):
        table.add_column(col, overflow="fold", no_wrap=col in (
            "examples", "LM calls", "time", "kept", "accuracy", "F1 (95%)"))
    for key, r in runs["runs"].items():
        table.add_row(visible(" | ".join(key.split(" | ")[:2]) if same_rest else key),
                      str(r["examples_looked_at"]), str(r["lm_calls"]),
                      fmt_seconds(r["optimize_s"]), r["kept"],
                      f"{r['accuracy']:.2f}", scoring.fmt_ci(r["f1"], r["f1_ci"]),
                      r["f1_vs_plain_prompt"].replace("95% interval ", ""))
    console.print(table)
    if same_rest and keys:
        console.print(f"(all: {visible(keys[0].split(' | ', 2)[-1])})")


def small_chat_adapter():
    """A DSPy Adapter that speaks a small chat model's own format: the instructions as the
    system message, each demo as a user turn (its inputs) and an assistant turn (its answer),
    and the reply, whole, as the one output field: nothing to fail to parse. Zero-shot it
    sends the plain chat prompt word for word."""
    import dspy

    class SmallChatAdapter(dspy.Adapter):
        def format_system_message(self, signature):
            return signature.instructions

        def format_field_description(self, signature):
            return ""

        def format_field_structure(self, signature):
            return ""

        def format_task_description(self, signature):
            return signature.instructions

        def format_user_message_content(self, signature, inputs, prefix="", suffix="",
                                        main_request=False):
            names = [k for k in signature.input_fields if k in inputs]
            body = str(inputs[names[0]]) if len(names) == 1 else \
                "\n".join(f"{k}: {inputs[k]}" for k in names)
            return "\n".join(part for part in (prefix, body, suffix) if part)

        def format_assistant_message_content(self, signature, outputs,
                                             missing_field_message=None):
            (name,) = signature.output_fields
            return str(outputs.get(name, missing_field_message or ""))

        def format_field_with_value(self, fields_with_values, role="user"):
            return "\n".join(str(value) for value in fields_with_values.values())

        def parse(self, signature, completion):
            if len(signature.output_fields) != 1:
                raise UserError("--adapter small-chat takes one output field; use "
                                "--adapter chat for signatures with several")
            (name,) = signature.output_fields
            return {name: completion.strip()}

    return SmallChatAdapter()


def check_optimizer(optimizer: str, reflection_lm: str | None, execute: bool) -> None:
    """GEPA needs a reflection LM, which this machine does not have offline: say so first."""
    if optimizer == "gepa" and not reflection_lm:
        raise UserError(
            "--optimizer gepa needs a reflection LM: a strong model that reads the program's "
            "failures and writes better instructions (--reflection-lm openai/gpt-4o, with "
            "--execute and its API key). The embedded 135M model cannot play that part, so "
            "nothing ran; --optimizer mipro searches instructions with the local model")
    if optimizer == "gepa" and not execute:
        raise UserError(f"--reflection-lm {reflection_lm} is a hosted LM: add --execute to let "
                        "GEPA call it (it costs money); nothing was sent")


def gepa_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    """GEPA's metric: a score and, for the reflection LM to read, what was wrong."""
    import dspy
    answer = pred.get("answer", "") or ""
    g = scoring.grade(answer, gold.key or None, gold.answer)
    feedback = (f"The reference answer is: {gold.answer!r}. The key fact is "
                f"{gold.key or gold.answer!r}. " +
                ("The answer states it first, as asked." if g["strict"] else
                 "The answer states it, but not in its first sentence." if g["correct"] else
                 "The answer does not state it.") +
                f" Word overlap with the reference: {g['f1']:.2f}.")
    return dspy.Prediction(score=g["f1"] + g["strict"], feedback=feedback)


def quiet_dspy() -> None:
    """DSPy's per-example error lines and progress logs: steps 4 and 5 report these."""
    import logging
    logging.getLogger("dspy.utils.parallelizer").setLevel(logging.CRITICAL)
    for name in ("dspy.evaluate.evaluate", "dspy.teleprompt"):
        logging.getLogger(name).setLevel(logging.WARNING)


def plain_prompt_answers(lm, engine, cfg, data, console):
    """(answers, where they came from) of the plain chat prompt on the test questions: the
    shared baseline on the local model, the hosted LM's own answers otherwise."""

    def plain(chats):
        return plain_answers(lm, engine, chats, cfg.max_new_tokens, cfg.threads)
    if engine is not None:
        return plain_prompt_baseline(cfg.model, data, cfg.max_new_tokens, plain, console,
                                     cfg.results_dir)
    return plain([chat_messages(ex.question) for ex in data.split("test")]), \
        {"kind": "plain prompt on the hosted LM", "this_run": True}
