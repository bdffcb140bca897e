"""A local fine-tuning service that speaks OpenAI's API and really trains.

    python -m finetune_service --port 8000          # this machine only (127.0.0.1), no keys
    python -m finetune_service --host 0.0.0.0 --port 8000 --api-keys-file keys.txt  # a class

openai_finetune.py starts one in its own process on 127.0.0.1 (a free port) when it runs
without --execute, so the cloud workflow (upload a file, start a job, watch its events and
checkpoints, call the ft: model) runs for real with the official SDK and no OpenAI account.
Point any OpenAI client at it with base_url="http://HOST:PORT/v1".

What it serves, with OpenAI's request and response shapes (bodies are built from the openai
SDK's own types, so the SDK parses exactly what OpenAI would send):
    POST /v1/files (purpose=fine-tune), GET /v1/files, GET /v1/files/{id}
    POST /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs (list, metadata filter),
    GET /v1/fine_tuning/jobs/{id}, .../events, .../checkpoints, POST .../cancel
    GET /v1/models, POST /v1/chat/completions (the base models and every ft: model)

A job goes validating_files -> queued -> running -> succeeded | failed | cancelled. Validation
uses chat_format, the same checks as the script's step 2. Training is the LoRA recipe of
huggingface_lora.py, called (not copied), one job at a time. OpenAI's hyperparameters map
onto it like this:
    n_epochs                 -> epochs; "auto": OpenAI's rule (chat_format.default_epochs)
    batch_size               -> batch_size; "auto": the recipe's default
    learning_rate_multiplier -> times the recipe's learning rate; "auto": 1
    seed                     -> seed (LoRA's initial weights, data order, dropout); a job
                                without one gets one, reported on the job
An event is written for every logged training loss and every validation loss, and a
checkpoint (a LoRA adapter, callable as ft:...:ckpt-step-N) at the end of every epoch.
Chat answers are greedy, whatever temperature is asked for: the lesson compares models, not
samples. Everything lives under --data-dir, so a restarted service keeps its files, jobs and
models, and queues again a job that was training when it stopped.

Sharing one machine's service with a class: it binds to 127.0.0.1 unless --host says
otherwise, and on any other address it refuses to start without API keys. With keys, a request
without a valid "Authorization: Bearer KEY" gets 401, as at OpenAI; each key sees only its own
files, jobs and models; and each key may queue at most --max-jobs-per-key unfinished jobs and
upload files of at most --max-file-mb. Keys are read from a file (one per line) or from
$FINETUNE_SERVICE_API_KEYS (comma-separated), never from the command line, and only their
sha256 is kept.
"""



import argparse
import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import queue
import secrets
import socket
import sys
import threading
import time
from pathlib import Path

import edu_qa
from edu_qa import chat_format, training

DEFAULT_DATA_DIR = edu_qa.HERE / "outputs" / "finetune_service"
EMBEDDED_ID = "smollm2-135m-instruct"  # the embedded model, under an OpenAI-style model id
OPEN_STATES = ("validating_files", "queued", "running")
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
BASE_MODELS = {EMBEDDED_ID: edu_qa.EMBEDDED_MODEL}  # model id -> what load_local_model reads
LOADED_MODELS = 3  # chat models kept in memory at once (base + tuned + a checkpoint)


class APIError(Exception):
    """Answered as OpenAI answers errors: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 param: str | None = None, kind: str = "invalid_request_error",
                 retry: bool | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = \
            status, message, code, param, kind
        self.retry = retry

    def response(self):
        from fastapi.responses import JSONResponse
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


# ----------------------------------------------------------------------------------------------
# the store: files, jobs, their events and checkpoints, on disk under data_dir


class Store:
    """Every object is a JSON file, rewritten whole on change; owner is a key's hash."""

    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir)
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

    def save(self, kind: str, record: dict) -> None:
        with self.lock:
            write_json(self.dir / kind / f"{record['object']['id']}.json", record)

    def owned(self, table: dict, object_id: str, owner: str, what: str) -> dict:
        record = table.get(object_id)
        if record is None or record["owner"] != owner:  # another key's object does not exist
            raise APIError(404, f"No such {what}: {object_id}", code=f"{what}_not_found",
                           param=f"{what}_id")
        return record

    def job_dir(self, job_id: str) -> Path:
        return self.dir / "models" / job_id

    def event(self, record: dict, message: str, level: str = "info", data=None,
              kind: str = "message") -> None:
        from openai.types.fine_tuning import FineTuningJobEvent
        with self.lock:
            event = FineTuningJobEvent(id=new_id("ftevent"), object="fine_tuning.job.event",
                                       created_at=now(), level=level, message=message,
                                       type=kind, data=data or {})
            record["events"].append(event.model_dump(mode="json"))
            self.save("jobs", record)


# ----------------------------------------------------------------------------------------------
# training: one job at a time, the LoRA recipe of huggingface_lora.py


class Worker:
    """Two background threads: one validates jobs as they arrive (validating_files ->
    queued), the other trains the queued ones, one at a time, in order."""

    def __init__(self, store: Store, base_models: dict[str, str], use_gpu: bool):
        self.store, self.base_models, self.use_gpu = store, base_models, use_gpu
        self.to_validate, self.to_train = queue.Queue(), queue.Queue()
        self.cancelled, self.examples = set(), {}
        threading.Thread(target=self._run, args=(self.to_validate, self._validate),
                         daemon=True).start()
        threading.Thread(target=self._run, args=(self.to_train, self._train),
                         daemon=True).start()

    def submit(self, job_id: str) -> None:
        self.to_validate.put(job_id)

    def _run(self, jobs: queue.Queue, work):
        while True:
            job_id = jobs.get()
            record = self.store.jobs[job_id]
            if record["object"]["status"] in TERMINAL_STATES:
                continue
            try:
                work(record)
            except Exception as err:  # the job fails with the reason; the service goes on
                self._fail(record, "server_error", f"{work.__name__.strip('_')} failed: "
                           f"{type(err).__name__}: {err}", None)

    def _set(self, record: dict, **fields) -> None:
        with self.store.lock:
            record["object"].update(fields)
            self.store.save("jobs", record)

    def _fail(self, record: dict, code: str, message: str, param: str | None) -> None:
        if record["object"]["status"] in TERMINAL_STATES:  # cancelled meanwhile
            return
        self._set(record, status="failed", finished_at=now(),
                  error={"code": code, "message": message, "param": param})
        self.store.event(record, f"Job failed: {message}", level="error")

    def _examples(self, record: dict, param: str) -> list | None:
        job = record["object"]
        file_id = job[param]
        path = self.store.dir / "files" / f"{file_id}.jsonl"
        examples, problem = chat_format.read_examples(path.read_bytes())
        if problem:
            self._fail(record, f"invalid_{param}", f"{param} {file_id}: {problem}", param)
            return None
        if param == "training_file" and len(examples) < chat_format.MIN_EXAMPLES:
            self._fail(record, "invalid_n_examples", f"training file {file_id} has "
                       f"{len(examples)} examples; fine-tuning needs at least "
                       f"{chat_format.MIN_EXAMPLES}", param)
            return None
        return examples

    def _validate(self, record: dict) -> None:
        """The files are read and checked; the examples travel with the job to training."""
        job = record["object"]
        self.store.event(record, f"Validating training file: {job['training_file']}"
                         + (f" and validation file: {job['validation_file']}"
                            if job["validation_file"] else ""))
        train = self._examples(record, "training_file")
        valid = self._examples(record, "validation_file") if job["validation_file"] else None
        if train is None or (job["validation_file"] and valid is None):
            return
        with self.store.lock:
            if job["status"] != "validating_files":  # cancelled meanwhile
                return
            self._set(record, status="queued")
        self.store.event(record, "Files validated, moving job to queued state")
        self.examples[job["id"]] = (train, valid)
        self.to_train.put(job["id"])

    def _train(self, record: dict) -> None:
        """The LoRA recipe on the job's examples; its log lines become the job's events."""
        import shutil

        import rich.console

        import huggingface_lora as recipe
        edu_qa.quiet_transformers()  # first: importing transformers' Trainer loads bitsandbytes
        from transformers import TrainerCallback
        job, store = record["object"], self.store
        train, valid = self.examples.pop(job["id"])
        hyper = job["method"]["supervised"]["hyperparameters"]
        n_epochs = hyper["n_epochs"] if hyper["n_epochs"] != "auto" else \
            chat_format.default_epochs(len(train))
        defaults = recipe.Config()
        batch_size = defaults.batch_size if hyper["batch_size"] == "auto" \
            else hyper["batch_size"]
        multiplier = 1.0 if hyper["learning_rate_multiplier"] == "auto" \
            else hyper["learning_rate_multiplier"]
        out = store.job_dir(job["id"])
        shutil.rmtree(out / "trainer", ignore_errors=True)  # a restarted job starts over
        cfg = recipe.Config(model=self.base_models[job["model"]], seed=job["seed"],
                            epochs=n_epochs, batch_size=batch_size,
                            learning_rate=defaults.learning_rate * multiplier,
                            output_dir=str(out / "trainer"), execute=self.use_gpu)
        resolved = {"n_epochs": n_epochs, "batch_size": batch_size,
                    "learning_rate_multiplier": multiplier}
        self._set(record, status="running", hyperparameters=resolved,
                  method={"type": "supervised",
                          "supervised": {"hyperparameters": resolved}})
        store.event(record, "Fine-tuning job started")
        env = training.choose_device(cfg.execute, cfg.precision, cfg.quantization)
        tok = edu_qa.load_tokenizer(cfg.model)
        try:
            train_ds, cut = training.chat_dataset(tok, [e["messages"] for e in train],
                                                  cfg.max_length)
            valid_ds = training.chat_dataset(tok, [e["messages"] for e in valid],
                                             cfg.max_length)[0] if valid else None
        except edu_qa.UserError as err:
            return self._fail(record, "invalid_training_file", str(err), "training_file")
        env["train"] = training.plan_training(env, training.model_shape(cfg.model), train_ds,
                                              cfg.batch_size, cfg.epochs)
        if cut:
            store.event(record, f"{len(cut)} training examples (numbers "
                        f"{', '.join(str(i + 1) for i in cut[:20])}) are longer than "
                        f"{cfg.max_length} tokens and were cut", level="warn")
        quiet = rich.console.Console(quiet=True)
        model, tok, _, _ = recipe.load_model(cfg, env, recipe.make_lora_config(cfg), quiet)
        ft_model = ":".join(("ft", job["model"], record["org"], record["suffix"] or "",
                             job["id"].removeprefix("ftjob-")[:8]))
        cancelled = self.cancelled

        class Events(TrainerCallback):  # Trainer's log lines become the job's events
            last = {}

            def on_log(self, args, state, control, logs=None, **kwargs):
                logs = logs or {}
                if "loss" in logs:
                    self.last = {"step": state.global_step, "train_loss": logs["loss"]}
                    store.event(record, f"Step {state.global_step}/{state.max_steps}: "
                                f"training loss={logs['loss']:.4f}", kind="metrics",
                                data=dict(self.last, total_steps=state.max_steps))
                if "eval_loss" in logs:
                    self.last["valid_loss"] = logs["eval_loss"]
                    store.event(record, f"Step {state.global_step}/{state.max_steps}: "
                                f"validation loss={logs['eval_loss']:.4f}", kind="metrics",
                                data={"step": state.global_step, "valid_loss": logs["eval_loss"],
                                      "total_steps": state.max_steps})

            def on_save(self, args, state, control, **kwargs):
                step = state.global_step
                src = Path(args.output_dir) / f"checkpoint-{step}"
                dst = out / "checkpoints" / f"step-{step}"
                dst.mkdir(parents=True, exist_ok=True)
                for name in ("adapter_config.json", "adapter_model.safetensors"):
                    shutil.copy2(src / name, dst / name)
                self.checkpoint(step, dst)

            def on_step_end(self, args, state, control, **kwargs):
                if job["id"] in cancelled:
                    control.should_training_stop = True

            def checkpoint(self, step, folder):
                from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
                metrics = {k: v for k, v in self.last.items() if k != "step"}
                cp = FineTuningJobCheckpoint(
                    id=new_id("ftckpt"), object="fine_tuning.job.checkpoint", created_at=now(),
                    fine_tuned_model_checkpoint=f"{ft_model}:ckpt-step-{step}",
                    fine_tuning_job_id=job["id"], step_number=step,
                    metrics=dict(metrics, step=step)).model_dump(mode="json", exclude_none=True)
                with store.lock:
                    record["checkpoints"].append(dict(cp, folder=str(folder)))
                    store.save("jobs", record)
                store.event(record, f"Checkpoint created at step {step}")

        trainer, trained = recipe.tune(cfg, env, model, tok, train_ds, valid_ds, quiet,
                                       callbacks=[Events()], show_progress=False)
        if job["id"] in self.cancelled:
            self._set(record, status="cancelled", finished_at=now())
            store.event(record, "Job cancelled")
            return
        final = out / "final"
        shutil.rmtree(final, ignore_errors=True)
        shutil.copytree(trained["adapter_dir"], final)
        record["adapter"] = str(final)
        self._set(record, status="succeeded", finished_at=now(), fine_tuned_model=ft_model,
                  trained_tokens=trained["tokens"])
        store.event(record, f"New fine-tuned model created: {ft_model}")
        store.event(record, "The job has successfully completed")


# ----------------------------------------------------------------------------------------------
# chat: the base models and every ft: model, answered in batches


class Models:
    def __init__(self, store: Store, base_models: dict[str, str]):
        self.store, self.base_models = store, base_models
        self.loaded: dict[str, edu_qa.BatchedGenerator] = {}
        self.lock = threading.Lock()

    def visible(self, owner: str) -> list[dict]:
        """(id, owner label, adapter folder or None) of every model this key may call."""
        found = [{"id": name, "owned_by": "system", "adapter": None, "base": name}
                 for name in self.base_models]
        for record in self.store.jobs.values():
            job = record["object"]
            if record["owner"] != owner or job["status"] != "succeeded":
                continue
            found.append({"id": job["fine_tuned_model"], "owned_by": job["organization_id"],
                          "adapter": record["adapter"], "base": job["model"]})
            found += [{"id": cp["fine_tuned_model_checkpoint"],
                       "owned_by": job["organization_id"], "adapter": cp["folder"],
                       "base": job["model"]} for cp in record["checkpoints"]]
        return found

    def generator(self, model_id: str, owner: str) -> edu_qa.BatchedGenerator:
        model = next((m for m in self.visible(owner) if m["id"] == model_id), None)
        if model is None:
            raise APIError(404, f"The model `{model_id}` does not exist or you do not have "
                           "access to it.", code="model_not_found", param="model")
        with self.lock:
            if model_id not in self.loaded:
                if len(self.loaded) >= LOADED_MODELS:
                    self.loaded.pop(next(iter(self.loaded))).close()
                self.loaded[model_id] = edu_qa.BatchedGenerator(
                    lambda: load_chat_model(self.base_models[model["base"]], model["adapter"]),
                    max_batch=32)
            return self.loaded[model_id]


def load_chat_model(source: str, adapter: str | None):
    model, tok = edu_qa.load_local_model(source)
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter)
    return model.eval(), tok


# ----------------------------------------------------------------------------------------------
# the HTTP API


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_app(data_dir: str | Path = DEFAULT_DATA_DIR, base_models: dict[str, str] | None = None,
               api_keys: list[str] | None = None, max_file_mb: float = 50,
               max_jobs_per_key: int = 4, use_gpu: bool = False):
    """The FastAPI application. base_models maps model ids to what edu_qa.load_local_model
    reads (default: the embedded model); with api_keys, requests need one of them."""
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from openai.types import FileObject, Model
    from openai.types.chat import ChatCompletion
    from openai.types.fine_tuning import FineTuningJob
    from starlette.exceptions import HTTPException

    base_models = base_models or BASE_MODELS
    hashes = {key_hash(k) for k in api_keys or []}
    store = Store(data_dir)
    worker = Worker(store, base_models, use_gpu)
    models = Models(store, base_models)
    app = FastAPI(title="Local OpenAI-compatible fine-tuning service")
    app.state.store, app.state.worker = store, worker

    for record in sorted(store.jobs.values(), key=lambda r: r["object"]["created_at"]):
        if record["object"]["status"] in OPEN_STATES:  # it was training when we stopped
            record["object"]["status"] = "validating_files"
            store.event(record, "The service restarted; the job is queued again")
            worker.submit(record["object"]["id"])

    @app.exception_handler(APIError)
    async def api_error(request, err: APIError):
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return APIError(400, f"{where or 'request'}: {first.get('msg', 'invalid request')}",
                        param=where).response()

    @app.exception_handler(Exception)
    async def server_error(request, err: Exception):
        print(edu_qa.visible(f"finetune_service: {request.method} {request.url.path}: "
                             f"{type(err).__name__}: {err}"), file=sys.stderr)
        return APIError(500, f"The server had an error: {type(err).__name__}",
                        kind="server_error").response()

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):
        return APIError(err.status_code, str(err.detail), code=None).response()

    def owner(request: Request) -> str:
        """The caller: a key's hash, or 'local' where the service needs no keys."""
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not hashes:
            return "local"
        digest = key_hash(key) if key else ""
        if not any(hmac.compare_digest(digest, h) for h in hashes):
            raise APIError(401, "Incorrect API key provided. This service needs "
                           "'Authorization: Bearer KEY' with a key it was given.",
                           code="invalid_api_key", param=None)
        return digest

    def org_of(who: str) -> tuple[str, str]:
        """(organization id, the org part of an ft: model name) for a caller."""
        return ("org-local", "local") if who == "local" else (f"org-{who[:12]}", who[:12])

    async def json_body(request: Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise APIError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise APIError(400, "the body must be a JSON object")
        return body

    def listing(items: list[dict], **extra) -> dict:
        return {"object": "list", "data": items, "has_more": False, **extra}

    def page(items: list[dict], after: str | None, limit: int) -> dict:
        ids = [i["id"] for i in items]
        start = ids.index(after) + 1 if after in ids else 0
        chosen = items[start:start + limit]
        return listing(chosen) | {"has_more": start + limit < len(items)}

    # -- files ----------------------------------------------------------------------------
    @app.post("/v1/files")
    async def upload(request: Request):
        who = owner(request)
        limit = int(max_file_mb * 1e6)
        if int(request.headers.get("content-length") or 0) > limit + 1_000_000:
            raise APIError(413, f"File is larger than this service's limit of {max_file_mb} "
                           "MB", code="file_too_large", param="file")
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception as err:  # not multipart, or a broken body
            raise APIError(400, f"the body must be multipart/form-data with 'file' and "
                           f"'purpose' ({err})") from None
        file, purpose = form.get("file"), form.get("purpose")
        if not hasattr(file, "read"):
            raise APIError(400, "'file' is missing: send the JSONL file as 'file'",
                           param="file")
        if purpose != "fine-tune":
            raise APIError(400, f"purpose {purpose!r} is not served here; use 'fine-tune'",
                           param="purpose")
        raw = await file.read(limit + 1)
        if len(raw) > limit:
            raise APIError(413, f"File is larger than this service's limit of {max_file_mb} "
                           "MB", code="file_too_large", param="file")
        obj = FileObject(id=new_id("file"), object="file", bytes=len(raw), created_at=now(),
                         filename=Path(file.filename or "upload.jsonl").name, purpose=purpose,
                         status="processed").model_dump(mode="json", exclude_none=True)
        path = store.dir / "files" / f"{obj['id']}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        record = {"object": obj, "owner": who}
        store.files[obj["id"]] = record
        store.save("files", record)
        return obj

    @app.get("/v1/files")
    def list_files(request: Request, purpose: str | None = None, limit: int = 10000,
                   after: str | None = None, order: str = "desc"):
        who = owner(request)
        items = [r["object"] for r in store.files.values() if r["owner"] == who
                 and (purpose is None or r["object"]["purpose"] == purpose)]
        items.sort(key=lambda o: o["created_at"], reverse=order == "desc")
        result = page(items, after, limit)
        ids = [o["id"] for o in result["data"]]
        return result | {"first_id": ids[0] if ids else None,
                         "last_id": ids[-1] if ids else None}

    @app.get("/v1/files/{file_id}")
    def get_file(file_id: str, request: Request):
        return store.owned(store.files, file_id, owner(request), "file")["object"]

    # -- fine-tuning jobs -------------------------------------------------------------------
    @app.post("/v1/fine_tuning/jobs")
    async def create_job(request: Request):
        who = owner(request)
        body = await json_body(request)
        idem = request.headers.get("idempotency-key")
        with store.lock:
            if idem:  # the same request sent again (a retry, a re-run): the same job
                for record in store.jobs.values():
                    if record["owner"] == who and record.get("idempotency_key") == idem:
                        return record["object"]
            job = new_job(body, who)
            waiting = sum(r["owner"] == who and r["object"]["status"] in OPEN_STATES
                          for r in store.jobs.values())
            if waiting >= max_jobs_per_key:
                raise APIError(429, f"{waiting} jobs of this key are not finished; this "
                               f"service queues at most {max_jobs_per_key} per key. Wait for "
                               "one or cancel one.", code="too_many_jobs", retry=False,
                               kind="rate_limit_exceeded")
            record = {"object": job, "owner": who, "idempotency_key": idem, "events": [],
                      "checkpoints": [], "org": org_of(who)[1], "suffix": body.get("suffix"),
                      "adapter": None}
            store.jobs[job["id"]] = record
            store.save("jobs", record)
        store.event(record, f"Created fine-tuning job: {job['id']}")
        worker.submit(job["id"])
        return job

    def new_job(body: dict, who: str) -> dict:
        model = body.get("model")
        if model not in base_models:
            raise APIError(400, f"Model {model!r} is not available for fine-tuning here; this "
                           f"service fine-tunes: {', '.join(base_models)}",
                           code="model_not_available", param="model")
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
        method = body.get("method") or {"type": "supervised"}
        if method.get("type") != "supervised":
            raise APIError(400, "only the supervised method is served here", param="method")
        given = (method.get("supervised") or {}).get("hyperparameters") \
            or body.get("hyperparameters") or {}
        hyper = {}
        for name, kind, low, high in (("n_epochs", int, 1, 50), ("batch_size", int, 1, 256),
                                      ("learning_rate_multiplier", float, 1e-3, 100)):
            value = given.get(name, "auto")
            if value != "auto" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or (kind is int and value != int(value))
                                    or not low <= value <= high):
                raise APIError(400, f"hyperparameters.{name} must be 'auto' or a number from "
                               f"{low} to {high}", param=f"hyperparameters.{name}")
            hyper[name] = value if value == "auto" else kind(value)
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or len(suffix) > 64
                                   or ":" in suffix):
            raise APIError(400, "suffix must be a string of at most 64 characters, no ':'",
                           param="suffix")
        # as OpenAI does: a job without a seed gets one, reported on the job, so that any
        # job can be trained again to the same weights
        seed = body.get("seed")
        if seed is None:
            seed = secrets.randbelow(2**31)
        elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise APIError(400, "seed must be an integer from 0 to 2147483647", param="seed")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16 or
                                     not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in metadata.items())):
            raise APIError(400, "metadata: at most 16 string keys and values", param="metadata")
        job = FineTuningJob(
            id=new_id("ftjob"), object="fine_tuning.job", created_at=now(), error=None,
            fine_tuned_model=None, finished_at=None, hyperparameters=hyper, model=model,
            organization_id=org_of(who)[0], result_files=[], status="validating_files",
            trained_tokens=None, training_file=files["training_file"],
            validation_file=files.get("validation_file"),
            seed=seed, metadata=metadata,
            method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
        ).model_dump(mode="json", exclude_unset=True)  # what is given, nulls included
        return job

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(request: Request, after: str | None = None, limit: int = 20):
        who = owner(request)
        wanted = {k[9:-1]: v for k, v in request.query_params.items()
                  if k.startswith("metadata[") and k.endswith("]")}
        items = [r["object"] for r in store.jobs.values() if r["owner"] == who and all(
            (r["object"].get("metadata") or {}).get(k) == v for k, v in wanted.items())]
        items.sort(key=lambda o: o["created_at"], reverse=True)
        return page(items, after, limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def get_job(job_id: str, request: Request):
        return store.owned(store.jobs, job_id, owner(request), "job")["object"]

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def job_events(job_id: str, request: Request, after: str | None = None,
                   limit: int = Query(20, ge=1, le=10000)):
        record = store.owned(store.jobs, job_id, owner(request), "job")
        with store.lock:
            events = list(reversed(record["events"]))  # newest first, as OpenAI lists them
        return page(events, after, limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def job_checkpoints(job_id: str, request: Request, after: str | None = None,
                        limit: int = Query(10, ge=1, le=10000)):
        record = store.owned(store.jobs, job_id, owner(request), "job")
        with store.lock:
            cps = [{k: v for k, v in cp.items() if k != "folder"}
                   for cp in reversed(record["checkpoints"])]
        return page(cps, after, limit)

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, request: Request):
        record = store.owned(store.jobs, job_id, owner(request), "job")
        with store.lock:
            job = record["object"]
            if job["status"] in TERMINAL_STATES:
                raise APIError(400, f"Job {job_id} is already {job['status']}; only a "
                               "job that has not finished can be cancelled",
                               code="job_not_cancellable", param="fine_tuning_job_id")
            worker.cancelled.add(job_id)
            if job["status"] != "running":  # not training yet: cancelled at once
                job.update(status="cancelled", finished_at=now())
                store.save("jobs", record)
                store.event(record, "Job cancelled")
        return job

    # -- models and chat ----------------------------------------------------------------------
    @app.get("/v1/models")
    def list_models(request: Request):
        return listing([Model(id=m["id"], object="model", created=0, owned_by=m["owned_by"])
                        .model_dump(mode="json", exclude_none=True)
                        for m in models.visible(owner(request))])

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        import asyncio
        who = owner(request)
        body = await json_body(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str) for m in messages):
            raise APIError(400, "messages must be a non-empty list of {role, content} with "
                           "text content", param="messages")
        if body.get("stream"):
            raise APIError(400, "streaming is not served here; send stream=false",
                           param="stream")
        if body.get("n", 1) != 1:
            raise APIError(400, "only n=1 is served here", param="n")
        cap = body.get("max_completion_tokens") or body.get("max_tokens") or 256
        if not isinstance(cap, int) or not 1 <= cap <= 2048:
            raise APIError(400, "max_completion_tokens must be from 1 to 2048",
                           param="max_completion_tokens")
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(s for s in stop if isinstance(s, str))
        gen = models.generator(str(body.get("model")), who)
        conversation = [{"role": m["role"], "content": m["content"]} for m in messages]
        reply = await asyncio.wrap_future(gen.submit(conversation, cap, stop))
        return ChatCompletion(
            id=new_id("chatcmpl"), object="chat.completion", created=now(),
            model=body["model"], choices=[{
                "index": 0, "logprobs": None,
                "finish_reason": "length" if reply["output_tokens"] >= cap else "stop",
                "message": {"role": "assistant", "content": reply["text"], "refusal": None}}],
            usage={"prompt_tokens": reply["input_tokens"],
                   "completion_tokens": reply["output_tokens"],
                   "total_tokens": reply["input_tokens"] + reply["output_tokens"]},
        ).model_dump(mode="json", exclude_unset=True)

    return app


# ----------------------------------------------------------------------------------------------
# running it: in a thread of the caller (openai_finetune.py), or on its own


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, api_keys: list[str] | None) -> None:
    if not is_loopback(host) and not api_keys:
        raise edu_qa.UserError(f"--host {host} would let anyone on the network train and call "
                               "models here; give API keys (--api-keys-file FILE or "
                               "$FINETUNE_SERVICE_API_KEYS) or stay on 127.0.0.1")


@contextlib.contextmanager
def serve(host: str = "127.0.0.1", port: int = 0, **app_options):
    """Run the service in a background thread of this process; yields its base URL
    (http://HOST:PORT/v1, port 0 = a free one) and stops it on exit."""
    import uvicorn
    check_host(host, app_options.get("api_keys"))
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise edu_qa.UserError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    app = create_app(**app_options)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        if not server.started:
            raise edu_qa.UserError("the local fine-tuning service did not start")
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def read_keys(path: str | None) -> list[str]:
    keys = [k.strip() for k in os.environ.get("FINETUNE_SERVICE_API_KEYS", "").split(",")]
    if path:
        try:
            keys += Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise edu_qa.UserError(f"{path}: cannot read the API keys file ({err})") from None
    return [k.strip() for k in keys if k.strip()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; anything but loopback needs API keys")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="uploaded files, jobs, events and trained adapters")
    parser.add_argument("--api-keys-file", help="one API key per line; with keys, every "
                        "request needs one and each key sees only its own objects")
    parser.add_argument("--max-file-mb", type=float, default=50,
                        help="largest upload accepted from one client (MB)")
    parser.add_argument("--max-jobs-per-key", type=int, default=4,
                        help="unfinished jobs one key may have queued or running")
    parser.add_argument("--base-model", action="append", default=[], metavar="ID=SOURCE",
                        help="also fine-tune SOURCE (a folder or Hugging Face id) as model ID; "
                        f"'{EMBEDDED_ID}' (the embedded SmolLM2-135M-Instruct) is always served")
    parser.add_argument("--gpu", action="store_true",
                        help="train on a GPU when there is one (the recipe's --execute)")
    args = parser.parse_args(argv)
    bases = dict(BASE_MODELS)
    for item in args.base_model:
        name, sep, source = item.partition("=")
        if not sep or not name or not source:
            raise edu_qa.UserError(f"--base-model {item!r}: expected ID=SOURCE")
        bases[name] = source
    keys = read_keys(args.api_keys_file)
    with serve(args.host, args.port, data_dir=args.data_dir, base_models=bases, api_keys=keys,
               max_file_mb=args.max_file_mb, max_jobs_per_key=args.max_jobs_per_key,
               use_gpu=args.gpu) as url:
        print(f"serving OpenAI's fine-tuning API at {url} | models: {', '.join(bases)} | "
              f"keys: {len(keys) or 'none (loopback only)'} | data: {args.data_dir} | "
              "Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(edu_qa.run(main))
