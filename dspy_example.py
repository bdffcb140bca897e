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

import contextlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa
from edu_qa import dspy_costs, dspy_engine, notices

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
@dataclass(frozen=True)
class Where:
    hosted: bool  # a hosted LM (paid, needs --execute) or the local model


def prepare_data(cfg: Config, console) -> edu_qa.Prepared:
    """Load the shared dataset and wrap each pair as a dspy.Example with one input field."""
    # The data first: a bad --data file is named before dspy's import (~3 s on 2 cores).
    data = edu_qa.load_qa(cfg.data, seed=cfg.seed)
    # Before dspy is imported: litellm would otherwise fetch its price map from the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import dspy
    hosted = cfg.lm != LOCAL_LM
    console.print(f"LM: {cfg.lm if hosted else 'local ' + edu_qa.describe_model(cfg.model)} | "
                  f"paid: {'yes' if hosted else 'no'} | optimizer: {cfg.optimizer} | adapter: "
                  f"{cfg.adapter}")

    def examples(split):
        return [dspy.Example(question=r.question, answer=r.answer, key=r.key or "",
                             subject=r.subject).with_inputs("question") for r in split]
    train = examples(edu_qa.training_subset(data.split("train"), cfg.train_size, cfg.seed))
    edu_qa.print_data_summary(console, data, train)
    return edu_qa.Prepared(data, train, examples(data.split("dev")),
                           examples(data.split("test")), Where(hosted))


if __name__ == "__main__":
    cfg, console = edu_qa.begin(Config, __doc__, NOTEBOOK_ARGS)
    edu_qa.on_interrupt(lambda: f"Interrupted. LM calls answered so far are cached in "
                        f"{cfg.output_dir}/cache: a re-run does not pay for them again.")
    edu_qa.step(console, 1, "Environment & data preparation")
    prepared = prepare_data(cfg, console)
    data, train, dev, test, where = (prepared.data, prepared.train, prepared.dev,
                                     prepared.test, prepared.where)
    run = edu_qa.Run.start(METHOD, cfg, data, train,
                           cfg.lm if where.hosted else edu_qa.describe_model(cfg.model))
    run.set(versions=edu_qa.library_versions("dspy", "litellm", "torch", "transformers"),
            trainable_params=0, data_left_machine=where.hosted)
    edu_qa.print_versions(console, run.results["versions"])
    edu_qa.notice(console, notices.splits(run.results))


# %% Step 2. Data format preparation
@dataclass(frozen=True)
class Formatted:
    signature: type  # dspy.Signature: question -> answer, its instructions
    adapter: object  # dspy.Adapter: how the signature becomes messages


def convert_format(cfg: Config, train, console) -> Formatted:
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
    edu_qa.notice(console, notices.dspy_messages(messages, train[0].question))
    return Formatted(TutorAnswer, adapter)


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
    formatted = convert_format(cfg, train, console)


# %% Step 3. Model configuration
@dataclass(frozen=True)
class Configured:
    lm: object       # dspy.LM: what every Predict calls
    engine: object   # the local model's engine, or None for a hosted LM
    program: object  # dspy.Predict(signature): the zero-shot program
    optimizer: object  # the optimizer, or None (--optimizer none)


def configure_model(cfg: Config, formatted: Formatted, prepared: edu_qa.Prepared, seen: set,
                    console) -> Configured:
    """The LM DSPy calls (the embedded model as a custom engine, or a hosted LiteLLM model),
    the program and the optimizer."""
    import dspy
    dspy_engine.check_optimizer(cfg.optimizer, cfg.reflection_lm, cfg.execute)
    program = dspy.Predict(formatted.signature)
    if prepared.where.hosted:  # without --execute: the calls, tokens and cost, then stop
        dspy_costs.plan_or_require_key(cfg, formatted.adapter, formatted.signature,
                                        prepared.train, len(prepared.dev), len(prepared.test),
                                        console, edu_qa.command_line(METHOD, cfg))
    cache_dir = Path(cfg.output_dir) / "cache"
    # DSPy's own cache, in the project: a re-run with the same prompts costs no LM calls.
    dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=str(cache_dir))
    stop = [STOP] if cfg.adapter == "chat" else None  # small-chat: the model's end of turn
    engine = None
    if prepared.where.hosted:
        lm = dspy.LM(cfg.lm, temperature=0.0, max_tokens=cfg.max_new_tokens, stop=stop)
    else:
        engine = dspy_engine.LocalEngine(cfg.model, cfg.max_new_tokens, max_batch=cfg.threads)
        # greedy (temperature 0) so that before and after differ only by the prompt
        lm = dspy.LM(f"local/{cfg.model}", engine=engine, temperature=0.0,
                     max_tokens=cfg.max_new_tokens, stop=stop)
        console.print(f"engine: the local model behind DSPy's engine interface | greedy | "
                      f"stop: {STOP if stop else 'end of turn'!r} | cache: {cache_dir}")
    # A reply the adapter cannot parse is an expected outcome on a small model, counted and
    # shown in step 5, not a reason to stop: lift DSPy's default limit of 10 errors per run.
    dspy.configure(lm=lm, adapter=formatted.adapter, max_errors=10**6)
    dspy_engine.quiet_dspy()
    with contextlib.redirect_stdout(io.StringIO()):  # its constructor announces its plan
        optimizer = build_optimizer(cfg, make_metric(seen))
    return Configured(lm, engine, program, optimizer)


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


def make_metric(seen: set | None = None):
    """The shared metric in DSPy's shape. For scoring: word-overlap F1 against the reference.
    While bootstrapping (trace given) a demo is kept only if its FIRST sentence holds the key
    fact: a demo that mentions the key in passing ('The liver. ... the kidneys ...') teaches
    the model a wrong answer. seen collects the training questions checked as demos."""
    def metric(example, pred, trace=None, *args):
        answer = pred.get("answer", "") or ""
        if trace is not None:
            if seen is not None:
                seen.add(example.question)
            return edu_qa.is_correct(edu_qa.scoring.first_sentence(answer), example.key or None,
                                     example.answer)
        return edu_qa.f1(answer, example.answer)
    return metric


if __name__ == "__main__":
    edu_qa.step(console, 3, "Model configuration")
    seen: set = set()  # the training examples the optimizer checks as demos
    configured = configure_model(cfg, formatted, prepared, seen, console)
    run.prepared()
    edu_qa.notice(console, notices.dspy_program(run.results))


# %% Step 4. Fine-tuning / optimization
def answers_of(program, examples, cfg: Config) -> tuple[list[str], int]:
    """The program's answers to the examples, and how many replies the adapter could not
    parse. dspy.Evaluate runs the program on all of them in parallel threads, which the local
    engine answers as one batch (it averages the F1 metric too; the answers are graded by
    edu_qa.score, as every method's are)."""
    import dspy
    evaluate = dspy.Evaluate(devset=examples, metric=make_metric(), num_threads=cfg.threads,
                             display_progress=False, failure_score=0.0)
    preds = [pred for _, pred, _ in evaluate(program).results]
    # an empty Prediction is a call whose output the adapter could not parse
    return [p.get("answer", "") or "" for p in preds], sum("answer" not in p for p in preds)


def tune(cfg: Config, configured: Configured, train, dev, seen: set, console,
         run) -> edu_qa.Tuned:
    """Optimize on train (subjects taking turns, so the demos are not all from the first
    subject), keep the optimized program only if it beats the zero-shot one on dev, save it."""
    program, optimizer = configured.program, configured.optimizer
    order = edu_qa.subjects_take_turns(train, cfg.seed)
    calls, start = dspy_engine.usage(configured.lm, configured.engine)["calls"], time.perf_counter()
    # its progress printed nowhere (the report says it); the teacher's questions asked in batches
    with contextlib.redirect_stdout(io.StringIO()), dspy_engine.teacher_questions_together():
        if optimizer is None:
            optimized = program.deepcopy()
        elif cfg.optimizer in ("random-search", "mipro", "gepa"):  # these select on dev
            optimized = optimizer.compile(program, trainset=order, valset=dev)
        else:
            optimized = optimizer.compile(program, trainset=order)
    seconds = time.perf_counter() - start
    report = dspy_engine.optimizer_report(
        optimized, cfg, train, seconds, seen,
        dspy_engine.usage(configured.lm, configured.engine)["calls"] - calls, console)
    # the zero-shot program is always a candidate: the optimized one is kept only if it
    # answers the dev questions better (accuracy, then F1, as the other methods choose)
    dev_scores = {}
    for name, candidate in (("zero-shot", program), ("optimized", optimized)):
        answers, failures = answers_of(candidate, dev, cfg)
        dev_scores[name] = edu_qa.score(dev, answers, failures)
        console.print(f"dev: {name:>9} program: accuracy {dev_scores[name]['accuracy']:.2f} | "
                      f"word-overlap F1 {dev_scores[name]['f1']:.2f} | parse failures "
                      f"{failures}/{len(dev)}")
    kept = "optimized" if (dev_scores["optimized"]["accuracy"], dev_scores["optimized"]["f1"]) \
        > (dev_scores["zero-shot"]["accuracy"], dev_scores["zero-shot"]["f1"]) else "zero-shot"
    console.print("kept: the optimized program (better dev answers than zero-shot)"
                  if kept == "optimized" else "kept: the ZERO-SHOT program. The optimized one "
                  "did not answer the dev questions better, so the optimization is not used.")
    keep = optimized if kept == "optimized" else program.deepcopy()
    path = Path(cfg.output_dir) / "program.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    keep.save(str(path))  # its signature, instructions and demos, in JSON
    console.print(f"saved: {path} ({edu_qa.disk_size(path) / 1e3:.1f} kB)")
    model = run.results["model"]
    run.timed(tune=seconds)
    run.set(artifact=edu_qa.artifact(path),
            tuned_model=f"{model} + optimized prompt ({cfg.optimizer}, {len(report['demos'])} "
            "demos)" if kept == "optimized"
            else f"{model} (zero-shot program kept: the optimized one was not better on dev)")
    run.extra(optimizer=cfg.optimizer, adapter=cfg.adapter, kept=kept,
              dev={n: {"accuracy": sc["accuracy"], "f1": sc["f1"]}
                   for n, sc in dev_scores.items()}, optimizer_report=report)
    return edu_qa.Tuned(keep, kept, seconds, path, optimized)


if __name__ == "__main__":
    edu_qa.step(console, 4, "Fine-tuning / optimization")
    tuned = tune(cfg, configured, train, dev, seen, console, run)
    run.set(prompt_template=dspy_engine.render_messages(formatted.adapter.format(
        formatted.signature, demos=tuned.model.predictors()[0].demos,
        inputs={"question": "{question}"})))  # the kept program's demos and instruction
    edu_qa.notice(console, notices.dspy_demos(run.results))


# %% Step 5. Inference and demonstration
def infer(cfg: Config, configured: Configured, tuned: edu_qa.Tuned, data, test, console, run):
    """The plain prompt, the zero-shot and the optimized program answer the same test
    questions, graded alike; "after" is the program step 4 kept. The optimized one is scored
    even when not kept: what the dev rule saved (or cost) is part of the lesson."""
    start = time.perf_counter()
    # the plain prompt: on the local model every method's "before" (results/baseline.json);
    # a hosted LM is another model and answers for itself
    before, source = dspy_engine.plain_prompt_answers(configured.lm, configured.engine, cfg,
                                                      data, console)
    stages = {}
    for name, program in (("zero-shot program", configured.program),
                          ("optimized program", tuned.optimized)):
        answers, failures = answers_of(program, test, cfg)
        stages[name] = dspy_engine.stage_score(name, data.split("test"), answers, failures,
                                               before, console)
    if stages["zero-shot program"]["parse_failures"]:
        dspy_engine.show_unparsed_reply(console, configured.lm)
    kept = stages["optimized program" if tuned.kept == "optimized" else "zero-shot program"]
    seconds = time.perf_counter() - start
    scores, rows, _ = edu_qa.report_test_answers(
        console, data.split("test"), before, kept["answers"],
        title=f"plain prompt vs the kept program ({tuned.kept})",
        parse_failures={"after": kept["parse_failures"]})
    run.extra(stages={n: {k: v for k, v in st.items() if k != "answers"}
                      for n, st in stages.items()})
    return edu_qa.Answered(before, kept["answers"], scores, rows, seconds), source


if __name__ == "__main__":
    edu_qa.step(console, 5, "Inference and demonstration")
    answered, source = infer(cfg, configured, tuned, data, test, console, run)
    run.answered(answered, source, per_question_answers=3)
    # as a user would: program.json loaded into a fresh dspy.Predict answers alike
    import dspy
    fresh = dspy.Predict(formatted.signature)
    fresh.load(str(tuned.artifact))
    same = sum(a == b for a, b in zip(answers_of(fresh, test[:3], cfg)[0], answered.after))
    console.print(f"reload check (program.json into a fresh dspy.Predict): {same}/3 answers "
                  "identical")
    run.extra(reload_check={"checked": 3, "identical": same})
    edu_qa.notice(console, notices.style_or_facts(run.results))


# %% Step 6. Comparison
def compare(run, console) -> None:
    """Every optimizer run so far on this dataset, in one table; then results/dspy.json and
    the scoreboard of every method's results."""
    dspy_engine.print_runs(console, dspy_engine.record_run(run.cfg.results_dir, run.data,
                                                           run.results))
    run.save_and_compare(console)


if __name__ == "__main__":
    edu_qa.step(console, 6, "Comparison")
    # the LM calls and tokens that reached the model, and a hosted LM's bill, on the record
    dspy_engine.record_usage(run, configured.lm, configured.engine, where.hosted)
    compare(run, console)
