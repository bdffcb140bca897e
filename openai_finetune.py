"""OpenAI-style fine-tuning: teach a model to answer educational questions by training its
weights on a fine-tuning SERVICE: upload a file, start a job, watch it, call the ft: model.

    python openai_finetune.py                 # free: the whole workflow on a local service
    python openai_finetune.py --dry-run       # plan only: checks, tokens, cost, the requests
    python openai_finetune.py --train-size 20 # fewer examples: more epochs, same rule
    OPENAI_API_KEY=sk-... python openai_finetune.py --execute --max-cost 1.00   # OpenAI, pays
    python openai_finetune.py --execute [--cancel]   # again: resumes watching (cancels) that job
    python openai_finetune.py --execute --base-url http://HOST:8000/v1   # another service

What changes: the model's WEIGHTS, on the service's machines. You upload chat-format examples,
a job trains a private copy of the base model, and you get back a model id (ft:...) to call.

Where it runs. OpenAI is closing self-serve fine-tuning (its API deprecations page, notice of
2026-05-07): no new jobs for organizations that never fine-tuned (since 2026-05-07) or had no
fine-tuned inference in 60 days (since 2026-07-02), and for nobody from 2027-01-06; fine-tuned
models serve until their base model is shut down (gpt-4o-mini-2024-07-18, gpt-4o-2024-08-06,
gpt-4.1 and gpt-4.1-mini on 2027-01-14; gpt-4.1-nano shut down on 2026-10-23). So no OpenAI
model can be fine-tuned after 2027-01-06: from that day --execute against OpenAI refuses, and
step 1 prints the base model's date before then. So by default this script starts a local
OpenAI-compatible fine-tuning service (finetune_service.py) on 127.0.0.1 and runs the same SDK
calls against it: it trains SmolLM2-135M-Instruct with LoRA on this CPU, for real, for free,
and prints beside it what OpenAI would be sent and would charge.

The one rule: nothing costs money until you add --execute. A job is recorded (by service and
training file sha256) before it is created, so a re-run after Ctrl-C, a crash or a lost reply
never uploads, starts or pays twice.

As a notebook (jupytext --to notebook openai_finetune.py): a cell per step; NOTEBOOK_ARGS.

Exit status: 0 done; 2 a problem to fix (the data, a missing key, a refusal by the service,
quoted); 3 the job failed or was cancelled (--new-job starts another); 4 --max-wait reached,
the job goes on (re-run to resume watching); 130 interrupted (Ctrl-C; re-run to resume).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa
from edu_qa import chat_format, openai_jobs

METHOD = "openai_finetune"
TRAINING_FILE = edu_qa.HERE / "openai_edu_qa_training.jsonl"  # committed; made from the dataset
LOCAL_MODEL = "smollm2-135m-instruct"  # what the local service fine-tunes (the embedded model)
NOTEBOOK_ARGS: list[str] = []  # in a notebook, the settings: e.g. ["--dry-run"]


@dataclass(frozen=True)
class Config(edu_qa.SharedConfig):  # data, seed, train size, results...: edu_qa/settings.py
    model: str = field(default="gpt-4o-mini-2024-07-18", metadata={
        "help": "OpenAI base model to fine-tune with --execute (a fine-tunable snapshot); the "
                "plan and cost estimate are for it"})
    output_dir: str = field(default="outputs/openai_finetune", metadata={
        "help": "validation file, converted files for --data, the job state file, and the "
                "local service's files, jobs and models"})
    execute: bool = field(default=False, metadata={
        "help": "upload to OpenAI (or --base-url), train and call the API: this costs money"})
    # where the job runs
    dry_run: bool = field(default=False, metadata={
        "help": "plan only: checks, token counts, cost, the exact requests; no service"})
    local_model: str = field(default=LOCAL_MODEL, metadata={
        "help": "base model the local service fine-tunes (without --execute)"})
    base_url: str | None = field(default=None, metadata={
        "help": "with --execute: an OpenAI-compatible service (default $OPENAI_BASE_URL, OpenAI)"})
    new_job: bool = field(default=False, metadata={
        "help": "start a new job although one is recorded (after a failed or cancelled one)"})
    # the job
    epochs: int | None = field(default=None, metadata={
        "help": "passes over the data; default: OpenAI's rule (3, clamped)"})
    batch_size: int | None = field(default=None, metadata={
        "help": "default: chosen by the service for the dataset size"})
    learning_rate_multiplier: float | None = field(default=None, metadata={
        "help": "default: chosen by the service"})
    suffix: str = field(default="edu-qa", metadata={
        "help": "appears in the fine-tuned model's name (ft:...:edu-qa:...)"})
    price_training: float | None = field(default=None, metadata={
        "help": "USD per 1M training tokens, overriding the dated table"})
    max_cost: float = field(default=5.0, metadata={
        "help": "with --execute: refuse to start a job estimated to cost more (USD)"})
    max_wait: float = field(default=3600, metadata={
        "help": "seconds to watch the job; it goes on after, re-run to resume watching"})
    poll_interval: float | None = field(default=None, metadata={
        "help": "first wait between status checks (s); default 1 on the local service, else "
                "10 growing 1.5x up to 60"})
    cancel: bool = field(default=False, metadata={
        "help": "cancel the job recorded for this training file on this service"})
    concurrency: int = field(default=160, metadata={
        "help": "questions asked at once in step 5 (the local service answers them as one "
                "batch: a whole split at once is fastest on a CPU; OpenAI may rate-limit "
                "as many, and the SDK then retries)"})


# %% Step 1. Environment & data preparation
def prepare_data(cfg: Config, console):
    """Where the job runs, the API key only when --execute asks for it (never printed), and
    the shared dataset."""
    env = openai_jobs.where_it_runs(cfg, console)
    env["versions"] = edu_qa.library_versions("openai", "tiktoken")
    edu_qa.print_versions(console, env["versions"])
    data = edu_qa.load_qa(cfg.data, seed=cfg.seed)
    train = edu_qa.training_subset(data.split("train"), cfg.train_size, cfg.seed)
    edu_qa.print_data_summary(console, data, train)
    return data, train, data.split("dev"), data.split("test"), env


if __name__ == "__main__":
    cfg, console = edu_qa.begin(Config, __doc__, NOTEBOOK_ARGS)
    start = time.perf_counter()
    edu_qa.step(console, 1, "Environment & data preparation")
    data, train, dev, test, env = prepare_data(cfg, console)


# %% Step 2. Data format preparation
def convert_format(cfg: Config, data, train, dev, console):
    """QA pairs -> chat-format JSONL, OpenAI's own format checks and token counts, all before
    a file is written; then the files exactly as they will be uploaded."""
    examples = [to_chat(ex) for ex in train]
    stats = openai_jobs.check_examples(examples, train, data.path, cfg.model, cfg.train_size,
                                       console)
    # The committed example file is only ever regenerated from the shipped dataset; anyone
    # else's data (or a subset) goes to the output folder.
    shipped = data.path.resolve() == edu_qa.DATA_FILE.resolve() and cfg.train_size is None
    train_path = TRAINING_FILE if shipped else Path(cfg.output_dir) / "training.jsonl"
    valid_path = Path(cfg.output_dir) / "validation.jsonl"
    openai_jobs.write_jsonl(train_path, examples)
    openai_jobs.write_jsonl(valid_path, [to_chat(ex) for ex in dev])
    edu_qa.say(console, "One training line, exactly as uploaded:")
    console.print(train_path.read_text(encoding="utf-8").split("\n")[0], soft_wrap=True)
    openai_jobs.print_token_stats(stats, cfg.model, console)
    return {"train_path": train_path, "valid_path": valid_path, "examples": examples,
            "stats": stats, "shipped": shipped}


def to_chat(ex) -> dict:
    return {"messages": edu_qa.chat_messages(ex.question) +
            [{"role": "assistant", "content": ex.answer}]}


if __name__ == "__main__":
    edu_qa.step(console, 2, "Data format preparation")
    converted = convert_format(cfg, data, train, dev, console)


# %% Step 3. Model configuration
def configure_model(cfg: Config, converted: dict, n_test: int, console,
                    mode: str = "plan", n_dev: int = 0) -> dict:
    """Epochs by OpenAI's rule, the job's method and hyperparameters, and what OpenAI would
    charge; --max-cost guards a paid job (and never a cancel)."""
    n = len(converted["examples"])
    epochs = cfg.epochs or chat_format.default_epochs(n)
    hyper = {"n_epochs": epochs, "batch_size": cfg.batch_size or "auto",
             "learning_rate_multiplier": cfg.learning_rate_multiplier or "auto"}
    job = {"model": cfg.model, "training_file": "<id of the uploaded training file>",
           "validation_file": "<id of the uploaded validation file>",
           "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
           "suffix": cfg.suffix, "seed": cfg.seed}
    cost = openai_jobs.price_job(cfg, converted["stats"], epochs, n_test, n_dev)
    console.print(f"epochs: {epochs} ({'given' if cfg.epochs else 'OpenAI rule'}: {n} examples) "
                  f"| billable tokens: {cost['billable_tokens']:,} x {epochs} epochs = "
                  f"{cost['trained_tokens']:,}")
    console.print(f"OpenAI would charge: training ${cost['training_cost']:.4f} (${cost['price']}"
                  f"/1M) + test inference ${cost['inference_cost']:.4f}, prices of "
                  f"{openai_jobs.PRICES_CHECKED} | --max-cost ${cfg.max_cost:.2f}")
    if mode == "local":
        console.print(f"this run: the local service, $0; the same request, model {cfg.local_model}")
    if not cfg.epochs:
        edu_qa.notice(console, f"OpenAI's rule aims at 3 epochs but at least 100 example-passes, "
                      f"so {n} examples get {epochs}: fewer examples, more passes over each")
    total = cost["training_cost"] + cost["inference_cost"]
    if total > cfg.max_cost and mode == "openai" and not cfg.cancel:
        raise edu_qa.UserError(f"estimated cost ${total:.4f} is above --max-cost "
                               f"${cfg.max_cost:.2f}; nothing was sent")
    return dict(cost, epochs=epochs, job=job)


if __name__ == "__main__":
    edu_qa.step(console, 3, "Model configuration")
    plan = configure_model(cfg, converted, len(test), console, env["mode"], len(dev))
    prepared = time.perf_counter() - start
    local = env["mode"] == "local"
    plan_sent = dict(plan, job=dict(plan["job"], model=cfg.local_model)) if local else plan


# %% Step 4. Fine-tuning / optimization
def tune(cfg: Config, client, converted: dict, plan: dict, state, console) -> dict:
    """Upload, create the job, watch it. A job already recorded for this training file on this
    service is resumed, never started again; a create that may have reached the service is
    looked up (by its metadata) before it is sent again."""
    openai_jobs.print_requests(converted, plan, console)
    if client is None:
        return {"job": None, "seconds": 0.0}
    cancelled = openai_jobs.resume_or_cancel(cfg, client, state, console)
    if cancelled is not None:
        return {"job": cancelled, "seconds": 0.0}
    entry = state.entry
    if "job_id" not in entry:
        for kind, path in (("training_file_id", converted["train_path"]),
                           ("validation_file_id", converted["valid_path"])):
            if kind not in entry:
                state.doing = f"POST /files ({path.name})"
                with open(path, "rb") as f:
                    uploaded = client.files.create(file=f, purpose="fine-tune")
                state.update(**{kind: uploaded.id})  # never upload the same file twice
                console.print(f"uploaded {path.name}: {uploaded.id}")
        request = dict(plan["job"], training_file=entry["training_file_id"],
                       validation_file=entry["validation_file_id"])
        job = openai_jobs.create_job_once(client, request, state, console)
        console.print(f"created job {job.id} ({job.status}); state: {state.path}")
    state.doing = f"watching job {entry['job_id']}"
    start = time.perf_counter()
    job = openai_jobs.watch(client, entry["job_id"], console, cfg.poll_interval, cfg.max_wait)
    return {"job": job, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    edu_qa.step(console, 4, "Fine-tuning / optimization")
    client = state = None
    edu_qa.on_interrupt(lambda: openai_jobs.interrupted(state, cfg.output_dir, env["mode"]))
    if env["mode"] != "plan":
        client, service, close_service = openai_jobs.open_service(env, cfg.output_dir)
        state = openai_jobs.JobState(Path(cfg.output_dir) / "state.json", service,
                                     openai_jobs.sha256_file(converted["train_path"]))
    with openai_jobs.api_errors_as_messages(state, env):
        tuned = tune(cfg, client, converted, plan_sent, state, console)
    job = tuned["job"]
    if cfg.cancel:
        raise edu_qa.Stop(0)
    if job is not None and job.status != "succeeded":
        openai_jobs.job_not_done(job, state, console)  # exits 3 (failed) or 4 (still running)


# %% Step 5. Inference and demonstration
def infer(cfg: Config, client, job, data, console, model: str, dev=(), checkpoints=(),
          local: bool = False):
    """Which model to keep, chosen on dev by the answers: the base or a checkpoint (never
    worse than the base). Then the base and the kept model answer the same test questions:
    same prompt, temperature 0. On the local service the base is the embedded model, whose
    plain-prompt answers every method shares (results/baseline.json)."""
    test = data.split("test")
    request = {"model": model, "messages": edu_qa.chat_messages(test[0].question),
               "temperature": 0, "max_completion_tokens": cfg.max_new_tokens}
    if client is None:
        console.print("would send to OpenAI: POST /chat/completions " + json.dumps(
            dict(request, model=cfg.model)), soft_wrap=True)
        console.print(f"(for each of the {len(dev)} dev questions, once for the base model and "
                      "once for each checkpoint; then for each of the "
                      f"{len(test)} test questions, once for the base and once for the kept)")
        return None
    start, ask = time.perf_counter(), openai_jobs.Asker(client, request, model, cfg.concurrency)
    tuned = [(f"step {cp.step_number}", job.fine_tuned_model if cp is checkpoints[-1]
              else cp.fine_tuned_model_checkpoint) for cp in checkpoints]
    candidates = [("base", model)] + (tuned or [("final", job.fine_tuned_model)])
    dev_scores = {name: edu_qa.score(dev, ask.answers(model_id, dev))
                  for name, model_id in candidates} if dev else {}
    kept, kept_id = openai_jobs.choose_on_dev(candidates, dev_scores, job, console)
    if local:  # the embedded model: its plain-prompt answers are every method's "before"
        import finetune_service
        before, source = edu_qa.plain_prompt_baseline(
            finetune_service.BASE_MODELS.get(model, model), data, cfg.max_new_tokens,
            lambda chats: ask.answers(model, test), console, cfg.results_dir)
    else:  # a model at OpenAI is not the local one: its own plain-prompt answers
        before = ask.answers(model, test)
        source = {"kind": "plain prompt on the service's base model", "this_run": True}
    after = before if kept_id == model else ask.answers(kept_id, test)
    ask.close()
    seconds = time.perf_counter() - start
    scores, rows, change = edu_qa.report_test_answers(
        console, test, before, after, title="plain prompt vs the kept fine-tuned model")
    return {"scores": scores, "rows": rows, "usage": ask.usage, "kept": kept,
            "kept_model": kept_id, "source": source, "change": change,
            "dev": {name: {"accuracy": sc["accuracy"], "f1": sc["f1"]}
                    for name, sc in dev_scores.items()},
            "tokens": sum(map(sum, ask.usage.values())), "per_question": seconds / (2 * len(test))}


if __name__ == "__main__":
    edu_qa.step(console, 5, "Inference and demonstration")
    inference = None
    with openai_jobs.api_errors_as_messages(state, env):
        if state:
            state.doing = "POST /chat/completions"
        checkpoints = openai_jobs.list_checkpoints(client, job.id, console) if job else []
        inference = infer(cfg, client, job, data, console,
                          cfg.local_model if local else cfg.model, dev, checkpoints, local)
    if client is not None:
        close_service()


# %% Step 6. Comparison
def compare(cfg: Config, data, results: dict, console) -> None:
    """Write this method's results, then compare every method that has results."""
    edu_qa.save_and_compare(console, data, results, cfg.results_dir, cfg.question)


if __name__ == "__main__":
    edu_qa.step(console, 6, "Comparison")
    results = openai_jobs.results(METHOD, cfg, data, train, env, plan, converted, job, inference,
                                  local, prepared, start)
    compare(cfg, data, results, console)
