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

As a notebook (jupytext --to notebook dspy_example.py): a cell per step; NOTEBOOK_ARGS: settings.

Hosted models retire: openai/gpt-4o-mini, gpt-4.1 and gpt-4.1-mini shut down on 2027-01-14 and
gpt-4.1-nano did on 2026-10-23 (OpenAI's API deprecations page); step 3 prints the --lm's date,
and --execute refuses a model past it. After 2027-01-14 none of the OpenAI examples above still
serves: name a current model (any LiteLLM id) with --price-in/--price-out.

The one rule: nothing costs money until you add --execute. The embedded local model is free, so
its optimization runs for real; a hosted --lm without --execute prints the plan (LM calls, tokens,
cost from a dated price table) and opens no connection.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa
from edu_qa import dspy_engine

METHOD = "dspy"
LOCAL_LM = "local"
# --adapter chat: stop at ANY next field header, not only "[[ ## completed ## ]]": a 135M model
# often writes a second "[[ ## answer ## ]]" instead, and would run on to the token cap.
STOP = "\n\n[[ ## "
ADAPTERS = {"small-chat": "the model's own chat format: instructions as the system message, "
                          "demos as earlier turns, the reply taken whole as the answer",
            "chat": "DSPy's ChatAdapter: [[ ## field ## ]] markers, which hosted LMs follow and "
                    "a 135M model mostly does not (its replies fail to parse)"}
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
NOTEBOOK_ARGS: list[str] = []  # in a notebook, the settings: e.g. ["--optimizer", "bootstrap"]


@dataclass(frozen=True)
class Config(edu_qa.SharedConfig):  # data, model, seed, train size...: edu_qa/settings.py
    output_dir: str = field(default="outputs/dspy", metadata={
        "help": "the optimized program (JSON) and DSPy's cache of LM calls go here"})
    execute: bool = field(default=False, metadata={
        "help": "allow what costs: LM calls to a hosted --lm"})
    # the method
    lm: str = field(default=LOCAL_LM, metadata={
        "help": "'local' (--model, here) or a LiteLLM model such as openai/gpt-4o-mini (paid)"})
    adapter: str = field(default="small-chat", metadata={
        "choices": list(ADAPTERS), "help": "; ".join(f"{k}: {v}" for k, v in ADAPTERS.items())})
    optimizer: str = field(default="random-search", metadata={
        "choices": list(OPTIMIZERS),
        "help": "; ".join(f"{k}: {v}" for k, v in OPTIMIZERS.items())})
    max_demos: int = field(default=4, metadata={
        "help": "few-shot demos in the prompt; more are slower and did not score better on dev"})
    reflection_lm: str | None = field(default=None, metadata={
        "help": "GEPA's reflection LM, such as openai/gpt-4o (hosted: needs --execute)"})
    candidates: int = field(default=8, metadata={
        "help": "demo sets random-search tries (besides zero-shot, labeled and one bootstrap)"})
    threads: int = field(default=160, metadata={
        "help": "parallel LM calls; the local engine answers them as one batch (a whole "
                "split at once is fastest on a CPU)"})
    price_in: float | None = field(default=None, metadata={"help": "USD/1M input tokens"})
    price_out: float | None = field(default=None, metadata={"help": "USD/1M output tokens"})


# %% Step 1. Environment & data preparation
def prepare_data(cfg: Config, console):
    """Load the shared dataset and wrap each pair as a dspy.Example with one input field."""
    # Before dspy is imported: litellm would otherwise fetch its price map from the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import dspy
    hosted = cfg.lm != LOCAL_LM
    versions = edu_qa.library_versions("dspy", "litellm", "torch", "transformers")
    console.print(f"LM: {cfg.lm if hosted else 'local ' + edu_qa.describe_model(cfg.model)} | "
                  f"paid: {'yes' if hosted else 'no'} | optimizer: {cfg.optimizer} | adapter: "
                  f"{cfg.adapter}")
    edu_qa.print_versions(console, versions)
    data = edu_qa.load_qa(cfg.data, seed=cfg.seed)

    def examples(split):
        return [dspy.Example(question=r.question, answer=r.answer, key=r.key or "",
                             subject=r.subject).with_inputs("question") for r in split]
    train = examples(edu_qa.training_subset(data.split("train"), cfg.train_size, cfg.seed))
    edu_qa.print_data_summary(console, data, train)
    return data, train, examples(data.split("dev")), examples(data.split("test")), \
        {"hosted": hosted, "versions": versions}


if __name__ == "__main__":
    cfg, console = edu_qa.begin(Config, __doc__, NOTEBOOK_ARGS)
    edu_qa.on_interrupt(lambda: f"Interrupted. LM calls answered so far are cached in "
                        f"{cfg.output_dir}/cache: a re-run does not pay for them again.")
    dspy_engine.check_optimizer(cfg.optimizer, cfg.reflection_lm, cfg.execute)
    start = time.perf_counter()
    edu_qa.step(console, 1, "Environment & data preparation")
    data, train, dev, test, env = prepare_data(cfg, console)


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
    console.print(edu_qa.visible(dspy_engine.render_messages(messages)), soft_wrap=True)
    edu_qa.notice(console, dspy_engine.format_in_words(messages, train[0].question))
    return TutorAnswer, adapter


def make_adapter(name: str):
    """How a signature becomes messages and a reply becomes fields. DSPy's ChatAdapter asks
    for '[[ ## answer ## ]]' markers, which a 135M chat model has never seen: almost every
    reply fails to parse, and the demos spend themselves teaching the format. small-chat
    (edu_qa/dspy_engine.py) speaks the model's own chat format, so the demos teach the task."""
    import dspy
    if name == "chat":
        # No JSON fallback: on a parse failure a small model would get a second, longer
        # prompt and hide the failure we want students to see (and count).
        return dspy.ChatAdapter(use_json_adapter_fallback=False)
    return dspy_engine.small_chat_adapter()


if __name__ == "__main__":
    edu_qa.step(console, 2, "Data format preparation")
    signature, adapter = convert_format(cfg, train, console)


# %% Step 3. Model configuration
def configure_model(cfg: Config, env: dict, console):
    """The LM DSPy calls: the embedded model as a custom engine, or a hosted LiteLLM model."""
    import dspy
    cache_dir = Path(cfg.output_dir) / "cache"
    # DSPy's own cache, in the project: a re-run with the same prompts costs no LM calls.
    dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=str(cache_dir))
    stop = [STOP] if cfg.adapter == "chat" else None  # small-chat: the model's end of turn
    if env["hosted"]:
        return dspy.LM(cfg.lm, temperature=0.0, max_tokens=cfg.max_new_tokens, stop=stop), None
    engine = dspy_engine.LocalEngine(cfg.model, cfg.max_new_tokens, max_batch=cfg.threads)
    # greedy (temperature 0) so that before and after differ only by the prompt
    lm = dspy.LM(f"local/{cfg.model}", engine=engine, temperature=0.0,
                 max_tokens=cfg.max_new_tokens, stop=stop)
    console.print(f"engine: the local model behind DSPy's engine interface | greedy | stop: "
                  f"{STOP if stop else 'end of turn'!r} | cache: {cache_dir}")
    return lm, engine


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
        return dspy.GEPA(metric=dspy_engine.gepa_metric, auto="light", num_threads=cfg.threads,
                         seed=cfg.seed, reflection_lm=dspy.LM(cfg.reflection_lm,
                                                              temperature=1.0,
                                                              max_tokens=16000))
    return None


if __name__ == "__main__":
    edu_qa.step(console, 3, "Model configuration")
    import dspy
    program = dspy.Predict(signature)
    if env["hosted"]:  # without --execute: the calls, tokens and cost it would pay, then stop
        dspy_engine.plan_or_require_key(cfg, adapter, signature, train, len(dev), len(test),
                                        console, edu_qa.command_line(METHOD, cfg))
    lm, engine = configure_model(cfg, env, console)
    # A reply the adapter cannot parse is an expected outcome on a small model, counted and
    # shown in step 5, not a reason to stop: lift DSPy's default limit of 10 errors per run.
    dspy.configure(lm=lm, adapter=adapter, max_errors=10**6)
    dspy_engine.quiet_dspy()
    prepared = time.perf_counter() - start


# %% Step 4. Fine-tuning / optimization
def tune(cfg: Config, program, train, dev, metric, console, engine=None):
    """Optimize on train (subjects taking turns, so the demos are not all from the first
    subject), keep the optimized program only if it beats the zero-shot one on dev, save it."""
    optimizer = dspy_engine.Watched(lambda: build_optimizer(cfg, metric), engine)
    order = edu_qa.subjects_take_turns(train, cfg.seed)
    with optimizer:  # its progress lines swallowed; its LM calls, time and examples counted
        if optimizer.optimizer is None:
            optimized = program.deepcopy()
        elif cfg.optimizer in ("random-search", "mipro", "gepa"):  # these select on dev
            optimized = optimizer.optimizer.compile(program, trainset=order, valset=dev)
        else:
            optimized = optimizer.optimizer.compile(program, trainset=order)
    report = optimizer.report(optimized, cfg, train, console)
    keep, kept, dev_scores = dspy_engine.keep_better_on_dev(program, optimized, dev,
                                                            cfg.threads, console)
    path = dspy_engine.save_program(keep, Path(cfg.output_dir) / "program.json", console)
    return keep, {"seconds": optimizer.seconds, "path": path, "kept": kept, "report": report,
                  "optimized_program": optimized, "demos": len(report["demos"]),
                  "dev": dev_scores}


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


if __name__ == "__main__":
    edu_qa.step(console, 4, "Fine-tuning / optimization")
    kept, tuned = tune(cfg, program, train, dev, make_metric(), console, engine)


# %% Step 5. Inference and demonstration
def infer(cfg: Config, program, optimized, kept: str, data, examples, lm, engine, console):
    """The plain prompt, the zero-shot and the optimized program answer the same test
    questions, graded alike; "after" is the program step 4 kept. The optimized one is scored
    even when not kept: what the dev rule saved (or cost) is part of the lesson."""
    test = data.split("test")
    start = time.perf_counter()

    # the plain prompt: on the local model every method's "before" (results/baseline.json);
    # a hosted LM is another model and answers for itself
    before, source = dspy_engine.plain_prompt_answers(lm, engine, cfg, data, console)
    stages = dspy_engine.program_stages(program, optimized, examples, test, before,
                                        cfg.threads, console)
    seconds = time.perf_counter() - start
    if stages["zero-shot program"]["failures"]:
        dspy_engine.show_unparsed_reply(console, lm)
    kept_stage = stages["optimized program" if kept == "optimized" else "zero-shot program"]
    scores, rows, change = edu_qa.report_test_answers(
        console, test, before, kept_stage["answers"],
        title=f"plain prompt vs the kept program ({kept})",
        parse_failures={"after": kept_stage["failures"]})
    return scores, rows, {"seconds": seconds, "source": source, "change": change,
                          "per_question": seconds / (3 * len(test)),
                          "stages": {n: st["score"] for n, st in stages.items()}}


if __name__ == "__main__":
    edu_qa.step(console, 5, "Inference and demonstration")
    scores, rows, inference = infer(cfg, program, tuned["optimized_program"], tuned["kept"],
                                    data, test, lm, engine, console)
    # as a user would: program.json loaded into a fresh dspy.Predict answers alike
    reload = dspy_engine.reload_check(tuned["path"], signature, test[:3], rows, cfg.threads,
                                      console)


# %% Step 6. Comparison
def compare(cfg: Config, data, results: dict, console) -> None:
    """Results and the scoreboard, then every optimizer run so far on this dataset."""
    edu_qa.save_and_compare(console, data, results, cfg.results_dir, cfg.question)
    dspy_engine.print_runs(console, dspy_engine.record_run(cfg.results_dir, data, results))


if __name__ == "__main__":
    edu_qa.step(console, 6, "Comparison")
    results = dspy_engine.results(METHOD, cfg, data, train, env, lm, engine, adapter, signature,
                                  kept, tuned, inference, scores, rows, reload, prepared, start)
    compare(cfg, data, results, console)
