"""The service's records on disk, and what all its parts share: ids, times, OpenAI's error
shape, the data directory's lock.

Everything lives under the data directory, so that a restarted service keeps its files, jobs
and models:
    files/FILE.jsonl, files/FILE.json   an upload, and its record
    files/FILE.csv                      a job's results (its step metrics), beside its record
    jobs/JOB.json                       a job: its OpenAI object, owner, events, checkpoints,
                                        and its turn in the training queue once it trained
    models/JOB/checkpoints/step-N/      the adapter of each checkpoint (ft:...:ckpt-step-N),
                                        copied in as step-N.partial, then renamed
    models/JOB/final/                   the fine-tuned model's adapter (ft:...)
    models/JOB/trainer/                 Trainer's own folder while the job trains
    service.lock                        held while a service uses the directory
Every record is a JSON file, rewritten whole on change; its owner is an API key's sha256, or
'local' where the service needs no keys."""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path

from fastapi.responses import JSONResponse
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJobEvent

import edu_qa

DEFAULT_DATA_DIR = edu_qa.HERE / "outputs" / "finetune_service"
LOCK_FILE = "service.lock"  # in the data directory: one service at a time uses it
OPEN_STATES = ("validating_files", "queued", "running")
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
RESULTS_PURPOSE = "fine-tune-results"  # a job's results file, as OpenAI names its purpose


class APIError(Exception):
    """Answered as OpenAI answers errors: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 param: str | None = None, kind: str = "invalid_request_error",
                 retry: bool | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = \
            status, message, code, param, kind
        self.retry = retry

    def response(self) -> JSONResponse:
        headers = {} if self.retry is None else {"x-should-retry": str(self.retry).lower()}
        return JSONResponse(status_code=self.status, headers=headers, content={"error": {
            "message": self.message, "type": self.kind, "param": self.param,
            "code": self.code}})


def now() -> int:
    return int(time.time())


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def write_json(path: Path, obj) -> None:
    """Write whole or not at all: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def lock_data_dir(data_dir: Path):
    """An exclusive lock on DATA_DIR/service.lock, held while the service runs (the open file
    is the lock: closing it releases it), with this process's id written inside, so that a
    second service on the same directory refuses to start and says which process holds it.
    Where there is no fcntl (Windows), the id is written and nothing is locked."""
    try:
        import fcntl  # not on Windows: imported here, where its absence is handled
    except ImportError:
        fcntl = None
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held open)
    try:
        if fcntl:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise edu_qa.UserError(f"{data_dir} is in use by another finetune_service (process "
                               f"{holder}); stop that one, or give this one another "
                               "--data-dir") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def job_folder(data_dir: Path, job_id: str) -> Path:
    return Path(data_dir) / "models" / job_id


def model_folder(data_dir: Path, job_id: str, model_id: str) -> Path:
    """The adapter folder served as model_id, one of job_id's models: checkpoints/step-N for
    its checkpoint ft:...:ckpt-step-N, final for the fine-tuned model itself."""
    job = job_folder(data_dir, job_id)
    _, checkpoint, step = model_id.rpartition(":ckpt-step-")
    return job / "checkpoints" / f"step-{step}" if checkpoint else job / "final"


def base_of(record: dict) -> str:
    """The local base model a job trains: the model it asked for, or that name's stand-in."""
    return record.get("base") or record["object"]["model"]


def unique_steps(checkpoints: list[dict]) -> list[dict]:
    """One checkpoint per step, the latest: a job trained again (after a restart) saves its
    steps again."""
    return list({cp["step_number"]: cp for cp in checkpoints}.values())


class Store:
    """The files and jobs, in memory and on disk (one JSON file each). The data directory is
    locked from here to close()."""

    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir)
        self.dir_lock = lock_data_dir(self.dir)
        self.lock = threading.RLock()
        self.files, self.jobs = {}, {}
        for kind, table in (("files", self.files), ("jobs", self.jobs)):
            for path in sorted((self.dir / kind).glob("*.json")):
                try:
                    record = json.loads(path.read_text(encoding="utf-8"))
                    table[record["object"]["id"]] = record
                except (OSError, ValueError, KeyError, TypeError) as err:
                    print(edu_qa.visible(f"finetune_service: skipping unreadable {path}: "
                                         f"{err}"), file=sys.stderr)
        for record in self.jobs.values():  # a job trained again once listed each step twice
            record["checkpoints"] = unique_steps(record.get("checkpoints", []))

    def close(self) -> None:
        self.dir_lock.close()

    def save(self, kind: str, record: dict) -> None:
        with self.lock:
            write_json(self.dir / kind / f"{record['object']['id']}.json", record)

    def remove(self, kind: str, object_id: str) -> None:
        with self.lock:
            (self.dir / kind / f"{object_id}.json").unlink(missing_ok=True)

    def owned(self, table: dict, object_id: str, owner: str, what: str) -> dict:
        record = table.get(object_id)
        if record is None or record["owner"] != owner:  # another key's object does not exist
            raise APIError(404, f"No such {what}: {object_id}", code=f"{what}_not_found",
                           param=f"{what}_id")
        return record

    def file_path(self, file_id: str) -> Path:
        """Where a file's content is: FILE.jsonl for an upload, FILE.csv for a job's results."""
        record = self.files.get(file_id)
        results = record is not None and record["object"]["purpose"] == RESULTS_PURPOSE
        return self.dir / "files" / f"{file_id}.{'csv' if results else 'jsonl'}"

    def add_file(self, owner: str, filename: str, purpose: str, content: bytes) -> dict:
        """A new file of owner's (an upload, or a job's results): its content and its record
        written; its OpenAI object."""
        obj = FileObject(id=new_id("file"), object="file", bytes=len(content),
                         created_at=now(), filename=filename, purpose=purpose,
                         status="processed").model_dump(mode="json", exclude_none=True)
        record = {"object": obj, "owner": owner}
        with self.lock:
            self.files[obj["id"]] = record
            path = self.file_path(obj["id"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            self.save("files", record)
        return obj

    def job_dir(self, job_id: str) -> Path:
        return job_folder(self.dir, job_id)

    def event(self, record: dict, message: str, level: str = "info", data=None,
              kind: str = "message") -> None:
        with self.lock:
            event = FineTuningJobEvent(id=new_id("ftevent"), object="fine_tuning.job.event",
                                       created_at=now(), level=level, message=message,
                                       type=kind, data=data or {})
            record["events"].append(event.model_dump(mode="json"))
            self.save("jobs", record)
