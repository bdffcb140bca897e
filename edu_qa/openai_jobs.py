"""The bookkeeping of a fine-tuning job, which a student need not read to learn the workflow:
prices and token counts, a state file that makes every step happen once, watching a job and
its events, refusals in plain words, and the choice among checkpoints.

openai_finetune.py holds the workflow (the files, the job, the ft: model, the SDK calls) and
calls these.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

from . import model_dates
from .cli import UserError
from .local_model import use_offline_tiktoken
from .results import write_json

OPENAI_URL = "https://api.openai.com/v1"
EXIT_JOB_FAILED, EXIT_STILL_RUNNING = 3, 4
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


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, whole or not at all (written aside, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                   encoding="utf-8")
    tmp.replace(path)


def encoding_for(model: str):
    import tiktoken
    use_offline_tiktoken()
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


def usage_cost(model: str, which: str, prompt_tokens: float, completion_tokens: float) -> float:
    """USD for tokens of the base or the fine-tuned model, at the dated prices."""
    _, tuned, base, _ = MODELS.get(model, (None, (0, 0), (0, 0), None))
    rates = tuned if which == "tuned" else base
    return (prompt_tokens * rates[0] + completion_tokens * rates[1]) / 1e6


def create_job_once(client, request: dict, state: JobState, console):
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


def watch(client, job_id: str, console, poll_interval: float | None, max_wait: float):
    """Poll with growing waits until the job ends or --max-wait passes; print new events."""
    local = client.base_url.host in ("127.0.0.1", "localhost")
    wait = poll_interval if poll_interval is not None else 1.0 if local else 10.0
    seen, status, deadline = set(), None, time.monotonic() + max_wait
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
                raise UserError(
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
                raise UserError(f"the service answered {self.doing} with the id "
                                       f"{value!r}; nothing was saved")
            self.entry[name] = value
        write_json(self.path, self.all)


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


def make_client(base_url: str, api_key: str, **options):
    """The official SDK. It retries 429 and 5xx itself with backoff (max_retries); strict
    response validation turns a reply that is not what OpenAI sends (HTML, {}, a null id) into
    an error instead of a broken object."""
    from openai import OpenAI
    return OpenAI(**{"base_url": base_url, "api_key": api_key, "max_retries": 5,
                     "timeout": 120, "_strict_response_validation": True, **options})


def open_service(env: dict, output_dir: str):
    """(client, service name for the state file, close) for this run's mode: the local
    service, started in this process on a free port of 127.0.0.1, or OpenAI / --base-url.
    close() stops the local service (and is called however the run ends)."""
    from contextlib import ExitStack

    from .cli import on_exit
    if env["mode"] == "openai":
        return make_client(env["base_url"], os.environ["OPENAI_API_KEY"]), env["base_url"], \
            (lambda: None)
    import finetune_service
    stack = ExitStack()
    url = stack.enter_context(finetune_service.serve(
        "127.0.0.1", 0, data_dir=Path(output_dir) / "service"))
    on_exit(stack.close)
    return make_client(url, "local-service-needs-no-key"), "local", stack.close


def interrupted(state, output_dir: str, mode: str) -> str:
    """What Ctrl-C interrupted, and that nothing is lost or sent twice on a re-run."""
    where = f" during {state.doing}" if state else ""
    return (f"\nInterrupted{where}. Everything so far is saved in "
            f"{state.path if state else output_dir}; re-run the same command to continue: "
            "nothing is uploaded or created twice."
            + (" A job at OpenAI goes on, and is billed as it trains; add --cancel to cancel "
               "it." if mode == "openai" else ""))


class api_errors_as_messages:
    """Around the cells that call the service: an API error becomes a plain message (which
    request, what the service said, what was kept) with exit status 2, not a traceback."""

    def __init__(self, state, env: dict):
        self.state, self.env = state, env

    def __enter__(self):
        return self

    def __exit__(self, etype, value, tb):
        if etype is not None and _api_errors() and issubclass(etype, _api_errors()):
            raise UserError(refusal(value, self.state, self.env)) from None
        return False


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
    """The job's checkpoints, oldest first (one per epoch; OpenAI keeps the last three). Each
    is judged on dev next, by its model id (its validation loss was among the job's events)."""
    import openai
    try:
        listed = client.fine_tuning.jobs.checkpoints.list(job_id).data
    except openai.NotFoundError:  # a service that keeps no checkpoints: the final model only
        console.print("this service lists no checkpoints: the final model is the candidate")
        return []
    return sorted(listed, key=lambda cp: cp.step_number)


def _api_errors():
    if "openai" not in sys.modules:  # a dry run never imports the SDK
        return ()
    import openai
    return (openai.APIError, json.JSONDecodeError)


def where_it_runs(cfg, console) -> dict:
    """--execute: OpenAI (or --base-url), paid; --dry-run: nowhere, a plan; neither: the local
    service. The API key is read only for a paid run, and never printed."""
    from .cli import redact
    if cfg.execute and cfg.dry_run:
        raise UserError("--execute and --dry-run contradict each other: choose one")
    if cfg.cancel and cfg.dry_run:
        raise UserError("--cancel needs a service to send the cancel to: drop --dry-run")
    mode = "openai" if cfg.execute else "plan" if cfg.dry_run else "local"
    base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
    where = {"openai": f"{base_url} (--execute: this costs money)",
             "plan": "none (--dry-run: plan only, nothing is sent)",
             "local": f"local fine-tuning service on 127.0.0.1, base model {cfg.local_model} "
                      "(free; add --execute for OpenAI)"}[mode]
    console.print(f"service: {where}")
    at_openai = mode == "openai" and base_url.rstrip("/") == OPENAI_URL
    closes, closed = model_dates.fine_tuning_closed()
    if at_openai and closed:
        raise UserError(f"OpenAI takes no new fine-tuning jobs since {closes} "
                        f"({model_dates.SOURCE}): run without --execute to use the local "
                        "service, or give --base-url of another service (nothing was sent)")
    console.print(f"OpenAI plan: {model_dates.check_model(cfg.model, at_openai, 'base model')}"
                  f"; self-serve fine-tuning {'closed' if closed else 'closes'} to new jobs "
                  f"on {closes}")
    if mode == "openai":
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise UserError("--execute needs an API key: set OPENAI_API_KEY (nothing was "
                            "uploaded)")
        console.print(f"API key: OPENAI_API_KEY={redact(key)}")
    return {"mode": mode, "base_url": base_url if mode == "openai" else mode}


def check_examples(examples: list[dict], train, data_path, model: str, train_size,
                   console) -> dict:
    """OpenAI's own rules, before any file is written: the format (its errors and warnings
    printed), at least MIN_EXAMPLES, each example within the model's training context.
    Returns the token statistics."""
    from . import chat_format
    errors, warnings = chat_format.check_format(examples)
    console.print(f"format errors: {dict(errors) or 'none'} | warnings: "
                  f"{dict(warnings) or 'none'}")
    if errors:
        raise UserError(f"{data_path}: format errors {dict(errors)}; nothing written")
    if len(examples) < chat_format.MIN_EXAMPLES:
        hint = "raise --train-size" if train_size else "add training examples"
        raise UserError(f"{data_path}: {len(examples)} training examples (lines "
                        f"{', '.join(str(ex.line) for ex in train) or 'none'}); OpenAI "
                        f"needs at least {chat_format.MIN_EXAMPLES} ({hint})")
    stats = token_stats(examples, model)
    context = context_of(model)
    over = [ex.line for ex, n in zip(train, stats["lengths"]) if n > context]
    if over:
        raise UserError(f"{data_path}: lines {', '.join(map(str, over))} are longer than "
                        f"{model}'s {context:,}-token training context")
    return stats


def context_of(model: str) -> int:
    return MODELS.get(model, (None, None, None, 65_536))[3]


def print_token_stats(stats: dict, model: str, console) -> None:
    d = stats["distribution"]
    console.print(f"tokens per example: min {d['min']}, p10 {d['p10']}, median {d['median']}, "
                  f"p90 {d['p90']}, max {d['max']}, mean {d['mean']} | assistant tokens: "
                  f"{stats['assistant_tokens']} | over {context_of(model):,}: 0")


def price_job(cfg, stats: dict, epochs: int, n_test: int, n_dev: int) -> dict:
    """What OpenAI would charge: billable training tokens x epochs at the dated price, and
    step 5's chat calls (the base and each checkpoint on dev, the base and the kept model on
    test)."""
    billable = sum(min(context_of(cfg.model), n) for n in stats["lengths"])
    price = cfg.price_training if cfg.price_training is not None else \
        MODELS.get(cfg.model, (None,))[0]
    if price is None:
        raise UserError(f"no training price for {cfg.model} in the table (checked "
                        f"{PRICES_CHECKED}); give --price-training (USD per 1M tokens)")
    prompt = stats["distribution"]["mean"]
    base = usage_cost(cfg.model, "base", prompt, cfg.max_new_tokens)
    tuned = usage_cost(cfg.model, "tuned", prompt, cfg.max_new_tokens)
    return {"billable_tokens": billable, "trained_tokens": billable * epochs, "price": price,
            "training_cost": billable * epochs * price / 1e6,
            "inference_cost": n_test * (base + tuned) + n_dev * (base + min(3, epochs) * tuned)}


def resume_or_cancel(cfg, client, state, console):
    """--cancel: cancel the recorded job (returns it). --new-job: the recorded job becomes a
    previous one. A recorded job is resumed, never started again (returns None: go on)."""
    entry = state.entry
    if cfg.cancel:
        if "job_id" not in entry:
            raise UserError(f"{state.path}: no job recorded for this training file on "
                            f"{state.service} to cancel")
        state.doing = f"POST /fine_tuning/jobs/{entry['job_id']}/cancel"
        job = client.fine_tuning.jobs.cancel(entry["job_id"])
        console.print(f"cancel requested: job {job.id} is {job.status}")
        return job
    if "job_id" in entry and cfg.new_job:
        state.update(previous_jobs=entry.get("previous_jobs", []) + [entry["job_id"]],
                     job_id=None)
        console.print(f"--new-job: job {entry['previous_jobs'][-1]} stays in {state.path} "
                      "as a previous job; starting another")
    if "job_id" in entry:
        console.print(f"resuming job {entry['job_id']} (from {state.path}; nothing uploaded)")
    return None


class Asker:
    """Step 5's chat calls, concurrent, counting the tokens of the base and of the tuned
    models apart (they are priced apart)."""

    def __init__(self, client, request: dict, base_model: str, concurrency: int):
        from concurrent.futures import ThreadPoolExecutor
        self.client, self.request, self.base_model = client, request, base_model
        self.pool = ThreadPoolExecutor(concurrency)
        self.usage = {"base": [0, 0], "tuned": [0, 0]}

    def answers(self, model_id: str, examples) -> list[str]:
        from .data import chat_messages

        def ask(ex):
            reply = self.client.chat.completions.create(**dict(
                self.request, model=model_id, messages=chat_messages(ex.question)))
            return reply.choices[0].message.content or "", reply.usage
        replies = list(self.pool.map(ask, examples))
        bucket = self.usage["base" if model_id == self.base_model else "tuned"]
        for _, used in replies:
            bucket[0] += used.prompt_tokens if used else 0
            bucket[1] += used.completion_tokens if used else 0
        return [text for text, _ in replies]

    def close(self):
        self.pool.shutdown()


def results(method: str, cfg, data, train, env: dict, plan: dict, converted: dict, job,
            inference: dict | None, local: bool, prepared: float, start: float) -> dict:
    """results/openai_finetune.json: what step 6 compares, and what the job did and cost."""
    from .data import by_subject, chat_messages
    from .local_model import disk_size
    from .results import new_results
    res = new_results(method, cfg, data, model=cfg.local_model if local else cfg.model,
                      dry_run=job is None)
    res["dataset"].update(train_used=len(train), train_by_subject=by_subject(train))
    res["wall_time_s"].update(prepare=round(prepared, 2),
                              total=round(time.perf_counter() - start, 2))
    res["tokens"]["training"] = plan["trained_tokens"]
    estimate = round(plan["training_cost"] + plan["inference_cost"], 4)
    res["cost_usd"] = {"amount": estimate, "kind": "estimated"}
    res["versions"] = env["versions"]
    res["extra"] = {"service": env["base_url"], "epochs": plan["epochs"],
                    "job_request": plan["job"],
                    "token_distribution": converted["stats"]["distribution"],
                    "encoding": converted["stats"]["encoding"], "openai_estimate_usd": estimate,
                    "price_per_1m_training_tokens": plan["price"], "prices_checked": PRICES_CHECKED}
    if job is not None:
        trained = job.trained_tokens or 0
        res["extra"].update(job_id=job.id, status=job.status,
                            hyperparameters=job.hyperparameters.model_dump(),
                            kept=inference["kept"], dev_scores=inference["dev"])
        # the job's own clock (created to finished), also right for a job resumed later
        res["wall_time_s"]["tune"] = job.finished_at - job.created_at
        res["wall_time_s"]["infer_per_question"] = round(inference["per_question"], 3)
        res["tuned_model"] = inference["kept_model"]
        res["artifact"] = {"path": inference["kept_model"], "bytes": 0}
        res["tokens"].update(training=trained, inference=inference["tokens"])
        res.update(before=inference["scores"]["before"], after=inference["scores"]["after"],
                   predictions=inference["rows"], before_source=inference["source"])
        if local:
            res["title"] = "OpenAI-style fine-tuning, on the local service"
            res["model"] = f"{cfg.local_model} (local OpenAI-compatible service)"
            res["cost_usd"] = {"amount": 0.0, "kind": "local"}
            job_dir = Path(cfg.output_dir) / "service" / "models" / job.id
            adapter = job_dir / "final" if inference["kept_model"] == job.fine_tuned_model \
                else job_dir / "checkpoints" / inference["kept"].replace(" ", "-")
            res["artifact"] = {"path": str(adapter), "bytes": disk_size(adapter)} \
                if inference["kept"] != "base" else None
        else:
            usage = inference["usage"]
            amount = trained * plan["price"] / 1e6 + \
                usage_cost(cfg.model, "base", *usage["base"]) + \
                usage_cost(cfg.model, "tuned", *usage["tuned"])
            res["cost_usd"] = {"amount": round(amount, 4), "kind": "actual"}
            res["data_left_machine"] = True
    res["prompt_template"] = "POST /chat/completions " + json.dumps(
        {"model": res.get("tuned_model") or cfg.model,
         "messages": chat_messages("{question}"), "temperature": 0})
    return res
