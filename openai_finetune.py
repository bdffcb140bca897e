"""OpenAI-style fine-tuning: teach a model to answer educational questions by training its
weights on a fine-tuning SERVICE: upload a file, start a job, watch it, call the ft: model.

    python openai_finetune.py                 # free: the whole workflow on a local service
    python openai_finetune.py --dry-run       # plan only: checks, tokens, cost, the requests
    python openai_finetune.py --train-size 20 # fewer examples: more epochs, same rule
    OPENAI_API_KEY=sk-... python openai_finetune.py --execute --max-cost 1.00   # OpenAI, pays
    python openai_finetune.py --execute       # again: resumes watching the same job
    python openai_finetune.py --execute --cancel     # cancels that job
    python openai_finetune.py --execute --base-url http://HOST:8000/v1   # another service

What changes: the model's WEIGHTS, on the service's machines. You upload chat-format examples,
a job trains a private copy of the base model, and you get back a model id (ft:...) to call.

Where it runs. OpenAI is closing self-serve fine-tuning (OpenAI's API deprecations page, notice
of 2026-05-07): organizations that never fine-tuned cannot create jobs since 2026-05-07, those
without inference on a fine-tuned model in the last 60 days cannot since 2026-07-02, and nobody
can from 2027-01-06; fine-tuned models keep serving until their base model is shut down (the
same page gives each model's date). So by default this script starts a local OpenAI-compatible
fine-tuning service (finetune_service.py) on 127.0.0.1 and runs the same SDK calls against it:
it trains SmolLM2-135M-Instruct with LoRA on this CPU, for real, for free. Beside it the script
prints what OpenAI would be sent and what it would cost.

The one rule: nothing costs money until you add --execute. A started job is remembered in a
state file keyed by the service and the training file's sha256, and its creation is recorded
before it is sent, so a re-run (after Ctrl-C, a crash or a lost reply) never uploads, starts or
pays twice.

As a notebook (jupytext --to notebook openai_finetune.py), each cell below is one step; edit
NOTEBOOK_ARGS to change the settings there.

Exit status: 0 done; 2 a problem to fix (the data, a missing key, a refusal by the service,
quoted); 3 the job failed or was cancelled (--new-job starts another); 4 --max-wait reached,
the job goes on (re-run to resume watching); 130 interrupted (Ctrl-C; re-run to resume).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa
from edu_qa import chat_format, openai_jobs
from edu_qa.openai_jobs import MODELS, PRICES_CHECKED

METHOD = "openai_finetune"
TRAINING_FILE = edu_qa.HERE / "openai_edu_qa_training.jsonl"  # committed; made from the dataset
LOCAL_MODEL = "smollm2-135m-instruct"  # what the local service fine-tunes (the embedded model)
NOTEBOOK_ARGS: list[str] = []  # in a notebook, the settings: e.g. ["--dry-run"]


@dataclass(frozen=True)
class Config:
    # shared by all three scripts
    data: str = field(default=str(edu_qa.DATA_FILE), metadata={"help": "QA file (JSONL)"})
    model: str = field(default="gpt-4o-mini-2024-07-18", metadata={
        "help": "OpenAI base model to fine-tune with --execute (a fine-tunable snapshot); the "
                "plan and cost estimate are for it"})
    seed: int = field(default=0, metadata={"help": "sent to the job, so a re-run trains alike"})
    output_dir: str = field(default="outputs/openai_finetune", metadata={
        "help": "validation file, converted files for --data, the job state file, and the "
                "local service's files, jobs and models"})
    results_dir: str = field(default=str(edu_qa.RESULTS_DIR), metadata={
        "help": "results/<method>.json for the scoreboard"})
    execute: bool = field(default=False, metadata={
        "help": "upload to OpenAI (or --base-url), train and call the API: this costs money"})
    train_size: int | None = field(default=None, metadata={
        "help": "learn from N training examples, a sample drawn with --seed, "
                "subjects in proportion (OpenAI needs >= 10)"})
    question: str | None = field(default=None, metadata={
        "help": "step 6 follows this test question (number or words) through "
                "every method; default: the first"})
    # where the job runs
    dry_run: bool = field(default=False, metadata={
        "help": "plan only: checks, token counts, cost, the exact requests; no service"})
    local_model: str = field(default=LOCAL_MODEL, metadata={
        "help": "base model the local service fine-tunes (without --execute)"})
    base_url: str | None = field(default=None, metadata={
        "help": "with --execute: an OpenAI-compatible fine-tuning service; "
                "default $OPENAI_BASE_URL or OpenAI"})
    new_job: bool = field(default=False, metadata={
        "help": "start a new job although one is recorded for this training file (after a "
                "failed or cancelled one)"})
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
        "help": "with --execute: refuse to start a job whose estimated cost (USD) is above "
                "this"})
    max_wait: float = field(default=3600, metadata={
        "help": "seconds to watch the job; it goes on after, re-run to resume watching"})
    poll_interval: float | None = field(default=None, metadata={
        "help": "first wait between status checks (s); default 1 on the local "
                "service, else 10 growing 1.5x up to 60"})
    cancel: bool = field(default=False, metadata={
        "help": "cancel the job recorded for this training file on this service"})
    max_new_tokens: int = field(default=48, metadata={
        "help": "answer cap, the same as the other scripts' (references are at most 40 "
                "words)"})
    concurrency: int = field(default=24, metadata={
        "help": "test questions asked at once in step 5 (the local service batches them)"})


# %% Step 1. Environment & data preparation
def prepare_data(cfg: Config, console):
    """Where the job runs, the API key only when --execute asks for it (never printed), and
    the shared dataset."""
    if cfg.execute and cfg.dry_run:
        raise edu_qa.UserError("--execute and --dry-run contradict each other: choose one")
    if cfg.cancel and cfg.dry_run:
        raise edu_qa.UserError("--cancel needs a service to send the cancel to: drop --dry-run")
    mode = "openai" if cfg.execute else "plan" if cfg.dry_run else "local"
    base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or openai_jobs.OPENAI_URL
    where = {"openai": f"{base_url} (--execute: this costs money)",
             "plan": "none (--dry-run: plan only, nothing is sent)",
             "local": f"local fine-tuning service on 127.0.0.1, base model {cfg.local_model} "
                      "(free; add --execute for OpenAI)"}[mode]
    console.print(f"service: {where}", markup=False, highlight=False)
    console.print(f"OpenAI plan: base model {cfg.model}; self-serve fine-tuning closes to new "
                  "jobs for everyone on 2027-01-06 (OpenAI's API deprecations page)",
                  markup=False, highlight=False)
    versions = edu_qa.library_versions("openai", "tiktoken")
    edu_qa.print_versions(console, versions)
    key = None
    if mode == "openai":
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise edu_qa.UserError("--execute needs an API key: set OPENAI_API_KEY "
                                   "(nothing was uploaded)")
        console.print(f"API key: OPENAI_API_KEY={edu_qa.redact(key)}", markup=False)
    data = edu_qa.load_qa(cfg.data, seed=cfg.seed)
    train = edu_qa.training_subset(data.split("train"), cfg.train_size, cfg.seed)
    dev, test = data.split("dev"), data.split("test")
    edu_qa.print_data_summary(console, data, train)
    return data, train, dev, test, {"versions": versions, "mode": mode,
                                    "base_url": base_url if mode == "openai" else mode}


if __name__ == "__main__":
    cfg, console = edu_qa.begin(Config, __doc__, NOTEBOOK_ARGS)
    start = time.perf_counter()
    edu_qa.step(console, 1, "Environment & data preparation")
    data, train, dev, test, env = prepare_data(cfg, console)


# %% Step 2. Data format preparation
def convert_format(cfg: Config, data, train, dev, console):
    """QA pairs -> chat-format JSONL, OpenAI's own format checks and token counts, all before
    a file is written; then the files exactly as they will be uploaded."""
    shipped = data.path.resolve() == edu_qa.DATA_FILE.resolve() and cfg.train_size is None
    examples = [to_chat(ex) for ex in train]
    errors, warnings = chat_format.check_format(examples)
    console.print(f"format errors: {dict(errors) or 'none'} | warnings: "
                  f"{dict(warnings) or 'none'}", markup=False)
    if errors:
        raise edu_qa.UserError(f"{data.path}: format errors {dict(errors)}; nothing written")
    if len(examples) < chat_format.MIN_EXAMPLES:
        hint = "raise --train-size" if cfg.train_size else "add training examples"
        raise edu_qa.UserError(f"{data.path}: {len(examples)} training examples (lines "
                               f"{', '.join(str(ex.line) for ex in train) or 'none'}); OpenAI "
                               f"needs at least {chat_format.MIN_EXAMPLES} ({hint})")
    stats = openai_jobs.token_stats(examples, cfg.model)
    context = MODELS.get(cfg.model, (None, None, None, 65_536))[3]
    over = [ex.line for ex, n in zip(train, stats["lengths"]) if n > context]
    if over:
        raise edu_qa.UserError(f"{data.path}: lines {', '.join(map(str, over))} are longer "
                               f"than {cfg.model}'s {context:,}-token training context")
    out = Path(cfg.output_dir)
    # The committed example file is only ever regenerated from the shipped dataset; anyone
    # else's data (or a subset) goes to the output folder.
    train_path = TRAINING_FILE if shipped else out / "training.jsonl"
    valid_path = out / "validation.jsonl"
    openai_jobs.write_jsonl(train_path, examples)
    openai_jobs.write_jsonl(valid_path, [to_chat(ex) for ex in dev])
    edu_qa.say(console, "One training line, exactly as uploaded:")
    console.print(train_path.read_text(encoding="utf-8").split("\n")[0], markup=False,
                  highlight=False, soft_wrap=True)
    d = stats["distribution"]
    console.print(f"tokens per example: min {d['min']}, p10 {d['p10']}, median {d['median']}, "
                  f"p90 {d['p90']}, max {d['max']}, mean {d['mean']} | assistant tokens: "
                  f"{stats['assistant_tokens']} | over the {context:,}-token context: 0")
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
    context = MODELS.get(cfg.model, (None, None, None, 65_536))[3]
    billable = sum(min(context, length) for length in converted["stats"]["lengths"])
    price = cfg.price_training if cfg.price_training is not None else \
        MODELS.get(cfg.model, (None,))[0]
    if price is None:
        raise edu_qa.UserError(f"no training price for {cfg.model} in the table (checked "
                               f"{PRICES_CHECKED}); give --price-training (USD per 1M tokens)")
    training_cost = billable * epochs * price / 1e6
    hyper = {"n_epochs": epochs}
    hyper["batch_size"] = cfg.batch_size if cfg.batch_size else "auto"
    hyper["learning_rate_multiplier"] = cfg.learning_rate_multiplier or "auto"
    job = {"model": cfg.model, "training_file": "<id of the uploaded training file>",
           "validation_file": "<id of the uploaded validation file>",
           "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
           "suffix": cfg.suffix, "seed": cfg.seed}
    inference_cost = estimate_inference_cost(cfg, converted, n_test, n_dev, epochs)
    console.print(f"epochs: {epochs} ({'given' if cfg.epochs else 'OpenAI rule'}: {n} examples) "
                  f"| billable tokens: {billable:,} x {epochs} epochs = {billable * epochs:,}")
    console.print(f"OpenAI would charge: training ${training_cost:.4f} at ${price}/1M tokens + "
                  f"test inference ${inference_cost:.4f} (prices checked {PRICES_CHECKED}) | "
                  f"--max-cost ${cfg.max_cost:.2f}", markup=False)
    if mode == "local":
        console.print(f"this run: the local service, $0; the same request with model "
                      f"{cfg.local_model}", markup=False)
    if not cfg.epochs:
        edu_qa.notice(console, f"OpenAI's rule aims at 3 epochs but at least 100 example-passes, "
                      f"so {n} examples get {epochs}: fewer examples, more passes over each")
    over = training_cost + inference_cost > cfg.max_cost
    if over and mode == "openai" and not cfg.cancel:
        raise edu_qa.UserError(f"estimated cost ${training_cost + inference_cost:.4f} is above "
                               f"--max-cost ${cfg.max_cost:.2f}; nothing was sent")
    return {"epochs": epochs, "billable_tokens": billable, "trained_tokens": billable * epochs,
            "price": price, "training_cost": training_cost, "inference_cost": inference_cost,
            "job": job}


def estimate_inference_cost(cfg: Config, converted: dict, n_test: int, n_dev: int = 0,
                            epochs: int = 1) -> float:
    """Step 5 asks the base and the kept model each test question once, and first the base
    and each checkpoint (OpenAI keeps the last 3 epochs') each dev question once."""
    prompt = converted["stats"]["distribution"]["mean"]
    base = openai_jobs.usage_cost(cfg.model, "base", prompt, cfg.max_new_tokens)
    tuned = openai_jobs.usage_cost(cfg.model, "tuned", prompt, cfg.max_new_tokens)
    return n_test * (base + tuned) + n_dev * (base + min(3, epochs) * tuned)


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
    entry = state.entry
    if cfg.cancel:
        if "job_id" not in entry:
            raise edu_qa.UserError(f"{state.path}: no job recorded for this training file on "
                                   f"{state.service} to cancel")
        state.doing = f"POST /fine_tuning/jobs/{entry['job_id']}/cancel"
        job = client.fine_tuning.jobs.cancel(entry["job_id"])
        console.print(f"cancel requested: job {job.id} is {job.status}", markup=False)
        return {"job": job, "seconds": 0.0}
    if "job_id" in entry and cfg.new_job:
        state.update(previous_jobs=entry.get("previous_jobs", []) + [entry["job_id"]],
                     job_id=None)
        console.print(f"--new-job: job {entry['previous_jobs'][-1]} stays in {state.path} "
                      "as a previous job; starting another", markup=False)
    if "job_id" in entry:
        console.print(f"resuming job {entry['job_id']} (from {state.path}; nothing uploaded)",
                      markup=False)
    else:
        for kind, path in (("training_file_id", converted["train_path"]),
                           ("validation_file_id", converted["valid_path"])):
            if kind not in entry:
                state.doing = f"POST /files ({path.name})"
                with open(path, "rb") as f:
                    uploaded = client.files.create(file=f, purpose="fine-tune")
                state.update(**{kind: uploaded.id})  # never upload the same file twice
                console.print(f"uploaded {path.name}: {uploaded.id}", markup=False)
        request = dict(plan["job"], training_file=entry["training_file_id"],
                       validation_file=entry["validation_file_id"])
        job = openai_jobs.create_job_once(client, request, state, console)
        console.print(f"created job {job.id} ({job.status}); state: {state.path}", markup=False)
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
            dict(request, model=cfg.model)), markup=False, highlight=False, soft_wrap=True)
        console.print(f"(for each of the {len(dev)} dev questions, once for the base model and "
                      "once for each checkpoint; then for each of the "
                      f"{len(test)} test questions, once for the base and once for the kept)")
        return None
    usage, start = {"base": [0, 0], "tuned": [0, 0]}, time.perf_counter()

    def answers(model_id, examples, pool):
        def ask(ex):
            reply = client.chat.completions.create(**dict(
                request, model=model_id, messages=edu_qa.chat_messages(ex.question)))
            return reply.choices[0].message.content or "", reply.usage
        replies = list(pool.map(ask, examples))
        bucket = usage["base" if model_id == model else "tuned"]
        for _, used in replies:
            bucket[0] += used.prompt_tokens if used else 0
            bucket[1] += used.completion_tokens if used else 0
        return [text for text, _ in replies]

    with ThreadPoolExecutor(cfg.concurrency) as pool:
        tuned = [(f"step {cp.step_number}", job.fine_tuned_model if cp is checkpoints[-1]
                  else cp.fine_tuned_model_checkpoint) for cp in checkpoints]
        candidates = [("base", model)] + (tuned or [("final", job.fine_tuned_model)])
        dev_scores = {name: edu_qa.score(dev, answers(model_id, dev, pool))
                      for name, model_id in candidates} if dev else {}
        kept, kept_id = openai_jobs.choose_on_dev(candidates, dev_scores, job, console)
        if local:
            import finetune_service
            before, source = edu_qa.plain_prompt_baseline(
                finetune_service.BASE_MODELS.get(model, model), data, cfg.max_new_tokens,
                lambda chats: answers(model, test, pool), console, cfg.results_dir)
        else:  # a model at OpenAI is not the local one: its own plain-prompt answers
            before = answers(model, test, pool)
            source = {"kind": "plain prompt on the service's base model", "this_run": True}
        after = before if kept_id == model else answers(kept_id, test, pool)
    seconds = time.perf_counter() - start
    scores, rows, change = edu_qa.report_test_answers(
        console, test, before, after, title="plain prompt vs the kept fine-tuned model, "
                                            "test questions")
    return {"scores": scores, "rows": rows, "usage": usage, "kept": kept, "kept_model": kept_id,
            "source": source, "change": change,
            "dev": {name: {"accuracy": sc["accuracy"], "f1": sc["f1"]}
                    for name, sc in dev_scores.items()},
            "tokens": sum(map(sum, usage.values())), "per_question": seconds / (2 * len(test))}


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
    results = edu_qa.new_results(METHOD, cfg, data, model=cfg.local_model if local
                                 else cfg.model, dry_run=job is None)
    results["dataset"].update(train_used=len(train), train_by_subject=edu_qa.by_subject(train))
    results["wall_time_s"].update(prepare=round(prepared, 2),
                                  total=round(time.perf_counter() - start, 2))
    results["tokens"]["training"] = plan["trained_tokens"]
    results["cost_usd"] = {"amount": round(plan["training_cost"] + plan["inference_cost"], 4),
                           "kind": "estimated"}
    results["versions"] = env["versions"]
    results["extra"] = {"service": env["base_url"], "epochs": plan["epochs"],
                        "job_request": plan["job"],
                        "token_distribution": converted["stats"]["distribution"],
                        "encoding": converted["stats"]["encoding"],
                        "openai_estimate_usd": round(plan["training_cost"]
                                                     + plan["inference_cost"], 4),
                        "price_per_1m_training_tokens": plan["price"],
                        "prices_checked": PRICES_CHECKED}
    if job is not None:
        trained = job.trained_tokens or 0
        results["extra"].update(job_id=job.id, status=job.status,
                                hyperparameters=job.hyperparameters.model_dump())
        # the job's own clock (created to finished), also right for a job resumed later
        results["wall_time_s"]["tune"] = job.finished_at - job.created_at
        results["tuned_model"] = inference["kept_model"]
        results["artifact"] = {"path": inference["kept_model"], "bytes": 0}
        results["extra"].update(kept=inference["kept"], dev_scores=inference["dev"])
        results["tokens"]["training"] = trained
        results.update(before=inference["scores"]["before"],
                       after=inference["scores"]["after"], predictions=inference["rows"],
                       before_source=inference["source"])
        results["tokens"]["inference"] = inference["tokens"]
        results["wall_time_s"]["infer_per_question"] = round(inference["per_question"], 3)
        if local:
            results["title"] = "OpenAI-style fine-tuning, on the local service"
            results["model"] = f"{cfg.local_model} (local OpenAI-compatible service)"
            results["cost_usd"] = {"amount": 0.0, "kind": "local"}
            job_dir = Path(cfg.output_dir) / "service" / "models" / job.id
            adapter = job_dir / "final" if inference["kept_model"] == job.fine_tuned_model \
                else job_dir / "checkpoints" / inference["kept"].replace(" ", "-")
            results["artifact"] = {"path": str(adapter), "bytes": edu_qa.disk_size(adapter)} \
                if inference["kept"] != "base" else None
        else:
            usage = inference["usage"]
            amount = trained * plan["price"] / 1e6 + \
                openai_jobs.usage_cost(cfg.model, "base", *usage["base"]) + \
                openai_jobs.usage_cost(cfg.model, "tuned", *usage["tuned"])
            results["cost_usd"] = {"amount": round(amount, 4), "kind": "actual"}
            results["data_left_machine"] = True
    results["prompt_template"] = "POST /chat/completions " + json.dumps(
        {"model": results.get("tuned_model") or cfg.model,
         "messages": edu_qa.chat_messages("{question}"), "temperature": 0})
    compare(cfg, data, results, console)
