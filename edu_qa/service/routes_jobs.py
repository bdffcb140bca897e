"""/v1/fine_tuning/jobs: create a job (it is validated and trained in the background by the
worker), list a key's jobs (with OpenAI's metadata filter), retrieve one, its events and its
checkpoints, and cancel it. Each key may have at most --max-jobs-per-key unfinished jobs."""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from openai.types.fine_tuning import FineTuningJob

from .bodies import JobRequest, checked, json_object
from .store import OPEN_STATES, TERMINAL_STATES, APIError, Store, new_id, now
from .web import Caller, Parts, org_of, page

router = APIRouter(prefix="/v1/fine_tuning/jobs")


@router.post("")
def create_job(request: Request, who: Caller, service: Parts,
               body: Annotated[dict, Depends(json_object)]):
    store = service.store
    idem = request.headers.get("idempotency-key")
    with store.lock:
        if idem:  # the same request sent again (a retry, a re-run): the same job
            for record in store.jobs.values():
                if record["owner"] == who and record.get("idempotency_key") == idem:
                    return record["object"]
        # looked up, then checked, in this order (the first problem is the one answered): the
        # model, the files, then the settings (JobRequest); a retry above skips them all
        base = service.models.stand_in(body.get("model"))
        files = files_of(store, body, who)
        asked = checked(JobRequest, body)
        job = new_job(body["model"], files, asked, org_of(who)[0])
        waiting = sum(r["owner"] == who and r["object"]["status"] in OPEN_STATES
                      for r in store.jobs.values())
        if waiting >= service.max_jobs_per_key:
            raise APIError(429, f"{waiting} jobs of this key are not finished; this service "
                           f"queues at most {service.max_jobs_per_key} per key. Wait for one "
                           "or cancel one.", code="too_many_jobs", retry=False,
                           kind="rate_limit_exceeded")
        # created: created_at to the microsecond, the order of a key's jobs in the queue
        record = {"object": job, "owner": who, "idempotency_key": idem, "events": [],
                  "checkpoints": [], "org": org_of(who)[1], "suffix": asked.suffix,
                  "adapter": None, "base": base, "created": time.time()}
        store.jobs[job["id"]] = record
        store.save("jobs", record)
    store.event(record, f"Created fine-tuning job: {job['id']}" + (
        f"; {job['model']} is trained here as {base} (a local stand-in)"
        if base != job["model"] else ""))
    service.worker.submit(job["id"])
    return job


def files_of(store: Store, body: dict, who: str) -> dict[str, str]:
    """The job's files, each one of this key's uploads (the validation file may be left out)."""
    files = {}
    for param in ("training_file", "validation_file"):
        file_id = body.get(param)
        if file_id is None and param == "validation_file":
            continue
        if not isinstance(file_id, str) or file_id not in store.files or \
                store.files[file_id]["owner"] != who:
            raise APIError(400, f"invalid {param}: {file_id}", code="invalid_file",
                           param=param)
        files[param] = file_id
    return files


def new_job(model: str, files: dict[str, str], asked: JobRequest, organization: str) -> dict:
    """The job, as OpenAI shows it."""
    hyper = asked.hyper().model_dump()
    # as OpenAI does: a job without a seed gets one, reported on the job, so that any job can
    # be trained again to the same weights
    seed = secrets.randbelow(2**31) if asked.seed is None else asked.seed
    return FineTuningJob(
        id=new_id("ftjob"), object="fine_tuning.job", created_at=now(), error=None,
        fine_tuned_model=None, finished_at=None, hyperparameters=hyper, model=model,
        organization_id=organization, result_files=[], status="validating_files",
        trained_tokens=None, training_file=files["training_file"],
        validation_file=files.get("validation_file"), seed=seed, metadata=asked.metadata,
        method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
    ).model_dump(mode="json", exclude_unset=True)  # what is given, nulls included


@router.get("")
def list_jobs(request: Request, who: Caller, service: Parts, after: str | None = None,
              limit: int = 20):
    wanted = {k[9:-1]: v for k, v in request.query_params.items()
              if k.startswith("metadata[") and k.endswith("]")}
    items = [r["object"] for r in service.store.jobs.values() if r["owner"] == who and all(
        (r["object"].get("metadata") or {}).get(k) == v for k, v in wanted.items())]
    items.sort(key=lambda o: o["created_at"], reverse=True)
    return page(items, after, limit)


@router.get("/{job_id}")
def get_job(job_id: str, who: Caller, service: Parts):
    return service.store.owned(service.store.jobs, job_id, who, "job")["object"]


@router.get("/{job_id}/events")
def job_events(job_id: str, who: Caller, service: Parts, after: str | None = None,
               limit: int = Query(20, ge=1, le=10000)):
    return page(newest_first(service.store, job_id, who, "events"), after, limit)


@router.get("/{job_id}/checkpoints")
def job_checkpoints(job_id: str, who: Caller, service: Parts, after: str | None = None,
                    limit: int = Query(10, ge=1, le=10000)):
    cps = newest_first(service.store, job_id, who, "checkpoints")
    return page([{k: v for k, v in cp.items() if k != "folder"} for cp in cps], after, limit)


def newest_first(store: Store, job_id: str, who: str, kind: str) -> list[dict]:
    """A job's events or checkpoints, newest first, as OpenAI lists them."""
    record = store.owned(store.jobs, job_id, who, "job")
    with store.lock:
        return list(reversed(record[kind]))


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, who: Caller, service: Parts):
    """Cancelled at once, as OpenAI answers; a queued job leaves the queue, a job in training
    stops at its next step."""
    store = service.store
    record = store.owned(store.jobs, job_id, who, "job")
    with store.lock:
        job = record["object"]
        if job["status"] in TERMINAL_STATES:
            raise APIError(400, f"Job {job_id} is already {job['status']}; only a job that "
                           "has not finished can be cancelled", code="job_not_cancellable",
                           param="fine_tuning_job_id")
        service.worker.cancel(job_id)
        store.event(record, "Job cancelled")
        job.update(status="cancelled", finished_at=now())
        store.save("jobs", record)
    return job
