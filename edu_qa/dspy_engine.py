"""DSPy's machinery that a student need not read to learn prompt optimization: the local model
behind DSPy's engine interface, answering in batches; a hosted LM's calls, tokens and dated
prices; the optimizer's report and the table of every optimizer run so far.

dspy_example.py holds the method (signature, adapter, optimizer, metric) and calls these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import scoring
from .cli import UserError, notice, redact, say, visible
from .data import by_subject
from .local_model import BatchedGenerator, load_local_model, use_offline_tiktoken
from .results import fmt_seconds, summarize, write_json

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


def record_run(results_dir, dataset_sha256: str, results: dict, key: str) -> dict:
    """results/dspy_optimizers.json: one entry per optimizer, adapter, model and training
    size, so that `--optimizer` runs can be compared in one table."""
    path = Path(results_dir) / OPTIMIZER_RUNS
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
        "f1_vs_plain_prompt": scoring.change_in_words(summarize(results)["change"], "f1"),
        "created": results["created"], "command": results["command"]}
    write_json(path, runs)
    return runs


def print_runs(console, runs: dict) -> None:
    from rich.table import Table
    table = Table(title=f"DSPy optimizers tried on this dataset (results/{OPTIMIZER_RUNS})",
                  show_lines=True)
    for col in ("optimizer | adapter | model | train", "ran on", "LM calls", "time",
                "kept", "test accuracy", "test F1", "F1 vs plain prompt"):
        table.add_column(col, overflow="fold")
    for key, r in runs["runs"].items():
        table.add_row(visible(key), f"{r['examples_looked_at']} examples", str(r["lm_calls"]),
                      fmt_seconds(r["optimize_s"]), r["kept"],
                      scoring.fmt_ci(r["accuracy"], r["accuracy_ci"]),
                      scoring.fmt_ci(r["f1"], r["f1_ci"]), r["f1_vs_plain_prompt"])
    console.print(table)
