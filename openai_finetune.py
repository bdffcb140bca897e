"""OpenAI fine-tuning: teach a hosted model to answer educational questions by training its
weights in the cloud.

    python openai_finetune.py                       # free: convert, check, count tokens, estimate
    python openai_finetune.py --train-size 20       # fewer examples: more epochs, same rule
    OPENAI_API_KEY=sk-... python openai_finetune.py --execute --max-cost 1.00   # pays
    python openai_finetune.py --execute             # again: resumes watching the same job
    python openai_finetune.py --execute --cancel    # cancels that job

What changes: the model's WEIGHTS, on OpenAI's servers. You upload chat-format examples, a job
trains a private copy of the base model, and you get back a model id (ft:...) to call.

The one rule: nothing costs money until you add --execute. Without it the script does all the
free work for real (conversion, OpenAI's format checks, token counts, cost estimate), prints the
exact requests it would send, and opens no network connection. A started job is remembered in a
state file keyed by the training file's sha256, so a re-run never uploads or pays twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa

METHOD = "openai_finetune"
TRAINING_FILE = edu_qa.HERE / "openai_edu_qa_training.jsonl"  # committed; made from the dataset
# OpenAI's default-epochs rule (fine-tuning guide and the data-prep cookbook): aim for 3 epochs,
# but keep epochs x examples within [100, 25000], and epochs within [1, 25].
TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES = 3, 100, 25_000
MIN_DEFAULT_EPOCHS, MAX_DEFAULT_EPOCHS = 1, 25
MIN_EXAMPLES = 10  # OpenAI rejects a training file with fewer
# Per model: (USD per 1M training tokens, USD per 1M input / output tokens of the fine-tuned
# model, USD per 1M input / output tokens of the base model, training context per example).
# From OpenAI's pricing and fine-tuning pages as last checked 2025-06; prices change: override
# with --price-training. gpt-4o-mini is the default: the cheapest fine-tunable chat model with
# good quality when checked, and the one OpenAI's own fine-tuning guide uses.
PRICES_CHECKED = "2025-06"
MODELS = {
    "gpt-4o-mini-2024-07-18": (3.00, (0.30, 1.20), (0.15, 0.60), 65_536),
    "gpt-4.1-nano-2025-04-14": (1.50, (0.20, 0.80), (0.10, 0.40), 65_536),
    "gpt-4.1-mini-2025-04-14": (5.00, (0.80, 3.20), (0.40, 1.60), 65_536),
    "gpt-4o-2024-08-06": (25.00, (3.75, 15.00), (2.50, 10.00), 65_536),
}
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Config:
    # shared by all three scripts
    data: str = field(default=str(edu_qa.DATA_FILE), metadata={
        "help": "QA file (JSONL: question, answer, key, subject, split)"})
    model: str = field(default="gpt-4o-mini-2024-07-18", metadata={
        "help": "base model to fine-tune (a fine-tunable OpenAI snapshot)"})
    seed: int = field(default=0, metadata={"help": "sent to the job, so a re-run trains alike"})
    output_dir: str = field(default="outputs/openai_finetune", metadata={
        "help": "validation file, converted files for --data, and the job state file"})
    results_dir: str = field(default=str(edu_qa.RESULTS_DIR), metadata={
        "help": "results/<method>.json for the scoreboard"})
    execute: bool = field(default=False, metadata={
        "help": "upload, train and call the API: this costs money"})
    train_size: int = field(default=None, metadata={
        "type": int, "help": "use only the first N training examples (OpenAI needs >= 10)"})
    question: str = field(default=None, metadata={
        "type": str, "help": "step 6 follows this test question (number or words) through "
                             "every method; default: the first"})
    # the job
    epochs: int = field(default=None, metadata={
        "type": int, "help": "passes over the data; default: OpenAI's rule (3, clamped)"})
    batch_size: int = field(default=None, metadata={
        "type": int, "help": "default: chosen by OpenAI for the dataset size"})
    learning_rate_multiplier: float = field(default=None, metadata={
        "type": float, "help": "default: chosen by OpenAI"})
    suffix: str = field(default="edu-qa", metadata={
        "help": "appears in the fine-tuned model's name (ft:...:edu-qa:...)"})
    price_training: float = field(default=None, metadata={
        "type": float, "help": "USD per 1M training tokens, overriding the dated table"})
    max_cost: float = field(default=5.0, metadata={
        "help": "refuse to start a job whose estimated cost (USD) is above this"})
    max_wait: float = field(default=3600, metadata={
        "help": "seconds to watch the job; it goes on after, re-run to resume watching"})
    poll_interval: float = field(default=10, metadata={
        "help": "first wait between status checks, growing 1.5x up to 60 s"})
    cancel: bool = field(default=False, metadata={
        "help": "with --execute: cancel the job in the state file for this training file"})
    max_new_tokens: int = field(default=64, metadata={
        "help": "answer cap for the before/after test questions"})


# %% Step 1. Environment & data preparation
def prepare_data(cfg: Config, console):
    """Load the shared dataset; the API key only when --execute asks for it, never printed."""
    base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
    console.print(f"base model: {cfg.model} | endpoint: {base_url} | "
                  f"paid calls: {'yes (--execute)' if cfg.execute else 'no (plan only)'}")
    versions = edu_qa.library_versions("openai", "tiktoken")
    edu_qa.print_versions(console, versions)
    key = None
    if cfg.execute:
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise edu_qa.UserError("--execute needs an API key: set OPENAI_API_KEY "
                                   "(nothing was uploaded)")
        console.print(f"API key: OPENAI_API_KEY={edu_qa.redact(key)}")
    data = edu_qa.load_qa(cfg.data, seed=cfg.seed)
    train = data.split("train")[:cfg.train_size]
    dev, test = data.split("dev"), data.split("test")
    edu_qa.print_data_summary(console, data, len(train))
    return data, train, dev, test, {"versions": versions, "base_url": base_url}


# %% Step 2. Data format preparation
def convert_format(cfg: Config, data, train, dev, console):
    """QA pairs -> chat-format JSONL, then OpenAI's own format checks and token counts on the
    file exactly as it will be uploaded."""
    shipped = data.path.resolve() == edu_qa.DATA_FILE.resolve() and cfg.train_size is None
    out = Path(cfg.output_dir)
    # The committed example file is only ever regenerated from the shipped dataset; anyone
    # else's data (or a subset) goes to the output folder.
    train_path = TRAINING_FILE if shipped else out / "training.jsonl"
    valid_path = out / "validation.jsonl"
    write_jsonl(train_path, [to_chat(ex) for ex in train])
    write_jsonl(valid_path, [to_chat(ex) for ex in dev])

    lines = train_path.read_text(encoding="utf-8").splitlines()
    console.print("[bold]One training line, exactly as uploaded:[/bold]")
    console.print(lines[0], markup=False, highlight=False, soft_wrap=True)
    examples = [json.loads(line) for line in lines]
    errors, warnings = check_format(examples)
    console.print(f"format errors: {dict(errors) or 'none'} | warnings: "
                  f"{dict(warnings) or 'none'}")
    if errors:
        raise edu_qa.UserError(f"{train_path}: format errors {dict(errors)}; fix before upload")
    if len(examples) < MIN_EXAMPLES:
        raise edu_qa.UserError(f"{train_path}: {len(examples)} training examples; OpenAI needs "
                               f"at least {MIN_EXAMPLES} (raise --train-size)")
    stats = token_stats(examples, cfg.model)
    context = MODELS.get(cfg.model, (None, None, None, 65_536))[3]
    over = sum(n > context for n in stats["lengths"])
    d = stats["distribution"]
    console.print(f"tokens per example: min {d['min']}, p10 {d['p10']}, median {d['median']}, "
                  f"p90 {d['p90']}, max {d['max']}, mean {d['mean']} | assistant tokens: "
                  f"{stats['assistant_tokens']} | over the {context:,}-token context: {over}")
    return {"train_path": train_path, "valid_path": valid_path, "examples": examples,
            "stats": stats, "over_context": over, "shipped": shipped}


def to_chat(ex) -> dict:
    return {"messages": edu_qa.chat_messages(ex.question) +
            [{"role": "assistant", "content": ex.answer}]}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def check_format(examples: list) -> tuple[Counter, Counter]:
    """The checks of OpenAI's data-preparation cookbook: errors block the upload, warnings
    are reported."""
    errors, warnings = Counter(), Counter()
    for ex in examples:
        if not isinstance(ex, dict):
            errors["data_type"] += 1
            continue
        messages = ex.get("messages")
        if not messages or not isinstance(messages, list):
            errors["missing_messages_list"] += 1
            continue
        for message in messages:
            if not isinstance(message, dict) or "role" not in message or \
                    "content" not in message:
                errors["message_missing_key"] += 1
                continue
            if any(k not in ("role", "content", "name", "function_call", "weight")
                   for k in message):
                errors["message_unrecognized_key"] += 1
            if message["role"] not in ("system", "user", "assistant", "function"):
                errors["unrecognized_role"] += 1
            content = message["content"]
            if (not content and not message.get("function_call")) or \
                    not isinstance(content, (str, type(None))):
                errors["missing_content"] += 1
        roles = [m.get("role") for m in messages if isinstance(m, dict)]
        if "assistant" not in roles:
            errors["example_missing_assistant_message"] += 1
        if "system" not in roles:
            warnings["no_system_message"] += 1
        if "user" not in roles:
            warnings["no_user_message"] += 1
    return errors, warnings


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
def configure_model(cfg: Config, converted: dict, n_test: int, console) -> dict:
    """Epochs by OpenAI's rule, the job's method and hyperparameters, and what it will cost."""
    n = len(converted["examples"])
    epochs = cfg.epochs or default_epochs(n)
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
    inference_cost = estimate_inference_cost(cfg, converted, n_test)
    console.print(f"epochs: {epochs} ({'given' if cfg.epochs else 'OpenAI rule'}: {n} examples) "
                  f"| billable tokens: {billable:,} x {epochs} epochs = {billable * epochs:,}")
    console.print(f"estimated cost: training ${training_cost:.4f} at ${price}/1M tokens + "
                  f"test inference ${inference_cost:.4f} (prices checked {PRICES_CHECKED}) | "
                  f"--max-cost ${cfg.max_cost:.2f}")
    if training_cost + inference_cost > cfg.max_cost:
        raise edu_qa.UserError(f"estimated cost ${training_cost + inference_cost:.4f} is above "
                               f"--max-cost ${cfg.max_cost:.2f}; nothing was sent")
    return {"epochs": epochs, "billable_tokens": billable, "trained_tokens": billable * epochs,
            "price": price, "training_cost": training_cost, "inference_cost": inference_cost,
            "job": job}


def default_epochs(n_examples: int) -> int:
    epochs = TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        epochs = min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    elif n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        epochs = max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return epochs


def estimate_inference_cost(cfg: Config, converted: dict, n_test: int) -> float:
    """Step 5 asks the base and the tuned model each test question once."""
    _, tuned, base, _ = MODELS.get(cfg.model, (None, (0, 0), (0, 0), None))
    prompt = converted["stats"]["distribution"]["mean"]
    out = cfg.max_new_tokens
    return n_test * ((prompt * base[0] + out * base[1]) + (prompt * tuned[0] + out * tuned[1])) \
        / 1e6


# %% Step 4. Fine-tuning / optimization
def tune(cfg: Config, client, converted: dict, plan: dict, console) -> dict | None:
    """Upload, create the job, watch it. A job already started for this training file (same
    sha256) is resumed, never started again."""
    state_path = Path(cfg.output_dir) / "state.json"
    sha = sha256_file(converted["train_path"])
    if client is None:
        print_requests(converted, plan, console)
        return None
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    entry = state.get(sha, {})
    if cfg.cancel:
        if "job_id" not in entry:
            raise edu_qa.UserError(f"{state_path}: no job for this training file to cancel")
        job = client.fine_tuning.jobs.cancel(entry["job_id"])
        console.print(f"cancel requested: job {job.id} is {job.status}")
        return {"job": job, "cancelled": True}
    if "job_id" in entry:
        console.print(f"resuming job {entry['job_id']} (from {state_path}; nothing uploaded)")
    else:
        for kind, path in (("training_file_id", converted["train_path"]),
                           ("validation_file_id", converted["valid_path"])):
            if kind not in entry:
                with open(path, "rb") as f:
                    uploaded = client.files.create(file=f, purpose="fine-tune")
                entry[kind] = uploaded.id
                save_state(state_path, state, sha, entry)  # never upload the same file twice
                console.print(f"uploaded {path.name}: {uploaded.id}")
        request = dict(plan["job"], training_file=entry["training_file_id"],
                       validation_file=entry["validation_file_id"])
        job = client.fine_tuning.jobs.create(**request)
        entry.update(job_id=job.id, model=cfg.model, created=time.time())
        save_state(state_path, state, sha, entry)
        console.print(f"created job {job.id} ({job.status}); state: {state_path}")
    start = time.perf_counter()
    try:
        job = watch(cfg, client, entry["job_id"], console)
    except KeyboardInterrupt:
        console.print(f"\n[bold]Stopped watching. Job {entry['job_id']} goes on at OpenAI and "
                      "is billed as it trains.[/bold] Re-run the same command to resume "
                      "watching, or add --cancel to cancel it.")
        raise SystemExit(130)
    return {"job": job, "seconds": time.perf_counter() - start, "cancelled": False}


def watch(cfg: Config, client, job_id: str, console):
    """Poll with growing waits until the job ends or --max-wait passes; print new events."""
    seen, wait, deadline = set(), cfg.poll_interval, time.monotonic() + cfg.max_wait
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        events = client.fine_tuning.jobs.list_events(job_id, limit=50).data
        for event in sorted(events, key=lambda e: e.created_at):
            if event.id not in seen:
                seen.add(event.id)
                metrics = getattr(event, "data", None) or {}
                extra = "" if not isinstance(metrics, dict) or "step" not in metrics else \
                    f" (step {metrics.get('step')}, train loss {metrics.get('train_loss')})"
                console.print(f"  [{event.level}] {event.message}{extra}", highlight=False)
        console.print(f"job {job.id}: {job.status}")
        if job.status in TERMINAL:
            return job
        if time.monotonic() + wait > deadline:
            console.print(f"--max-wait reached; job {job.id} goes on. Re-run the same command "
                          "to resume watching.")
            return job
        time.sleep(wait)
        wait = min(60.0, wait * 1.5)


def print_requests(converted: dict, plan: dict, console) -> None:
    for path in (converted["train_path"], converted["valid_path"]):
        console.print("would send: POST /files " + json.dumps(
            {"purpose": "fine-tune", "file": path.name, "bytes": path.stat().st_size,
             "sha256": sha256_file(path)}), markup=False, highlight=False, soft_wrap=True)
    console.print("would send: POST /fine_tuning/jobs " + json.dumps(plan["job"]),
                  markup=False, highlight=False, soft_wrap=True)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_state(path: Path, state: dict, sha: str, entry: dict) -> None:
    state[sha] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2) + "\n")  # ids only, never the key


# %% Step 5. Inference and demonstration
def infer(cfg: Config, client, job, test, console):
    """Base and fine-tuned model answer the same test questions: same prompt, temperature 0."""
    request = {"model": cfg.model, "messages": edu_qa.chat_messages(test[0].question),
               "temperature": 0, "max_completion_tokens": cfg.max_new_tokens}
    if client is None:
        console.print("would send: POST /chat/completions " + json.dumps(request),
                      markup=False, highlight=False, soft_wrap=True)
        console.print("(once for the base model and once for the fine-tuned ft:... model, "
                      f"for each of the {len(test)} test questions)")
        return None
    if job is None or job.status != "succeeded" or not job.fine_tuned_model:
        console.print(f"no fine-tuned model yet (job {getattr(job, 'status', None)}): "
                      "nothing to compare")
        return None
    answers, tokens, start = {}, 0, time.perf_counter()
    for when, model in (("before", cfg.model), ("after", job.fine_tuned_model)):
        answers[when] = []
        for ex in test:
            reply = client.chat.completions.create(**dict(
                request, model=model, messages=edu_qa.chat_messages(ex.question)))
            answers[when].append(reply.choices[0].message.content or "")
            tokens += reply.usage.total_tokens if reply.usage else 0
    seconds = time.perf_counter() - start
    scores = {when: edu_qa.score(test, answers[when]) for when in answers}
    rows = edu_qa.prediction_rows(test, answers["before"], answers["after"])
    edu_qa.print_scores(console, scores)
    edu_qa.show_side_by_side(console, rows, title="base vs fine-tuned, test questions")
    return {"scores": scores, "rows": rows, "tokens": tokens,
            "per_question": seconds / (2 * len(test))}


# %% Step 6. Comparison
def compare(cfg: Config, data, results: dict, console) -> None:
    """Write this method's results, then compare every method that has results."""
    edu_qa.save_and_compare(console, data, results, cfg.results_dir, cfg.question)


def make_client(cfg: Config):
    """The official SDK; it retries 429 and 5xx itself with backoff (max_retries)."""
    from openai import OpenAI
    return OpenAI(max_retries=5, timeout=120)


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
    plan = configure_model(cfg, converted, len(test), console)
    client = make_client(cfg) if cfg.execute else None
    prepared = time.perf_counter() - start

    edu_qa.step(console, 4, "Fine-tuning / optimization")
    try:
        tuned = tune(cfg, client, converted, plan, console)
        if tuned and tuned["cancelled"]:
            return
        job = tuned["job"] if tuned else None
        if job is not None and job.status in ("failed", "cancelled"):
            error = getattr(job, "error", None)
            console.print(f"[bold red]job {job.id} {job.status}[/bold red]: "
                          f"{getattr(error, 'code', None)}: {getattr(error, 'message', None)}")

        edu_qa.step(console, 5, "Inference and demonstration")
        inference = infer(cfg, client, job, test, console)
    except _api_errors() as err:
        raise edu_qa.UserError(f"OpenAI API: {type(err).__name__}: {err}") from None

    edu_qa.step(console, 6, "Comparison")
    results = edu_qa.new_results(METHOD, cfg, data, model=cfg.model, dry_run=client is None)
    results["dataset"]["train_used"] = len(train)
    results["wall_time_s"].update(prepare=round(prepared, 2),
                                  total=round(time.perf_counter() - start, 2))
    results["tokens"]["training"] = plan["trained_tokens"]
    results["cost_usd"] = {"amount": round(plan["training_cost"] + plan["inference_cost"], 4),
                           "kind": "estimated"}
    results["artifact"] = {"path": str(converted["train_path"]),
                           "bytes": converted["train_path"].stat().st_size}
    results["versions"] = env["versions"]
    results["extra"] = {"epochs": plan["epochs"], "job_request": plan["job"],
                        "token_distribution": converted["stats"]["distribution"],
                        "encoding": converted["stats"]["encoding"],
                        "price_per_1m_training_tokens": plan["price"],
                        "prices_checked": PRICES_CHECKED}
    if job is not None:
        trained = getattr(job, "trained_tokens", None) or 0
        results["data_left_machine"] = True
        results["extra"].update(job_id=job.id, status=job.status)
        results["wall_time_s"]["tune"] = round(tuned["seconds"], 2)
        if job.status == "succeeded":
            results["tuned_model"] = job.fine_tuned_model
            results["artifact"] = {"path": job.fine_tuned_model, "bytes": 0}
            results["tokens"]["training"] = trained
            results["cost_usd"] = {"amount": round(trained * plan["price"] / 1e6, 4),
                                   "kind": "actual"}
            list_checkpoints(client, job.id, console)
    if inference:
        results.update(before=inference["scores"]["before"],
                       after=inference["scores"]["after"], predictions=inference["rows"])
        results["tokens"]["inference"] = inference["tokens"]
        results["wall_time_s"]["infer_per_question"] = round(inference["per_question"], 3)
    results["prompt_template"] = "POST /chat/completions " + json.dumps(
        {"model": results.get("tuned_model") or cfg.model,
         "messages": edu_qa.chat_messages("{question}"), "temperature": 0})
    compare(cfg, data, results, console)


def list_checkpoints(client, job_id: str, console) -> None:
    for cp in client.fine_tuning.jobs.checkpoints.list(job_id).data:
        console.print(f"checkpoint {cp.fine_tuned_model_checkpoint} at step {cp.step_number}",
                      highlight=False)


def _api_errors():
    if "openai" not in sys.modules:  # a dry run never imports the SDK
        return ()
    import openai
    return (openai.APIError,)


if __name__ == "__main__":
    sys.exit(edu_qa.run(main))
