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

Exit status: 0 done; 2 a problem to fix (the data, a missing key, a refusal by the service,
quoted); 3 the job failed or was cancelled (--new-job starts another); 4 --max-wait reached,
the job goes on (re-run to resume watching); 130 interrupted (Ctrl-C; re-run to resume).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from edu_qa import chat_format
import edu_qa

METHOD = "openai_finetune"
TRAINING_FILE = edu_qa.HERE / "openai_edu_qa_training.jsonl"  # committed; made from the dataset
OPENAI_URL = "https://api.openai.com/v1"
LOCAL_MODEL = "smollm2-135m-instruct"  # what the local service fine-tunes (the embedded model)
EXIT_JOB_FAILED, EXIT_STILL_RUNNING, EXIT_INTERRUPTED = 3, 4, 130
# Per model: (USD per 1M training tokens, USD per 1M input / output tokens of the fine-tuned
# model, USD per 1M input / output tokens of the base model, training context per example).
# From copies of OpenAI's pricing pages (2025-08 to 2026-05); prices change: override with
# --price-training. gpt-4o-mini is the default: the cheapest fine-tunable chat model with good
# quality when checked, and the one OpenAI's own fine-tuning guide uses.
PRICES_CHECKED = "2026-05"
MODELS = {
    "gpt-4o-mini-2024-07-18": (3.00, (0.30, 1.20), (0.15, 0.60), 65_536),
    "gpt-4.1-nano-2025-04-14": (1.50, (0.20, 0.80), (0.10, 0.40), 65_536),
    "gpt-4.1-mini-2025-04-14": (5.00, (0.80, 3.20), (0.40, 1.60), 65_536),
    "gpt-4.1-2025-04-14": (25.00, (3.00, 12.00), (2.00, 8.00), 65_536),
    "gpt-4o-2024-08-06": (25.00, (3.75, 15.00), (2.50, 10.00), 65_536),
}
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Config:
    # shared by all three scripts
    data: str = field(default=str(edu_qa.DATA_FILE), metadata={
        "help": "QA file (JSONL: question, answer, key, subject, split)"})
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
    train_size: int = field(default=None, metadata={
        "type": int, "help": "learn from N training examples, a sample drawn with --seed, "
                             "subjects in proportion (OpenAI needs >= 10)"})
    question: str = field(default=None, metadata={
        "type": str, "help": "step 6 follows this test question (number or words) through "
                             "every method; default: the first"})
    # where the job runs
    dry_run: bool = field(default=False, metadata={
        "help": "plan only: checks, token counts, cost, the exact requests; no service"})
    local_model: str = field(default=LOCAL_MODEL, metadata={
        "help": "base model the local service fine-tunes (without --execute)"})
    base_url: str = field(default=None, metadata={
        "type": str, "help": "with --execute: an OpenAI-compatible fine-tuning service; "
                             "default $OPENAI_BASE_URL or OpenAI"})
    new_job: bool = field(default=False, metadata={
        "help": "start a new job although one is recorded for this training file (after a "
                "failed or cancelled one)"})
    # the job
    epochs: int = field(default=None, metadata={
        "type": int, "help": "passes over the data; default: OpenAI's rule (3, clamped)"})
    batch_size: int = field(default=None, metadata={
        "type": int, "help": "default: chosen by the service for the dataset size"})
    learning_rate_multiplier: float = field(default=None, metadata={
        "type": float, "help": "default: chosen by the service"})
    suffix: str = field(default="edu-qa", metadata={
        "help": "appears in the fine-tuned model's name (ft:...:edu-qa:...)"})
    price_training: float = field(default=None, metadata={
        "type": float, "help": "USD per 1M training tokens, overriding the dated table"})
    max_cost: float = field(default=5.0, metadata={
        "help": "with --execute: refuse to start a job whose estimated cost (USD) is above "
                "this"})
    max_wait: float = field(default=3600, metadata={
        "help": "seconds to watch the job; it goes on after, re-run to resume watching"})
    poll_interval: float = field(default=None, metadata={
        "type": float, "help": "first wait between status checks (s); default 1 on the local "
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
    base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
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
    stats = token_stats(examples, cfg.model)
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
    write_jsonl(train_path, examples)
    write_jsonl(valid_path, [to_chat(ex) for ex in dev])
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


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, whole or not at all (written aside, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                   encoding="utf-8")
    tmp.replace(path)


def encoding_for(model: str):
    import tiktoken
    edu_qa.use_offline_tiktoken()
    try:
        return tiktoken.encoding_for_model(model)
    except KeyError:  # a snapshot tiktoken does not know yet: current chat models use o200k
        return tiktoken.get_encoding("o200k_base")


def num_tokens(enc, messages: list[dict]) -> int:
    """Tokens of a chat as the cookbook counts them: 3 per message, 1 per name, 3 to prime
    the reply."""
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            total += len(enc.encode(value)) if isinstance(value, str) else 0
            total += 1 if key == "name" else 0
    return total


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile: the smallest value with at least q% of values at or below."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n*q/100), at least 1
    return ordered[int(rank) - 1]


def token_stats(examples: list[dict], model: str) -> dict:
    enc = encoding_for(model)
    lengths = [num_tokens(enc, ex["messages"]) for ex in examples]
    assistant = sum(len(enc.encode(m["content"])) for ex in examples for m in ex["messages"]
                    if m["role"] == "assistant")
    return {"encoding": enc.name, "lengths": lengths, "assistant_tokens": assistant,
            "distribution": {"min": min(lengths), "p10": percentile(lengths, 10),
                             "median": percentile(lengths, 50), "p90": percentile(lengths, 90),
                             "max": max(lengths),
                             "mean": round(sum(lengths) / len(lengths), 1)}}


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
    base = usage_cost(cfg.model, "base", prompt, cfg.max_new_tokens)
    tuned = usage_cost(cfg.model, "tuned", prompt, cfg.max_new_tokens)
    return n_test * (base + tuned) + n_dev * (base + min(3, epochs) * tuned)


def usage_cost(model: str, which: str, prompt_tokens: float, completion_tokens: float) -> float:
    """USD for tokens of the base or the fine-tuned model, at the dated prices."""
    _, tuned, base, _ = MODELS.get(model, (None, (0, 0), (0, 0), None))
    rates = tuned if which == "tuned" else base
    return (prompt_tokens * rates[0] + completion_tokens * rates[1]) / 1e6


# %% Step 4. Fine-tuning / optimization
def tune(cfg: Config, client, converted: dict, plan: dict, state: "JobState", console) -> dict:
    """Upload, create the job, watch it. A job already recorded for this training file on this
    service is resumed, never started again; a create that may have reached the service is
    looked up (by its metadata) before it is sent again."""
    print_requests(converted, plan, console)
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
        job = create_job_once(client, request, state, console)
        console.print(f"created job {job.id} ({job.status}); state: {state.path}", markup=False)
    state.doing = f"watching job {entry['job_id']}"
    start = time.perf_counter()
    job = watch(cfg, client, entry["job_id"], console)
    return {"job": job, "seconds": time.perf_counter() - start}


def create_job_once(client, request: dict, state: "JobState", console):
    """POST /fine_tuning/jobs exactly once. The intent (a request id, also sent as metadata and
    as an Idempotency-Key header) is saved BEFORE the call; if a run stops after sending it, the
    next run finds the job by that metadata instead of creating (and paying for) a second."""
    intent = state.entry.get("create_request")
    if intent:
        state.doing = "GET /fine_tuning/jobs (looking for the job a stopped run created)"
        found = [j for j in client.fine_tuning.jobs.list(metadata={"edu_qa_request": intent})]
        if found:
            console.print(f"found job {found[0].id}, created by a run that stopped before it "
                          "saw the reply: nothing created again", markup=False)
            state.update(job_id=found[0].id, create_request=None)
            return found[0]
    else:
        intent = uuid.uuid4().hex
        state.update(create_request=intent)
    state.doing = "POST /fine_tuning/jobs"
    job = client.fine_tuning.jobs.create(
        **request, metadata={"edu_qa_request": intent, "training_sha256": state.sha},
        extra_headers={"Idempotency-Key": intent})
    state.update(job_id=job.id, create_request=None, created=time.time())
    return job


def watch(cfg: Config, client, job_id: str, console):
    """Poll with growing waits until the job ends or --max-wait passes; print new events."""
    local = client.base_url.host in ("127.0.0.1", "localhost")
    wait = cfg.poll_interval if cfg.poll_interval is not None else 1.0 if local else 10.0
    seen, status, deadline = set(), None, time.monotonic() + cfg.max_wait
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        for event in reversed(new_events(client, job_id, seen)):
            seen.add(event.id)
            console.print(f"  [{event.level}] {event.message}", markup=False, highlight=False)
        if job.status != status:
            status = job.status
            console.print(f"job {job.id}: {job.status}", markup=False, highlight=False)
        if job.status in TERMINAL:
            return job
        if time.monotonic() + wait > deadline:
            console.print(f"--max-wait reached; job {job.id} goes on. Re-run the same command "
                          "to resume watching.", markup=False)
            return job
        time.sleep(wait)
        wait = min(2.0 if local else 60.0, wait * 1.5)


def new_events(client, job_id: str, seen: set, max_pages: int = 10) -> list:
    """The events not seen yet, newest first (as the API lists them): pages of 100 until a
    seen one, at most max_pages (a service that always says has_more cannot loop us)."""
    page, new = client.fine_tuning.jobs.list_events(job_id, limit=100), []
    for _ in range(max_pages):
        for event in page.data:
            if event.id in seen:
                return new
            new.append(event)
        if not page.has_next_page():
            break
        page = page.get_next_page()
    return new


def print_requests(converted: dict, plan: dict, console) -> None:
    """What OpenAI would be sent (the local run sends the same, with its own model)."""
    for path in (converted["train_path"], converted["valid_path"]):
        console.print("would send to OpenAI: POST /files " + json.dumps(
            {"purpose": "fine-tune", "file": path.name, "bytes": path.stat().st_size,
             "sha256": sha256_file(path)}), markup=False, highlight=False, soft_wrap=True)
    console.print("would send to OpenAI: POST /fine_tuning/jobs " + json.dumps(plan["job"]),
                  markup=False, highlight=False, soft_wrap=True)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class JobState:
    """outputs/.../state.json: per service and training file (sha256), the uploaded file ids,
    the job id, and a job creation that was sent but not yet answered. Ids only, never a key.
    Saved whole after every change, so an interrupted run loses nothing."""

    def __init__(self, path: Path, service: str, sha: str):
        self.path, self.service, self.sha, self.doing = Path(path), service, sha, "starting"
        self.all = {"version": 2, "services": {}}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(loaded, dict):
                    raise ValueError("not a JSON object")
                if loaded.get("version") != 2:  # version 1: {sha: entry}, all at OpenAI
                    loaded = {"version": 2, "services": {OPENAI_URL: loaded}}
                for entries in loaded["services"].values():
                    for entry in entries.values():
                        for name, value in entry.items():
                            if name.endswith("_id") and not isinstance(value, str):
                                raise ValueError(f"{name} is {value!r}")
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                raise edu_qa.UserError(
                    f"{self.path}: not a state file this script can read ({err}). It records "
                    "the jobs you started; move it aside to start afresh (a job it named "
                    "still exists on its service)") from None
            self.all = loaded
        self.entry = self.all["services"].setdefault(service, {}).setdefault(sha, {})

    def update(self, **fields) -> None:
        for name, value in fields.items():
            if value is None:
                self.entry.pop(name, None)
                continue
            if name.endswith("_id") and (not isinstance(value, str) or not value):
                raise edu_qa.UserError(f"the service answered {self.doing} with the id "
                                       f"{value!r}; nothing was saved")
            self.entry[name] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.all, indent=2) + "\n")
        tmp.replace(self.path)


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
        kept, kept_id = choose_on_dev(candidates, dev_scores, job, console)
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


def choose_on_dev(candidates, dev_scores: dict, job, console) -> tuple[str, str]:
    """(name, model id) of the best on dev by accuracy, then F1; the base wins ties."""
    if not dev_scores:
        return "final", job.fine_tuned_model
    for name, model_id in candidates:
        console.print(f"dev: {name:>9} accuracy {dev_scores[name]['accuracy']:.2f} | F1 "
                      f"{dev_scores[name]['f1']:.2f} | {model_id}")
    best = max(candidates[1:], key=lambda c: (dev_scores[c[0]]["accuracy"],
                                              dev_scores[c[0]]["f1"]), default=candidates[0])

    def rank(name):
        return dev_scores[name]["accuracy"], dev_scores[name]["f1"]
    if rank(best[0]) <= rank("base"):
        console.print("kept: the BASE model. No checkpoint answered the dev questions better, so "
                      "the fine-tuning did not help on this data: use the base model.")
        return "base", candidates[0][1]
    console.print(f"kept: the checkpoint at {best[0]}: use {best[1]}")
    return best[0], best[1]


# %% Step 6. Comparison
def compare(cfg: Config, data, results: dict, console) -> None:
    """Write this method's results, then compare every method that has results."""
    edu_qa.save_and_compare(console, data, results, cfg.results_dir, cfg.question)


def make_client(cfg: Config, base_url: str, api_key: str, **options):
    """The official SDK. It retries 429 and 5xx itself with backoff (max_retries); strict
    response validation turns a reply that is not what OpenAI sends (HTML, {}, a null id) into
    an error instead of a broken object."""
    from openai import OpenAI
    return OpenAI(**{"base_url": base_url, "api_key": api_key, "max_retries": 5,
                     "timeout": 120, "_strict_response_validation": True, **options})


def open_service(cfg: Config, env: dict, stack: ExitStack):
    """(client, service name for the state file) for this run's mode: the local service,
    started in this process on a free port of 127.0.0.1, or OpenAI / --base-url."""
    if env["mode"] == "openai":
        return make_client(cfg, env["base_url"], os.environ["OPENAI_API_KEY"]), env["base_url"]
    import finetune_service
    url = stack.enter_context(finetune_service.serve(
        "127.0.0.1", 0, data_dir=Path(cfg.output_dir) / "service"))
    return make_client(cfg, url, "local-service-needs-no-key"), "local"


def main(argv=None):
    cfg = edu_qa.parse_config(Config, __doc__, argv)
    console = edu_qa.console()
    edu_qa.print_config(console, cfg)
    start = time.perf_counter()

    edu_qa.step(console, 1, "Environment & data preparation")
    data, train, dev, test, env = prepare_data(cfg, console)

    edu_qa.step(console, 2, "Data format preparation")
    converted = convert_format(cfg, data, train, dev, console)

    edu_qa.step(console, 3, "Model configuration")
    plan = configure_model(cfg, converted, len(test), console, env["mode"], len(dev))
    prepared = time.perf_counter() - start
    local = env["mode"] == "local"
    if local:
        plan_local = dict(plan, job=dict(plan["job"], model=cfg.local_model))

    with ExitStack() as stack:
        state = None
        try:
            edu_qa.step(console, 4, "Fine-tuning / optimization")
            client = None
            if env["mode"] != "plan":
                client, service = open_service(cfg, env, stack)
                state = JobState(Path(cfg.output_dir) / "state.json", service,
                                 sha256_file(converted["train_path"]))
            tuned = tune(cfg, client, converted, plan_local if local else plan, state, console)
            job = tuned["job"]
            if cfg.cancel:
                return
            if job is not None and job.status != "succeeded":
                return job_not_done(job, state, console)

            edu_qa.step(console, 5, "Inference and demonstration")
            if state:
                state.doing = "POST /chat/completions"
            checkpoints = list_checkpoints(client, job.id, console) if job else []
            inference = infer(cfg, client, job, data, console,
                              cfg.local_model if local else cfg.model, dev, checkpoints, local)
        except KeyboardInterrupt:
            where = f" during {state.doing}" if state else ""
            sys.stdout.flush()
            print(edu_qa.visible(f"\nInterrupted{where}. Everything so far is saved in "
                  f"{state.path if state else cfg.output_dir}; re-run the same command to "
                  "continue: nothing is uploaded or created twice."
                  + (" A job at OpenAI goes on, and is billed as it trains; add --cancel to "
                     "cancel it." if env["mode"] == "openai" else "")), file=sys.stderr)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except _api_errors() as err:
            raise edu_qa.UserError(refusal(err, state, env)) from None

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
                usage_cost(cfg.model, "base", *usage["base"]) + \
                usage_cost(cfg.model, "tuned", *usage["tuned"])
            results["cost_usd"] = {"amount": round(amount, 4), "kind": "actual"}
            results["data_left_machine"] = True
    results["prompt_template"] = "POST /chat/completions " + json.dumps(
        {"model": results.get("tuned_model") or cfg.model,
         "messages": edu_qa.chat_messages("{question}"), "temperature": 0})
    compare(cfg, data, results, console)


def job_not_done(job, state: JobState, console):
    """A failed or cancelled job, or one still running at --max-wait: say what happened and
    what to do, and exit with its own status (results files are left as they were)."""
    if job.status in ("failed", "cancelled"):
        error = job.error
        reason = f": {error.code}: {error.message}" if error else ""
        console.print(f"job {job.id} {job.status}{reason}", markup=False, highlight=False)
        console.print(f"To start a new job for this training file, add --new-job (job {job.id} "
                      f"stays recorded in {state.path}).", markup=False)
        raise SystemExit(EXIT_JOB_FAILED)
    console.print(f"job {job.id} is {job.status}: no fine-tuned model yet; results unchanged",
                  markup=False)
    raise SystemExit(EXIT_STILL_RUNNING)


def refusal(err, state, env) -> str:
    """The API error in plain words: which request, what the service said (quoted), what
    was kept."""
    status = getattr(err, "status_code", None)
    said = getattr(err, "message", None) or str(err)
    body = getattr(err, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        said = body["message"]
    what = f"{state.doing} failed" if state else "the request failed"
    text = f"{what}: {type(err).__name__}{f' (HTTP {status})' if status else ''}: {said!r}"
    if status in (401, 403, 404) and env["mode"] == "openai":
        text += (". If fine-tuning is not available to this account: OpenAI closed self-serve "
                 "fine-tuning to organizations that never fine-tuned (2026-05-07) or had no "
                 "fine-tuned inference for 60 days (2026-07-02), and to everyone from "
                 "2027-01-06; run without --execute to use the local service")
    if state:
        text += f". Nothing was lost: {state.path} keeps what was done; re-run to continue"
    return text


def list_checkpoints(client, job_id: str, console) -> list:
    """The job's checkpoints, oldest first (one per epoch; OpenAI keeps the last three)."""
    import openai
    try:
        listed = client.fine_tuning.jobs.checkpoints.list(job_id).data
    except openai.NotFoundError:  # a service that keeps no checkpoints: the final model only
        console.print("this service lists no checkpoints: the final model is the candidate")
        return []
    checkpoints = sorted(listed, key=lambda cp: cp.step_number)
    for cp in checkpoints:
        loss = cp.metrics.valid_loss if cp.metrics else None
        console.print(f"checkpoint {cp.fine_tuned_model_checkpoint} at step {cp.step_number}"
                      + (f" (validation loss {loss:.3f})" if loss is not None else ""))
    return checkpoints


def _api_errors():
    if "openai" not in sys.modules:  # a dry run never imports the SDK
        return ()
    import openai
    return (openai.APIError, json.JSONDecodeError)


if __name__ == "__main__":
    sys.exit(edu_qa.run(main))
