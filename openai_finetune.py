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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa
from edu_qa import chat_format, notices, openai_costs, openai_jobs
from edu_qa.recipe import EMBEDDED_ID

METHOD = "openai_finetune"
TRAINING_FILE = edu_qa.HERE / "openai_edu_qa_training.jsonl"  # committed; made from the dataset
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
    local_model: str = field(default=EMBEDDED_ID, metadata={
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
        "help": "questions asked at once in steps 4 and 5 (the local service answers them as "
                "one batch: a whole split at once is fastest on a CPU; OpenAI may rate-limit "
                "as many, and the SDK then retries)"})


# %% Step 1. Environment & data preparation
def prepare_data(cfg: Config, console) -> edu_qa.Prepared:
    """Where the job runs, the API key only when --execute asks for it (never printed), and
    the shared dataset."""
    where = openai_jobs.where_it_runs(cfg, console)  # mode: local, openai or plan
    data = edu_qa.load_qa(cfg.data, seed=cfg.seed)
    train = edu_qa.training_subset(data.split("train"), cfg.train_size, cfg.seed)
    edu_qa.print_data_summary(console, data, train)
    return edu_qa.Prepared(data, train, data.split("dev"), data.split("test"), where)


if __name__ == "__main__":
    cfg, console = edu_qa.begin(Config, __doc__, NOTEBOOK_ARGS)
    edu_qa.step(console, 1, "Environment & data preparation")
    prepared = prepare_data(cfg, console)
    data, train, dev, test, where = (prepared.data, prepared.train, prepared.dev,
                                     prepared.test, prepared.where)
    local = where.mode == "local"
    run = edu_qa.Run.start(METHOD, cfg, data, train, cfg.local_model if local else cfg.model)
    run.set(versions=edu_qa.library_versions("openai", "tiktoken"),
            data_left_machine=where.mode == "openai")
    edu_qa.print_versions(console, run.results["versions"])
    edu_qa.notice(console, notices.splits(run.results))


# %% Step 2. Data format preparation
@dataclass(frozen=True)
class Formatted:
    train_path: Path  # the files exactly as uploaded
    valid_path: Path
    examples: list    # the training examples, {"messages": [...]}
    stats: dict       # tokens per example, by OpenAI's encoding


def convert_format(cfg: Config, data, train, dev, console) -> Formatted:
    """QA pairs -> chat-format JSONL, OpenAI's own format checks and token counts, all before
    a file is written; then the files exactly as they will be uploaded."""
    examples = [to_chat(ex) for ex in train]
    stats = openai_costs.check_examples(examples, train, data.path, cfg.model, cfg.train_size,
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
    openai_costs.print_token_stats(stats, cfg.model, console)
    return Formatted(train_path, valid_path, examples, stats)


def to_chat(ex) -> dict:
    return {"messages": edu_qa.chat_messages(ex.question) +
            [{"role": "assistant", "content": ex.answer}]}


if __name__ == "__main__":
    edu_qa.step(console, 2, "Data format preparation")
    formatted = convert_format(cfg, data, train, dev, console)
    run.extra(token_distribution=formatted.stats["distribution"],
              encoding=formatted.stats["encoding"])
    edu_qa.notice(console, notices.chat_tokens(formatted.stats))


# %% Step 3. Model configuration
def configure_model(cfg: Config, formatted: Formatted, n_test: int, console,
                    mode: str = "plan", n_dev: int = 0) -> dict:
    """Epochs by OpenAI's rule, the job's method and hyperparameters, and what OpenAI would
    charge; --max-cost guards a paid job (and never a cancel)."""
    n = len(formatted.examples)
    epochs = cfg.epochs or chat_format.default_epochs(n)
    hyper = {"n_epochs": epochs, "batch_size": cfg.batch_size or "auto",
             "learning_rate_multiplier": cfg.learning_rate_multiplier or "auto"}
    job = {"model": cfg.model, "training_file": "<id of the uploaded training file>",
           "validation_file": "<id of the uploaded validation file>",
           "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
           "suffix": cfg.suffix, "seed": cfg.seed}
    cost = openai_costs.price_job(cfg, formatted.stats, epochs, n_test, n_dev)
    console.print(f"epochs: {epochs} ({'given' if cfg.epochs else 'OpenAI rule'}: {n} examples) "
                  f"| billable tokens: {cost['billable_tokens']:,} x {epochs} epochs = "
                  f"{cost['trained_tokens']:,}")
    console.print(f"OpenAI would charge: training ${cost['training_cost']:.4f} (${cost['price']}"
                  f"/1M) + test inference ${cost['inference_cost']:.4f}, prices of "
                  f"{openai_costs.PRICES_CHECKED} | --max-cost ${cfg.max_cost:.2f}")
    if mode == "local":
        console.print(f"this run: the local service, $0; the same request, model "
                      f"{cfg.local_model}")
    total = cost["training_cost"] + cost["inference_cost"]
    if total > cfg.max_cost and mode == "openai" and not cfg.cancel:
        raise edu_qa.UserError(f"estimated cost ${total:.4f} is above --max-cost "
                               f"${cfg.max_cost:.2f}; nothing was sent")
    return dict(cost, epochs=epochs, job=job)


if __name__ == "__main__":
    edu_qa.step(console, 3, "Model configuration")
    plan = configure_model(cfg, formatted, len(test), console, where.mode, len(dev))
    estimate = round(plan["training_cost"] + plan["inference_cost"], 4)
    run.set(cost_usd={"amount": estimate, "kind": "estimated"})
    run.counted(training=plan["trained_tokens"])
    run.extra(service=where.base_url, epochs=plan["epochs"], job_request=plan["job"],
              openai_estimate_usd=estimate, price_per_1m_training_tokens=plan["price"],
              prices_checked=openai_costs.PRICES_CHECKED)
    # the request sent: for the model the service fine-tunes (the local one, or --model)
    plan = dict(plan, job=dict(plan["job"], model=cfg.local_model if local else cfg.model))
    run.prepared()
    edu_qa.notice(console, notices.openai_epochs(run.results))


# %% Step 4. Fine-tuning / optimization
def tune(cfg: Config, client, formatted: Formatted, plan: dict, state, dev, console,
         run) -> edu_qa.Tuned | None:
    """Upload, create the job, watch it, keep the best of its checkpoints on dev. A job
    already recorded for this training file on this service is resumed, never started again;
    a create that may have reached the service is looked up (by its metadata) before it is
    sent again."""
    openai_jobs.print_requests(formatted, plan, console)
    if client is None:  # --dry-run: the requests above, nothing sent
        return None
    if openai_jobs.resume_or_cancel(cfg, client, state, console) is not None:
        raise edu_qa.Stop(0)  # --cancel: sent; nothing else to do
    entry = state.entry
    if "job_id" not in entry:
        for kind, path in (("training_file_id", formatted.train_path),
                           ("validation_file_id", formatted.valid_path)):
            if kind not in entry:
                state.doing = f"POST /files ({path.name})"
                with open(path, "rb") as f:
                    uploaded = client.files.create(file=f, purpose="fine-tune")
                state.update(**{kind: uploaded.id})  # never upload the same file twice
                console.print(f"uploaded {path.name}: {uploaded.id}")
        request = dict(plan["job"], training_file=entry["training_file_id"],
                       validation_file=entry["validation_file_id"])
        # a run that stopped after sending the create left its intent: find that job instead
        job = state.job_created_before(client, console)
        if job is None:
            intent = state.intend_to_create()  # saved BEFORE the call, sent with it
            state.doing = "POST /fine_tuning/jobs"
            # no automatic retry: a reply lost after the job was made would make a second
            # (paid) job; a re-run finds the first by its metadata instead
            job = client.with_options(max_retries=0).fine_tuning.jobs.create(
                **request, metadata=intent,
                extra_headers={"Idempotency-Key": intent["edu_qa_request"]})
            state.update(job_id=job.id, create_request=None, created=time.time())
        console.print(f"created job {job.id} ({job.status}); state: {state.path}")
    job = watch(cfg, client, entry["job_id"], state, console)
    if job.status != "succeeded":
        openai_jobs.job_not_done(job, state, console)  # exits 3 (failed) or 4 (still running)
    run.counted(training=job.trained_tokens or 0)
    run.extra(job_id=job.id, status=job.status,
              hyperparameters=job.hyperparameters.model_dump())
    # the job's own clock (created to finished), also right for a job resumed later; a
    # service that does not say when it finished leaves it unknown
    run.timed(tune=job.finished_at - job.created_at if job.finished_at else None)
    state.doing = "POST /chat/completions"
    return keep_best_on_dev(cfg, client, job, plan["job"]["model"], dev, console, run,
                            local=state.service == "local")


def watch(cfg: Config, client, job_id: str, state, console):
    """The job's status and its new events (training loss, checkpoints), with growing waits,
    until it ends or --max-wait passes (the job goes on; a re-run resumes watching)."""
    state.doing = f"watching job {job_id}"
    wait, seen, status = openai_jobs.first_wait(client, cfg.poll_interval), set(), None
    deadline = time.monotonic() + cfg.max_wait
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        events = client.fine_tuning.jobs.list_events(job_id, limit=100)  # newest first
        for event in reversed(openai_jobs.new_events(events, seen)):
            console.print(f"  [{event.level}] {event.message}", markup=False, highlight=False)
        if job.status != status:
            status = job.status
            console.print(f"job {job.id}: {job.status}", markup=False, highlight=False)
        if job.status in openai_jobs.TERMINAL:
            return job
        if time.monotonic() + wait > deadline:
            console.print(f"--max-wait reached; job {job.id} goes on. Re-run the same command "
                          "to resume watching.", markup=False)
            return job
        time.sleep(wait)
        wait = openai_jobs.next_wait(client, wait)


def ask(client, model_id: str, questions, cfg: Config, run, which: str) -> list[str]:
    """The answers of model_id to the questions, temperature 0, many calls at once (the local
    service answers them as one batch); their tokens are counted on the run under which,
    "base" or "tuned" (they are priced apart)."""
    def one(ex):
        reply = client.chat.completions.create(
            model=model_id, messages=edu_qa.chat_messages(ex.question), temperature=0,
            max_completion_tokens=cfg.max_new_tokens)
        if not reply.choices:  # a reply without an answer: said, not a traceback
            raise edu_qa.UserError(f"the service answered POST /chat/completions for "
                                   f"{model_id!r} with no choices")
        used = reply.usage
        return reply.choices[0].message.content or "", \
            [used.prompt_tokens, used.completion_tokens] if used else [0, 0]
    with ThreadPoolExecutor(cfg.concurrency) as pool:
        replies = list(pool.map(one, questions))
    openai_jobs.count_usage(run, which, [u for _, u in replies])
    return [text for text, _ in replies]


def keep_best_on_dev(cfg: Config, client, job, base: str, dev, console, run,
                     local: bool) -> edu_qa.Tuned:
    """Which model to keep, chosen on dev by the answers: the base or a checkpoint (never
    worse than the base), as the other methods choose theirs."""
    import openai
    try:  # one checkpoint per epoch (OpenAI keeps the last three), each judged on dev
        checkpoints = sorted(client.fine_tuning.jobs.checkpoints.list(job.id).data,
                             key=lambda cp: cp.step_number)
    except openai.NotFoundError:  # a service that keeps no checkpoints: the final model
        console.print("this service lists no checkpoints: the final model is the candidate")
        checkpoints = []
    tuned = [(f"step {cp.step_number}", job.fine_tuned_model if cp is checkpoints[-1]
              else cp.fine_tuned_model_checkpoint) for cp in checkpoints]
    candidates = [("base", base)] + (tuned or [("final", job.fine_tuned_model)])
    dev_scores = {name: edu_qa.score(dev, ask(client, model_id, dev, cfg, run,
                                              "base" if name == "base" else "tuned"))
                  for name, model_id in candidates}
    kept, kept_id = openai_jobs.choose_on_dev(candidates, dev_scores, job, console)
    run.extra(kept=kept, dev_scores={name: {"accuracy": sc["accuracy"], "f1": sc["f1"]}
                                     for name, sc in dev_scores.items()})
    # each checkpoint's losses as the service reports them: training, validation (step 4's
    # notice compares them)
    run.extra(checkpoints=[dict(cp.metrics.model_dump(exclude_none=True), step=cp.step_number)
                           for cp in checkpoints])
    return edu_qa.Tuned(kept_id, kept, run.results["wall_time_s"]["tune"],
                        openai_jobs.kept_artifact(cfg.output_dir, job, kept, kept_id, local))


if __name__ == "__main__":
    edu_qa.step(console, 4, "Fine-tuning / optimization")
    client = state = None
    edu_qa.on_interrupt(lambda: openai_jobs.interrupted(state, cfg.output_dir, where.mode))
    if where.mode != "plan":
        client, service, close_service = openai_jobs.open_service(where, cfg.output_dir)
        state = openai_jobs.JobState(Path(cfg.output_dir) / "state.json", service,
                                     openai_jobs.sha256_file(formatted.train_path))
    with openai_jobs.api_errors_as_messages(state, where):
        tuned = tune(cfg, client, formatted, plan, state, dev, console, run)
    edu_qa.notice(console, notices.openai_checkpoints(run.results))


# %% Step 5. Inference and demonstration
def infer(cfg: Config, client, tuned: edu_qa.Tuned, data, console, model: str, local: bool,
          run):
    """The base and the kept model answer the same test questions: same prompt,
    temperature 0. On the local service the base is the embedded model, whose plain-prompt
    answers every method shares (results/baseline.json)."""
    test, start = data.split("test"), time.perf_counter()
    if local:  # the embedded model: its plain-prompt answers are every method's "before"
        before, source = edu_qa.plain_prompt_baseline(
            edu_qa.EMBEDDED_MODEL if model == EMBEDDED_ID else model, data, cfg.max_new_tokens,
            lambda _: ask(client, model, test, cfg, run, "base"), console, cfg.results_dir)
    else:  # a model at OpenAI is not the local one: its own plain-prompt answers
        before = ask(client, model, test, cfg, run, "base")
        source = {"kind": "plain prompt on the service's base model", "this_run": True}
    after = before if tuned.model == model else ask(client, tuned.model, test, cfg, run, "tuned")
    seconds = time.perf_counter() - start
    scores, rows, _ = edu_qa.report_test_answers(
        console, test, before, after, title="plain prompt vs the kept fine-tuned model")
    return edu_qa.Answered(before, after, scores, rows, seconds), source


if __name__ == "__main__":
    edu_qa.step(console, 5, "Inference and demonstration")
    if client is None:  # --dry-run: the request, not sent
        console.print("would send to OpenAI: POST /chat/completions " + json.dumps(
            {"model": cfg.model, "messages": edu_qa.chat_messages(test[0].question),
             "temperature": 0, "max_completion_tokens": cfg.max_new_tokens}), soft_wrap=True)
        console.print(f"(for each of the {len(dev)} dev questions, once for the base model and "
                      "once for each checkpoint; then for each of the "
                      f"{len(test)} test questions, once for the base and once for the kept)")
    else:
        with openai_jobs.api_errors_as_messages(state, where):
            answered, source = infer(cfg, client, tuned, data, console, plan["job"]["model"],
                                     local, run)
        close_service()
        run.answered(answered, source, per_question_answers=2)
        openai_jobs.record_kept_model(run, cfg, tuned, plan, local)
    edu_qa.notice(console, notices.style_or_facts(run.results))


# %% Step 6. Comparison
def compare(run, console) -> None:
    """results/openai_finetune.json, then the scoreboard of every method's results."""
    run.save_and_compare(console)


if __name__ == "__main__":
    edu_qa.step(console, 6, "Comparison")
    run.set(dry_run=tuned is None, prompt_template="POST /chat/completions " + json.dumps(
        {"model": run.results.get("tuned_model") or cfg.model,
         "messages": edu_qa.chat_messages("{question}"), "temperature": 0}))
    compare(run, console)
