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
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import model_dates
from .cli import UserError
from .openai_costs import usage_cost
from .results import write_json

OPENAI_URL = "https://api.openai.com/v1"
EXIT_JOB_FAILED, EXIT_STILL_RUNNING = 3, 4
TERMINAL = ("succeeded", "failed", "cancelled")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, whole or not at all (written aside, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                   encoding="utf-8")
    tmp.replace(path)


def new_events(page, seen: set, max_pages: int = 10) -> list:
    """The events of a list_events page (and the pages after it) not seen yet, newest first
    as the API lists them, now marked seen: pages until a seen one, at most max_pages (a
    service that always says has_more cannot loop us)."""
    new = []
    for _ in range(max_pages):
        for event in page.data:
            if event.id in seen:
                break
            new.append(event)
        else:
            if page.has_next_page():
                page = page.get_next_page()
                continue
        break
    seen.update(event.id for event in new)
    return new


def is_local(client) -> bool:
    return client.base_url.host in ("127.0.0.1", "localhost")


def first_wait(client, poll_interval: float | None) -> float:
    """Seconds between status checks: --poll-interval, else 1 on the local service (a job
    takes minutes) and 10 elsewhere (a job takes tens of minutes, and calls are rate-limited)."""
    return poll_interval if poll_interval is not None else 1.0 if is_local(client) else 10.0


def next_wait(client, wait: float) -> float:
    """Growing waits: 1.5x, up to 2 s locally and 60 s elsewhere."""
    return min(2.0 if is_local(client) else 60.0, wait * 1.5)


def print_requests(formatted, plan: dict, console) -> None:
    """What OpenAI would be sent (the local run sends the same, with its own model)."""
    for path in (formatted.train_path, formatted.valid_path):
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

    def job_created_before(self, client, console):
        """The job a stopped run created: that run saved its intent before POST
        /fine_tuning/jobs and sent it as metadata, so the job is found by it and never
        created (and paid for) twice. None when there is no such job."""
        intent = self.entry.get("create_request")
        if not intent:
            return None
        self.doing = "GET /fine_tuning/jobs (looking for the job a stopped run created)"
        # one page, not every page (a service that always says has_more cannot loop us), and
        # only a job whose metadata is this run's intent: never someone else's job
        page = client.fine_tuning.jobs.list(metadata={"edu_qa_request": intent}, limit=100)
        found = [job for job in page.data
                 if (job.metadata or {}).get("edu_qa_request") == intent]
        if not found:
            return None
        console.print(f"found job {found[0].id}, created by a run that stopped before it saw "
                      "the reply: nothing created again", markup=False)
        self.update(job_id=found[0].id, create_request=None)
        return found[0]

    def intend_to_create(self) -> dict:
        """The metadata to send with POST /fine_tuning/jobs: a request id, saved before the
        call (also the Idempotency-Key), and the training file's sha256."""
        intent = self.entry.get("create_request") or uuid.uuid4().hex
        self.update(create_request=intent)
        return {"edu_qa_request": intent, "training_sha256": self.sha}

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


def open_service(where: Where, output_dir: str):
    """(client, service name for the state file, close) for this run's mode: the local
    service, started in this process on a free port of 127.0.0.1, or OpenAI / --base-url.
    close() stops the local service (and is called however the run ends)."""
    from contextlib import ExitStack

    from .cli import on_exit
    if where.mode == "openai":
        return make_client(where.base_url, os.environ["OPENAI_API_KEY"]), where.base_url, \
            (lambda: None)
    from .service import serve
    stack = ExitStack()
    url = stack.enter_context(serve("127.0.0.1", 0, data_dir=Path(output_dir) / "service"))
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

    def __init__(self, state, where: Where):
        self.state, self.where = state, where

    def __enter__(self):
        return self

    def __exit__(self, etype, value, tb):
        if etype is not None and _api_errors() and issubclass(etype, _api_errors()):
            raise UserError(refusal(value, self.state, self.where)) from None
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


def refusal(err, state, where: Where) -> str:
    """The API error in plain words: which request, what the service said (quoted), what
    was kept."""
    status = getattr(err, "status_code", None)
    said = getattr(err, "message", None) or str(err)
    body = getattr(err, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        said = body["message"]
    what = f"{state.doing} failed" if state else "the request failed"
    text = f"{what}: {type(err).__name__}{f' (HTTP {status})' if status else ''}: {said!r}"
    if status in (401, 403, 404) and where.mode == "openai":
        text += (". If fine-tuning is not available to this account: OpenAI closed self-serve "
                 "fine-tuning to organizations that never fine-tuned (2026-05-07) or had no "
                 "fine-tuned inference for 60 days (2026-07-02), and to everyone from "
                 "2027-01-06; run without --execute to use the local service")
    if state:
        text += f". Nothing was lost: {state.path} keeps what was done; re-run to continue"
    return text


def _api_errors():
    if "openai" not in sys.modules:  # a dry run never imports the SDK
        return ()
    import openai
    return (openai.APIError, json.JSONDecodeError)


@dataclass(frozen=True)
class Where:
    """Where the job runs, decided once in step 1: mode (local, openai or plan) and the
    service's URL (or the mode's name)."""
    mode: str
    base_url: str


def where_it_runs(cfg, console) -> Where:
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
    return Where(mode, base_url if mode == "openai" else mode)


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


def count_usage(run, which: str, usages: list[list[int]]) -> None:
    """Chat tokens, [prompt, completion], of the base ("base") and of the tuned models
    ("tuned"), kept apart on the run: they are priced apart."""
    tokens = run.results["extra"].setdefault("chat_tokens", {"base": [0, 0], "tuned": [0, 0]})
    for used in usages:
        tokens[which] = [tokens[which][0] + used[0], tokens[which][1] + used[1]]


def kept_artifact(output_dir: str, job, kept: str, kept_id: str, local: bool):
    """What the kept model is: on the local service the adapter folder it serves (the final
    model, or a checkpoint's), elsewhere the model id; None when the base is kept."""
    if kept == "base":
        return None
    if not local:
        return kept_id
    from .service import model_folder
    return model_folder(Path(output_dir) / "service", job.id, kept_id)


def record_kept_model(run, cfg, tuned, plan: dict, local: bool) -> None:
    """Step 5's facts on the run: the kept model, the chat tokens, and what it all cost (the
    local service: $0; OpenAI: the job's trained tokens and the chat calls, priced)."""
    from .machine_facts import disk_size
    chat = run.results["extra"].get("chat_tokens", {"base": [0, 0], "tuned": [0, 0]})
    run.counted(inference=sum(map(sum, chat.values())))
    run.set(tuned_model=tuned.model,
            artifact=None if tuned.artifact is None else
            {"path": str(tuned.artifact), "bytes": disk_size(tuned.artifact) if local else 0})
    if local:
        run.set(title="OpenAI-style fine-tuning, on the local service",
                model=f"{cfg.local_model} (local OpenAI-compatible service)",
                cost_usd={"amount": 0.0, "kind": "local"})
        return
    amount = (run.results["tokens"]["training"] or 0) * plan["price"] / 1e6 + \
        usage_cost(cfg.model, "base", *chat["base"]) + \
        usage_cost(cfg.model, "tuned", *chat["tuned"])
    run.set(cost_usd={"amount": round(amount, 4), "kind": "actual"}, data_left_machine=True)
