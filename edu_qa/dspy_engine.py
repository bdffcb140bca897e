"""DSPy's machinery that a student need not read to learn prompt optimization: the local model
behind DSPy's engine interface, answering in batches; a hosted LM's calls, tokens and dated
prices; the optimizer's report and the table of every optimizer run so far.

dspy_example.py holds the method (signature, adapter, optimizer, metric) and calls these.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from pathlib import Path

from . import scoring
from .cli import UserError, notice, redact, say, visible
from .data import by_subject, chat_messages
from .local_model import (BatchedGenerator, describe_model, disk_size, load_local_model,
                          use_offline_tiktoken)
from .results import (EXERCISE_RESULTS, RESULTS_DIR, artifact, fmt_seconds, new_results,
                      plain_prompt_baseline, portable, results_file, summarize,
                      write_json)

# USD per 1M tokens (input, output), from OpenAI's and Anthropic's published price pages as
# last checked 2025-06; prices change: override with --price-in / --price-out.
PRICES_CHECKED = "2025-06"
PRICES = {
    "openai/gpt-4o-mini": (0.15, 0.60),
    "openai/gpt-4.1-mini": (0.40, 1.60),
    "openai/gpt-4.1-nano": (0.10, 0.40),
    "openai/gpt-4o": (2.50, 10.00),
    "anthropic/claude-3-5-haiku-20241022": (0.80, 4.00),
}
KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY",
                 "gemini": "GEMINI_API_KEY", "groq": "GROQ_API_KEY",
                 "together_ai": "TOGETHERAI_API_KEY", "mistral": "MISTRAL_API_KEY"}
OPTIMIZER_RUNS = "dspy_optimizers.json"


class LocalEngine:
    """A DSPy 3.4 engine: complete(Request) -> Response, on a local transformers model.

    DSPy's threads call complete() concurrently; BatchedGenerator gathers the requests that
    arrive together and answers them with ONE batched generate() call, several times faster
    on a CPU than one question at a time; prompts that begin with the same demos share that
    prefix's computation. The model loads on the first call, so a run served from DSPy's
    cache needs none."""

    def __init__(self, model_name: str, max_new_tokens: int, max_batch: int = 8):
        self.max_new_tokens = max_new_tokens
        self.calls = self.input_tokens = self.output_tokens = 0
        self.generator = BatchedGenerator(lambda: load_local_model(model_name),
                                          max_batch=max_batch)

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


def answer_all(program, examples, threads: int) -> dict:
    """The program's answers to examples (DSPy's Evaluate: parallel, so the local engine
    batches them) and how many replies the adapter could not parse."""
    import dspy
    evaluate = dspy.Evaluate(devset=examples, metric=lambda e, p, t=None: 0.0,
                             num_threads=threads, display_progress=False, failure_score=0.0)
    preds = [pred for _, pred, _ in evaluate(program).results]
    # an empty Prediction is a call whose output the adapter could not parse
    return {"answers": [pred.get("answer", "") or "" for pred in preds],
            "failures": sum("answer" not in pred for pred in preds)}


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
    entries = [h for h in lm.history if not h.get("cache_hit")]
    used = [h.get("usage") or {} for h in entries]
    return {"calls": len(entries),
            "input_tokens": sum(u.get("prompt_tokens", 0) or 0 for u in used),
            "output_tokens": sum(u.get("completion_tokens", 0) or 0 for u in used),
            "cost": round(sum(h.get("cost") or 0.0 for h in entries), 6)}


def estimate_cost(lm_name: str, adapter, signature, train, demos: int, calls: int,
                  price_in: float | None, price_out: float | None) -> dict:
    """Tokens from the real prompts (tiktoken, offline encodings) and a dated price table."""
    import tiktoken
    use_offline_tiktoken()
    enc = tiktoken.get_encoding("o200k_base")
    messages = adapter.format(signature, demos=train[:demos],
                              inputs={"question": train[0].question})
    prompt_tokens = sum(len(enc.encode(m["content"])) + 4 for m in messages)
    output_tokens = 40  # an answer of ~30 words plus any field markers
    table_in, table_out = PRICES.get(lm_name, (None, None))
    price_in = price_in if price_in is not None else table_in
    price_out = price_out if price_out is not None else table_out
    tokens_in, tokens_out = calls * prompt_tokens, calls * output_tokens
    usd = None if price_in is None or price_out is None else \
        (tokens_in * price_in + tokens_out * price_out) / 1e6
    return {"prompt_tokens_per_call": prompt_tokens, "input_tokens": tokens_in,
            "output_tokens": tokens_out, "price_in": price_in, "price_out": price_out,
            "usd": usd}


def plan_lines(lm_name: str, optimizer: str, calls: dict, cost: dict) -> list[str]:
    """What a hosted run would call and cost, for the plan printed without --execute."""
    lines = [f"would leave this machine: every prompt (the training, dev and test questions, "
             f"the demos) goes to {lm_name}",
             f"LM calls, at most: {calls['total']} ({calls['optimize']} to optimize with "
             f"{optimizer}, {calls['evaluate']} to evaluate)",
             f"tokens, estimated: {cost['input_tokens']:,} in ({cost['prompt_tokens_per_call']}"
             f" per call) + {cost['output_tokens']:,} out"]
    if cost["usd"] is None:
        lines.append(f"cost: no price for {lm_name} in the table (checked {PRICES_CHECKED}); "
                     "give --price-in and --price-out (USD per 1M tokens)")
    else:
        lines.append(f"cost, estimated: ${cost['usd']:.4f} at ${cost['price_in']}/"
                     f"${cost['price_out']} per 1M tokens in/out (table checked "
                     f"{PRICES_CHECKED}; override with --price-in/--price-out)")
    return lines


def require_key(lm_name: str, console) -> None:
    """A hosted LM needs its key in the environment; only a redacted form is ever shown."""
    variable = KEY_VARIABLES.get(lm_name.split("/", 1)[0])
    if variable and not os.environ.get(variable):
        raise UserError(f"--lm {lm_name} --execute needs an API key: set {variable} "
                        "(nothing was sent)")
    if variable:
        console.print(f"API key: {variable}={redact(os.environ[variable])}")


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
    if report["demos"]:
        notice(console, "the demos come from " + ", ".join(
            f"{s} ({n})" for s, n in by_subject(report["demos"]).items())
            + f"; {sum(d['kind'].startswith('boot') for d in report['demos'])} are the model's "
            "own answers, kept because they state the key fact first")


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


def plan_calls(optimizer: str, candidates: int, n_train: int, n_dev: int, n_test: int) -> dict:
    """How many LM calls a run makes, at most (a cache hit costs none)."""
    # dev: zero-shot and optimized; test: baseline, zero-shot and optimized
    evaluate = 2 * n_dev + 3 * n_test
    optimize = {"none": 0, "labeled": 0, "bootstrap": n_train,
                "random-search": n_train * candidates + n_dev * (candidates + 3),
                # light: ~6 instruction proposals + bootstrapped sets + ~10 trials on a dev batch
                "mipro": n_train * 6 + 10 * n_dev + 30,
                # light: a budget of full evaluations on train and dev, plus reflection calls
                "gepa": 6 * (n_train + n_dev)}[optimizer]
    return {"optimize": optimize, "evaluate": evaluate, "total": optimize + evaluate}


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


class Watched:
    """Around optimizer.compile(): its printed progress swallowed (the report says what it
    tried), the training examples its metric saw (a trace means a demo being checked), its LM
    calls and its time."""

    def __init__(self, make_optimizer, engine=None):
        with contextlib.redirect_stdout(io.StringIO()):  # its constructor announces its plan
            optimizer = make_optimizer()
        self.optimizer, self.engine, self.looked_at = optimizer, engine, []
        if hasattr(optimizer, "metric"):
            metric = optimizer.metric

            def counting_metric(example, pred, trace=None, *args):
                if trace is not None:
                    self.looked_at.append(example.question)
                return metric(example, pred, trace, *args)
            optimizer.metric = counting_metric

    def __enter__(self):
        self.redirect = contextlib.redirect_stdout(io.StringIO())
        self.redirect.__enter__()
        self.start, self.calls_before = time.perf_counter(), self.calls()
        return self

    def __exit__(self, *exc):
        self.redirect.__exit__(*exc)
        self.seconds = time.perf_counter() - self.start
        self.lm_calls = self.calls() - self.calls_before
        return False

    def calls(self) -> int:
        return self.engine.calls if self.engine is not None else 0

    def report(self, optimized, cfg, train, console) -> dict:
        """What the optimizer did and chose, printed in full (demos with their grades)."""
        predictor = optimized.predictors()[0]
        report = {"optimizer": cfg.optimizer, "adapter": cfg.adapter,
                  "seconds": round(self.seconds, 2), "lm_calls": self.lm_calls,
                  "examples_looked_at": len(set(self.looked_at)),
                  "demos": demo_rows(predictor.demos, train),
                  "instruction": predictor.signature.instructions,
                  "candidates_dev_f1": candidate_scores(optimized)}
        print_report(console, cfg.optimizer, report, len(train))
        return report


def keep_better_on_dev(program, optimized, dev, threads: int, console):
    """The zero-shot program is always a candidate: the optimized one is kept only if it
    answers the dev questions better (accuracy, then F1, as the other methods choose).
    Returns (the kept program, 'optimized' or 'zero-shot', the dev scores)."""
    dev_scores = {}
    for name, candidate in (("zero-shot", program), ("optimized", optimized)):
        answers = answer_all(candidate, dev, threads)
        dev_scores[name] = scoring.score(dev, answers["answers"], answers["failures"])
        console.print(f"dev: {name:>9} program: accuracy {dev_scores[name]['accuracy']:.2f} | "
                      f"word-overlap F1 {dev_scores[name]['f1']:.2f} | parse failures "
                      f"{answers['failures']}/{len(dev)}")
    rank = {n: (sc["accuracy"], sc["f1"]) for n, sc in dev_scores.items()}
    kept = "optimized" if rank["optimized"] > rank["zero-shot"] else "zero-shot"
    console.print("kept: the optimized program (better dev answers than zero-shot)"
                  if kept == "optimized" else "kept: the ZERO-SHOT program. The optimized one "
                  "did not answer the dev questions better, so the optimization is not used.")
    return (optimized if kept == "optimized" else program.deepcopy()), kept, \
        {n: {"accuracy": sc["accuracy"], "f1": sc["f1"]} for n, sc in dev_scores.items()}


def program_stages(program, optimized, examples, test, before, threads: int, console) -> dict:
    """The zero-shot and the optimized program on the test questions: scores, parse failures
    and how many answers are the plain prompt's, word for word."""
    stages = {"zero-shot program": answer_all(program, examples, threads),
              "optimized program": answer_all(optimized, examples, threads)}
    for name, st in stages.items():
        st["score"] = scoring.score(test, st["answers"], st["failures"])
        st["score"]["answers_identical_to_baseline"] = sum(
            a == b for a, b in zip(st["answers"], before))
        console.print(f"test, {name:>17}: accuracy {st['score']['accuracy']:.2f} | F1 "
                      f"{st['score']['f1']:.2f} | parse failures {st['failures']}/{len(test)} | "
                      f"same answer as the plain prompt: "
                      f"{st['score']['answers_identical_to_baseline']}/{len(test)}")
    return stages


def results(method: str, cfg, data, train, env: dict, lm, engine, adapter, signature, kept,
            tuned: dict, inference: dict, scores, rows, reload: dict, prepared: float,
            start: float) -> dict:
    """results/dspy.json: what step 6 compares, and what the run did."""
    used = usage(lm, engine)
    model = cfg.lm if env["hosted"] else describe_model(cfg.model)
    res = new_results(
        method, cfg, data, model=model, train=train, scores=scores, rows=rows,
        before_source=inference["source"], trainable_params=0, versions=env["versions"],
        tuned_model=f"{model} + optimized prompt ({cfg.optimizer}, {tuned['demos']} demos)"
        if tuned["kept"] == "optimized"
        else f"{model} (zero-shot program kept: the optimized one was not better on dev)",
        data_left_machine=env["hosted"], artifact=artifact(tuned["path"]),
        prompt_template=render_messages(adapter.format(
            signature, demos=kept.predictors()[0].demos, inputs={"question": "{question}"})),
        wall_time_s={"prepare": prepared, "tune": tuned["seconds"],
                     "infer_per_question": inference["per_question"],
                     "total": time.perf_counter() - start},
        tokens={"inference": used["input_tokens"] + used["output_tokens"],
                "input": used["input_tokens"], "output": used["output_tokens"]},
        extra={"lm_calls": used["calls"], "optimizer": cfg.optimizer, "adapter": cfg.adapter,
               "dev": tuned["dev"], "kept": tuned["kept"],
               "optimizer_report": tuned["report"], "stages": inference["stages"],
               "reload_check": reload})
    if env["hosted"]:
        res["cost_usd"] = {"amount": used["cost"], "kind": "actual"}
    return res


def plan_or_require_key(cfg, adapter, signature, train, n_dev: int, n_test: int, console,
                        command: str) -> None:
    """A hosted LM: without --execute, the plan (LM calls, tokens, cost) and stop; with it,
    its API key must be set."""
    from .cli import plan_only
    from .model_dates import check_model
    dated = check_model(cfg.lm, cfg.execute, "--lm")  # after its shutdown: --execute refuses
    if not cfg.execute:
        calls = plan_calls(cfg.optimizer, cfg.candidates, len(train), n_dev, n_test)
        cost = estimate_cost(cfg.lm, adapter, signature, train,
                             0 if cfg.optimizer == "none" else cfg.max_demos, calls["total"],
                             cfg.price_in, cfg.price_out)
        plan_only(console, [dated] + plan_lines(cfg.lm, cfg.optimizer, calls, cost), command)
    console.print(dated)
    require_key(cfg.lm, console)


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


def reload_check(path, signature, examples, rows, threads: int, console) -> dict:
    """The saved program loaded into a fresh dspy.Predict answers again: {checked, identical},
    the record training.reload_check keeps for an adapter."""
    import dspy
    fresh = dspy.Predict(signature)
    fresh.load(str(path))
    answers = answer_all(fresh, examples, threads)["answers"]
    result = {"checked": len(examples),
              "identical": sum(a == r["after"] for a, r in zip(answers, rows))}
    console.print(f"reload check (program.json into a fresh dspy.Predict): "
                  f"{result['identical']}/{result['checked']} answers identical")
    return result


def format_in_words(messages: list[dict], question: str) -> str:
    """Step 2's notice: are these messages the plain prompt, or DSPy's field markers?"""
    if messages == chat_messages(question):
        return ("these are the plain chat prompt, word for word: the zero-shot program IS the "
                "baseline, so whatever changes comes from the demos and instructions the "
                "optimizer adds")
    return ("the field markers: a model must write '[[ ## answer ## ]]' before its answer, or "
            "the reply fails to parse")


def save_program(program, path: Path, console) -> Path:
    """The kept program as DSPy saves it: its signature, instructions and demos, in JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    console.print(f"saved: {path} ({disk_size(path) / 1e3:.1f} kB)")
    return path
