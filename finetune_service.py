"""A local fine-tuning service that speaks OpenAI's API and really trains.

    python -m finetune_service --port 8000          # this machine only (127.0.0.1), no keys
    python -m finetune_service --host 0.0.0.0 --port 8000 --api-keys-file keys.txt  # a class

openai_finetune.py starts one in its own process on 127.0.0.1 (a free port) when it runs
without --execute, so the cloud workflow (upload a file, start a job, watch its events and
checkpoints, call the ft: model) runs for real with the official SDK and no OpenAI account.
Point any OpenAI client at it with base_url="http://HOST:PORT/v1".

What it serves, with OpenAI's request and response shapes (bodies are built from the openai
SDK's own types, so the SDK parses exactly what OpenAI would send):
    POST /v1/files (purpose=fine-tune), GET /v1/files, GET|DELETE /v1/files/{id},
    GET /v1/files/{id}/content
    POST /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs (list, metadata filter),
    GET /v1/fine_tuning/jobs/{id}, .../events, .../checkpoints, POST .../cancel
    GET /v1/models, GET /v1/models/{id}, DELETE /v1/models/{id} (your own ft: models),
    POST /v1/chat/completions (the base models and every ft: model)
There are no /docs, /redoc or /openapi.json pages: they would be served to anyone without a
key and load their JavaScript from a CDN. OpenAI's own API reference describes these routes.

A job goes validating_files -> queued -> running -> succeeded | failed | cancelled. Validation
uses chat_format, the same checks as the script's step 2, and then renders every example
with the base model's chat template, so a file that passes validation is one training can
use. Training is the LoRA recipe of huggingface_lora.py, called (not copied), one job at a
time; a cancelled job is "cancelled" at once and its training stops at the next step.
OpenAI's hyperparameters map onto it like this:
    n_epochs                 -> epochs; "auto": OpenAI's rule (chat_format.default_epochs)
    batch_size               -> batch_size; "auto": the recipe's default
    learning_rate_multiplier -> times the recipe's learning rate; "auto": 1
    seed                     -> seed (LoRA's initial weights, data order, dropout); a job
                                without one gets one, reported on the job
OpenAI's model names (gpt-3.5-turbo, gpt-4o-mini, gpt-4o, gpt-4.1 and their dated versions)
are accepted too, so code written for OpenAI runs unchanged: each trains a local stand-in,
the first base model unless --serve-as NAME=BASE says otherwise. The job keeps the name asked
for, and its first event says which local model really trains.
An event is written for every logged training loss and every validation loss, and a
checkpoint (a LoRA adapter, callable as ft:...:ckpt-step-N) at the end of every epoch.
Chat answers are greedy, whatever temperature is asked for: the lesson compares models, not
samples. Everything lives under --data-dir, so a restarted service keeps its files, jobs and
models, and queues again a job that was training when it stopped. One service at a time may
use a data directory: it holds a lock on DATA_DIR/service.lock (with its process id inside)
while it runs, and a second one refuses to start.

Sharing one machine's service with a class: it binds to 127.0.0.1 unless --host says
otherwise, and on any other address it refuses to start without API keys. Without keys it
answers only requests addressed to a loopback name (Host header) and not sent by a web page
from elsewhere (Origin header): a web page you visit cannot reach it, not even by DNS
rebinding. With keys, a request without a valid "Authorization: Bearer KEY" gets 401, as at
OpenAI; each key sees only its own files, jobs and models; each key may queue at most
--max-jobs-per-key unfinished jobs, upload files of at most --max-file-mb and keep at most
--max-storage-mb of files. A JSON body may be at most 1 MB. Bodies are measured while they
are read, so an oversized one is refused (413) before it is stored. Keys are read from a file
(one per line; blank lines and lines starting with # are skipped) or from
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
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import edu_qa
from edu_qa import chat_format, training

DEFAULT_DATA_DIR = edu_qa.HERE / "outputs" / "finetune_service"
EMBEDDED_ID = "smollm2-135m-instruct"  # the embedded model, under an OpenAI-style model id
OPEN_STATES = ("validating_files", "queued", "running")
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
BASE_MODELS = {EMBEDDED_ID: edu_qa.EMBEDDED_MODEL}  # model id -> what load_local_model reads
LOADED_MODELS = 3  # chat models kept in memory at once (base + tuned + a checkpoint)
# OpenAI's fine-tunable model names (and their dated versions, NAME-2024-07-18): accepted by
# jobs.create and trained on a local stand-in, so code written for OpenAI runs unchanged
OPENAI_MODELS = ("gpt-3.5-turbo", "gpt-4o-mini", "gpt-4o", "gpt-4.1")
MAX_JSON_BYTES = 1_000_000  # a JSON body: a job or a chat; far more than either needs
MULTIPART_OVERHEAD = 1_000_000  # an upload's body: the file, plus its form fields and headers
LOCK_FILE = "service.lock"  # in the data directory: one service at a time uses it


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


def lock_data_dir(data_dir: Path):
    """An exclusive lock on DATA_DIR/service.lock, held while the service runs (the open file
    is the lock: closing it releases it), with this process's id written inside, so that a
    second service on the same directory refuses to start and says which process holds it.
    Where there is no fcntl (Windows), the id is written and nothing is locked."""
    try:
        import fcntl
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


class Store:
    """Every object is a JSON file, rewritten whole on change; owner is a key's hash. The
    data directory is locked from here to close()."""

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


def unique_steps(checkpoints: list[dict]) -> list[dict]:
    """One checkpoint per step, the latest: a job trained again (after a restart) saves its
    steps again."""
    return list({cp["step_number"]: cp for cp in checkpoints}.values())


# ----------------------------------------------------------------------------------------------
# training: one job at a time, the LoRA recipe of huggingface_lora.py


class Worker:
    """Two background threads: one validates jobs as they arrive (validating_files ->
    queued), the other trains the queued ones, one at a time, in order."""

    def __init__(self, store: Store, base_models: dict[str, str], use_gpu: bool):
        self.store, self.base_models, self.use_gpu = store, base_models, use_gpu
        self.to_validate, self.to_train = queue.Queue(), queue.Queue()
        self.cancelled, self.examples = set(), {}
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=args, daemon=True) for args in
                        ((self.to_validate, self._validate), (self.to_train, self._train))]
        for thread in self.threads:
            thread.start()

    def submit(self, job_id: str) -> None:
        self.to_validate.put(job_id)

    def stop(self, timeout: float = 30) -> None:
        """The service stops: training stops at its next step, leaving the job "running" on
        disk (a restarted service trains it again), and both threads end."""
        self.stopping.set()
        self.to_validate.put(None)
        self.to_train.put(None)
        for thread in self.threads:
            thread.join(timeout)

    def _run(self, jobs: queue.Queue, work):
        while True:
            job_id = jobs.get()
            if job_id is None:  # stop()
                return
            record = self.store.jobs[job_id]
            if record["object"]["status"] in TERMINAL_STATES:  # cancelled while it waited
                self.examples.pop(job_id, None)
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
        with self.store.lock:
            if record["object"]["status"] in TERMINAL_STATES:  # cancelled meanwhile
                return
            self.store.event(record, f"Job failed: {message}", level="error")
            self._set(record, status="failed", finished_at=now(),
                      error={"code": code, "message": message, "param": param})

    def _examples(self, record: dict, param: str, tok) -> list | None:
        """The file's examples, if OpenAI's format rules accept them and training can use
        every one of them; otherwise the job fails, naming the first bad line or example."""
        job = record["object"]
        file_id = job[param]
        path = self.store.dir / "files" / f"{file_id}.jsonl"
        examples, problem = chat_format.read_examples(path.read_bytes())
        if not problem:
            problem = next((f"example {number}: {why}" for number, example
                            in enumerate(examples, start=1) if (why := untrainable(example, tok))),
                           None)
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
        tok = edu_qa.load_tokenizer(self.base_models[base_of(record)])
        train = self._examples(record, "training_file", tok)
        valid = self._examples(record, "validation_file", tok) if job["validation_file"] \
            else None
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
        cfg = recipe.Config(model=self.base_models[base_of(record)], seed=job["seed"],
                            epochs=n_epochs, batch_size=batch_size,
                            learning_rate=defaults.learning_rate * multiplier,
                            output_dir=str(out / "trainer"), execute=self.use_gpu)
        resolved = {"n_epochs": n_epochs, "batch_size": batch_size,
                    "learning_rate_multiplier": multiplier}
        with store.lock:
            if job["status"] in TERMINAL_STATES:  # cancelled while it was queued
                return
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
        cancelled, stopping = self.cancelled, self.stopping

        def stopped() -> bool:  # cancelled, or the service is stopping
            return job["id"] in cancelled or stopping.is_set()

        class Events(TrainerCallback):  # Trainer's log lines become the job's events
            last = {}

            def on_log(self, args, state, control, logs=None, **kwargs):
                logs = logs or {}
                if stopped():  # nothing is reported after "Job cancelled"
                    return
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
                if stopped():
                    return
                step = state.global_step
                src = Path(args.output_dir) / f"checkpoint-{step}"
                dst = out / "checkpoints" / f"step-{step}"
                dst.mkdir(parents=True, exist_ok=True)
                for name in ("adapter_config.json", "adapter_model.safetensors"):
                    shutil.copy2(src / name, dst / name)
                self.checkpoint(step, dst)

            def on_step_end(self, args, state, control, **kwargs):
                if stopped():
                    control.should_training_stop = True

            def checkpoint(self, step, folder):
                from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
                metrics = {k: v for k, v in self.last.items() if k != "step"}
                cp = FineTuningJobCheckpoint(
                    id=new_id("ftckpt"), object="fine_tuning.job.checkpoint", created_at=now(),
                    fine_tuned_model_checkpoint=f"{ft_model}:ckpt-step-{step}",
                    fine_tuning_job_id=job["id"], step_number=step,
                    metrics=dict(metrics, step=step)).model_dump(mode="json", exclude_none=True)
                with store.lock:  # a job trained again replaces its earlier run's checkpoints
                    record["checkpoints"] = unique_steps(
                        record["checkpoints"] + [dict(cp, folder=str(folder))])
                    store.save("jobs", record)
                store.event(record, f"Checkpoint created at step {step}")

        if stopped():  # cancelled while the model loaded
            return
        trainer, trained = recipe.tune(cfg, env, model, tok, train_ds, valid_ds, quiet,
                                       callbacks=[Events()], show_progress=False)
        if stopped():  # "cancelled" already (cancel_job), or "running" for a restart
            return
        final = out / "final"
        shutil.rmtree(final, ignore_errors=True)
        shutil.copytree(trained["adapter_dir"], final)
        record["adapter"] = str(final)
        store.event(record, f"New fine-tuned model created: {ft_model}")
        store.event(record, "The job has successfully completed")
        # the status last: a client that sees "succeeded" finds every event already there
        self._set(record, status="succeeded", finished_at=now(), fine_tuned_model=ft_model,
                  trained_tokens=trained["tokens"])


def base_of(record: dict) -> str:
    """The local base model a job trains: the model it asked for, or that name's stand-in."""
    return record.get("base") or record["object"]["model"]


def untrainable(example: dict, tok) -> str | None:
    """Why training cannot use an example that OpenAI's format rules accept, or None: this
    service trains on text turns only (not a function_call with content null), and every
    example must render in the base model's chat template, as training renders it."""
    for message in example["messages"]:
        if not isinstance(message["content"], str):
            return (f"a {message['role']} message has content null (a function_call); this "
                    "service trains on text messages only")
    try:
        tok.apply_chat_template(example["messages"], tokenize=False)
    except Exception as err:  # a template error of any kind: the example cannot be trained
        return f"the base model's chat template cannot render it ({type(err).__name__}: {err})"
    return None


# ----------------------------------------------------------------------------------------------
# chat: the base models and every ft: model, answered in batches


class Models:
    def __init__(self, store: Store, base_models: dict[str, str]):
        self.store, self.base_models = store, base_models
        self.loaded: dict[str, edu_qa.BatchedGenerator] = {}
        self.lock = threading.Lock()

    def visible(self, owner: str) -> list[dict]:
        """(id, owner label, adapter folder or None, base, job record or None) of every model
        this key may call: the base models, and its own ft: models and checkpoints that it
        has not deleted."""
        found = [{"id": name, "owned_by": "system", "adapter": None, "base": name,
                  "record": None} for name in self.base_models]
        with self.store.lock:
            for record in self.store.jobs.values():
                job = record["object"]
                if record["owner"] != owner or job["status"] != "succeeded":
                    continue
                tuned = [(job["fine_tuned_model"], record["adapter"])] + [
                    (cp["fine_tuned_model_checkpoint"], cp["folder"])
                    for cp in record["checkpoints"]]
                found += [{"id": model_id, "owned_by": job["organization_id"],
                           "adapter": adapter, "base": base_of(record), "record": record}
                          for model_id, adapter in tuned
                          if model_id not in record.get("deleted_models", ())]
        return found

    def find(self, model_id: str, owner: str) -> dict:
        model = next((m for m in self.visible(owner) if m["id"] == model_id), None)
        if model is None:
            raise APIError(404, f"The model `{model_id}` does not exist or you do not have "
                           "access to it.", code="model_not_found", param="model")
        return model

    def delete(self, model_id: str, owner: str) -> None:
        """An ft: model or checkpoint of this key's: its adapter is removed from disk and
        from memory; the job that made it keeps its record."""
        model = self.find(model_id, owner)
        record = model["record"]
        if record is None:
            raise APIError(403, f"{model_id} is a base model of this service; only your own "
                           "fine-tuned models can be deleted", code="model_not_deletable",
                           param="model")
        with self.store.lock:
            record.setdefault("deleted_models", []).append(model_id)
            self.store.save("jobs", record)
        with self.lock:
            if model_id in self.loaded:
                self.loaded.pop(model_id).close()
        shutil.rmtree(model["adapter"], ignore_errors=True)

    def generator(self, model_id: str, owner: str) -> edu_qa.BatchedGenerator:
        model = self.find(model_id, owner)
        with self.lock:
            if model_id not in self.loaded:
                if len(self.loaded) >= LOADED_MODELS:
                    self.loaded.pop(next(iter(self.loaded))).close()
                self.loaded[model_id] = edu_qa.BatchedGenerator(
                    lambda: load_chat_model(self.base_models[model["base"]], model["adapter"]),
                    max_batch=160)  # a whole split at once: the scripts send 152
            return self.loaded[model_id]


def load_chat_model(source: str, adapter: str | None):
    model, tok = edu_qa.load_local_model(source)
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter)
    return model.eval(), tok


# ----------------------------------------------------------------------------------------------
# the HTTP API


class BodyLimit:
    """ASGI middleware: a request body larger than max_bytes(path) is refused with 413, in
    OpenAI's error shape, as soon as that is known: at once when Content-Length says so,
    otherwise (a chunked body) when the bytes read so far pass the limit, so an oversized body
    is never stored whole. (FastAPI's own max_body_size works the same way but answers a
    declared size in plain text, which the SDK cannot show as an OpenAI error.)"""

    def __init__(self, app, max_bytes):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.datastructures import Headers
        limit = self.max_bytes(scope["path"])
        too_large = APIError(413, f"The request body is larger than this service accepts for "
                             f"{scope['path']} ({limit / 1e6:g} MB)", code="request_too_large")
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await too_large.response()(scope, receive, send)
        read = 0

        async def receive_counted():
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > limit:
                raise too_large  # inside the endpoint: answered by its APIError handler
            return message

        await self.app(scope, receive_counted, send)


def host_of(url: str) -> str:
    """The host name of a Host or Origin header (any port, IPv6 in brackets), or ''."""
    try:
        return urlsplit(url if "//" in url else f"//{url}").hostname or ""
    except ValueError:
        return ""


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_app(data_dir: str | Path = DEFAULT_DATA_DIR, base_models: dict[str, str] | None = None,
               api_keys: list[str] | None = None, max_file_mb: float = 50,
               max_jobs_per_key: int = 4, use_gpu: bool = False, max_storage_mb: float = 50,
               serve_as: dict[str, str] | None = None):
    """The FastAPI application. base_models maps model ids to what edu_qa.load_local_model
    reads (default: the embedded model); with api_keys, requests need one of them. serve_as
    maps OpenAI model names to the base model that stands in for them (default: each of
    OPENAI_MODELS to the first base model). The data directory stays locked until
    app.state.store.close()."""
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse
    from openai.types import FileDeleted, FileObject, Model, ModelDeleted
    from openai.types.chat import ChatCompletion
    from openai.types.fine_tuning import FineTuningJob
    from starlette.exceptions import HTTPException

    base_models = base_models or BASE_MODELS
    stand_ins = {name: next(iter(base_models)) for name in OPENAI_MODELS} | (serve_as or {})
    unknown = sorted({base for base in stand_ins.values() if base not in base_models})
    if unknown:
        raise edu_qa.UserError(f"--serve-as: {', '.join(unknown)} is not a base model here; "
                               f"the base models are: {', '.join(base_models)}")
    hashes = {key_hash(k) for k in api_keys or []}
    store = Store(data_dir)
    worker = Worker(store, base_models, use_gpu)
    models = Models(store, base_models)

    def local_callers_only(request: Request) -> None:
        """Without keys, only programs on this machine may call: the request must be addressed
        to a loopback name, and not come from a web page of another origin (a page you visit
        could otherwise post to 127.0.0.1, or reach it by DNS rebinding)."""
        origin = request.headers.get("origin")
        if not is_loopback(host_of(request.headers.get("host", ""))) or \
                (origin is not None and not is_loopback(host_of(origin))):
            raise APIError(403, "Without API keys this service answers only programs on its "
                           "own machine (Host and Origin must be 127.0.0.1, localhost or "
                           "[::1]); start it with keys to share it", code="forbidden_host")

    # no /docs, /redoc or /openapi.json: they would need no key, and load JavaScript from a CDN
    app = FastAPI(title="Local OpenAI-compatible fine-tuning service", docs_url=None,
                  redoc_url=None, openapi_url=None,
                  dependencies=[] if hashes else [Depends(local_callers_only)])
    upload_limit = int(max_file_mb * 1e6)
    app.add_middleware(BodyLimit, max_bytes=lambda path: upload_limit + MULTIPART_OVERHEAD
                       if path == "/v1/files" else MAX_JSON_BYTES)
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
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
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
        too_large = APIError(413, f"File is larger than this service's limit of "
                             f"{max_file_mb} MB", code="file_too_large", param="file")
        try:  # BodyLimit stops reading at upload_limit + MULTIPART_OVERHEAD bytes
            form = await request.form(max_files=1, max_fields=10)
        except APIError:
            raise too_large from None
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
        raw = await file.read(upload_limit + 1)
        if len(raw) > upload_limit:
            raise too_large
        obj = FileObject(id=new_id("file"), object="file", bytes=len(raw), created_at=now(),
                         filename=Path(file.filename or "upload.jsonl").name, purpose=purpose,
                         status="processed").model_dump(mode="json", exclude_none=True)
        with store.lock:
            used = sum(r["object"]["bytes"] for r in store.files.values() if r["owner"] == who)
            if used + len(raw) > max_storage_mb * 1e6:
                raise APIError(429, f"This key's files would take more than this service's "
                               f"storage quota of {max_storage_mb} MB ({used / 1e6:.3g} MB "
                               "used); delete files you no longer need (DELETE /v1/files/ID)",
                               code="insufficient_quota", kind="insufficient_quota",
                               retry=False)
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

    @app.get("/v1/files/{file_id}/content")
    def file_content(file_id: str, request: Request):
        store.owned(store.files, file_id, owner(request), "file")
        return FileResponse(store.dir / "files" / f"{file_id}.jsonl",
                            media_type="application/octet-stream")

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str, request: Request):
        who = owner(request)
        with store.lock:
            store.owned(store.files, file_id, who, "file")
            users = [r["object"]["id"] for r in store.jobs.values()
                     if r["object"]["status"] in OPEN_STATES and file_id in
                     (r["object"]["training_file"], r["object"]["validation_file"])]
            if users:  # a restarted service reads the file again to validate the job
                raise APIError(400, f"File {file_id} is used by job {users[0]}, which has not "
                               "finished; cancel the job or wait for it", code="file_in_use",
                               param="file_id")
            del store.files[file_id]
            store.remove("files", file_id)
            (store.dir / "files" / f"{file_id}.jsonl").unlink(missing_ok=True)
        return FileDeleted(id=file_id, object="file", deleted=True).model_dump(mode="json")

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
            job, base = new_job(body, who)
            waiting = sum(r["owner"] == who and r["object"]["status"] in OPEN_STATES
                          for r in store.jobs.values())
            if waiting >= max_jobs_per_key:
                raise APIError(429, f"{waiting} jobs of this key are not finished; this "
                               f"service queues at most {max_jobs_per_key} per key. Wait for "
                               "one or cancel one.", code="too_many_jobs", retry=False,
                               kind="rate_limit_exceeded")
            record = {"object": job, "owner": who, "idempotency_key": idem, "events": [],
                      "checkpoints": [], "org": org_of(who)[1], "suffix": body.get("suffix"),
                      "adapter": None, "base": base}
            store.jobs[job["id"]] = record
            store.save("jobs", record)
        store.event(record, f"Created fine-tuning job: {job['id']}" + (
            f"; {job['model']} is trained here as {base} (a local stand-in)"
            if base != job["model"] else ""))
        worker.submit(job["id"])
        return job

    def stand_in(model) -> str:
        """The base model that trains for a requested model: itself, or its stand-in (the
        longest name of serve_as that is the model or the start of a dated version)."""
        if isinstance(model, str) and model in base_models:
            return model
        names = [name for name in stand_ins if isinstance(model, str)
                 and (model == name or model.startswith(f"{name}-"))]
        if not names:
            raise APIError(400, f"Model {model!r} is not available for fine-tuning here; "
                           f"this service fine-tunes: {', '.join(base_models)} (and, on them, "
                           f"{', '.join(stand_ins)})", code="model_not_available",
                           param="model")
        return stand_ins[max(names, key=len)]

    def a_dict(value, param: str) -> dict:
        if not isinstance(value, dict):
            raise APIError(400, f"{param} must be an object", param=param)
        return value

    def new_job(body: dict, who: str) -> tuple[dict, str]:
        """(the job, as OpenAI shows it; the local base model that will train it)."""
        model = body.get("model")
        base = stand_in(model)
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
        method = a_dict(body.get("method") or {"type": "supervised"}, "method")
        if method.get("type") != "supervised":
            raise APIError(400, "only the supervised method is served here", param="method")
        supervised = a_dict(method.get("supervised") or {}, "method.supervised")
        given = a_dict(supervised.get("hyperparameters") or body.get("hyperparameters") or {},
                       "hyperparameters")
        hyper = {}
        for name, kind, low, high in (("n_epochs", int, 1, 50), ("batch_size", int, 1, 256),
                                      ("learning_rate_multiplier", float, 1e-3, 100)):
            value = given.get(name, "auto")
            # the range first: it also turns away NaN and infinity (JSON allows them here)
            if value != "auto" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or not low <= value <= high
                                    or (kind is int and value != int(value))):
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
        return job, base

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
        """Cancelled at once, as OpenAI answers; a job in training stops at its next step."""
        record = store.owned(store.jobs, job_id, owner(request), "job")
        with store.lock:
            job = record["object"]
            if job["status"] in TERMINAL_STATES:
                raise APIError(400, f"Job {job_id} is already {job['status']}; only a "
                               "job that has not finished can be cancelled",
                               code="job_not_cancellable", param="fine_tuning_job_id")
            worker.cancelled.add(job_id)
            store.event(record, "Job cancelled")
            job.update(status="cancelled", finished_at=now())
            store.save("jobs", record)
        return job

    # -- models and chat ----------------------------------------------------------------------
    def model_object(model: dict) -> dict:
        return Model(id=model["id"], object="model", created=0, owned_by=model["owned_by"]) \
            .model_dump(mode="json", exclude_none=True)

    @app.get("/v1/models")
    def list_models(request: Request):
        return listing([model_object(m) for m in models.visible(owner(request))])

    @app.get("/v1/models/{model_id:path}")
    def get_model(model_id: str, request: Request):
        return model_object(models.find(model_id, owner(request)))

    @app.delete("/v1/models/{model_id:path}")
    def delete_model(model_id: str, request: Request):
        models.delete(model_id, owner(request))
        return ModelDeleted(id=model_id, object="model", deleted=True).model_dump(mode="json")

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
        if not isinstance(body.get("model"), str):
            raise APIError(400, "model must be the id of a model (GET /v1/models)",
                           param="model")
        if body.get("stream"):
            raise APIError(400, "streaming is not served here; send stream=false",
                           param="stream")
        if body.get("n", 1) != 1:
            raise APIError(400, "only n=1 is served here", param="n")
        cap = body.get("max_completion_tokens") or body.get("max_tokens") or 256
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 2048:
            raise APIError(400, "max_completion_tokens must be from 1 to 2048",
                           param="max_completion_tokens")
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else stop or []
        if not isinstance(stop, list) or len(stop) > 4 or \
                not all(isinstance(s, str) and s for s in stop):
            raise APIError(400, "stop must be a non-empty string or a list of at most 4 of "
                           "them", param="stop")
        gen = models.generator(body["model"], who)
        conversation = [{"role": m["role"], "content": m["content"]} for m in messages]
        reply = await asyncio.wrap_future(gen.submit(conversation, cap, tuple(stop)))
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
    app = create_app(**app_options)  # first: it locks the data directory
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    try:
        try:
            sock.bind((host, port))
        except OSError as err:
            raise edu_qa.UserError(f"cannot listen on {host}:{port}: {err.strerror}") from None
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            raise edu_qa.UserError("the local fine-tuning service did not start")
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(timeout=5)
        sock.close()
        app.state.worker.stop()
        app.state.store.close()


def read_keys(path: str | None) -> list[str]:
    """Keys from $FINETUNE_SERVICE_API_KEYS (comma-separated) and the keys file (one per
    line; blank lines and # comments skipped). No message ever shows a key, nor the path (a
    key typed where the path goes would be shown)."""
    keys = os.environ.get("FINETUNE_SERVICE_API_KEYS", "").split(",")
    if path:
        try:
            keys += Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise edu_qa.UserError(f"cannot read the file given as --api-keys-file: "
                                   f"{err.strerror}") from None
        except UnicodeDecodeError:
            raise edu_qa.UserError("the file given as --api-keys-file is not UTF-8 text") \
                from None
    return [k.strip() for k in keys if k.strip() and not k.strip().startswith("#")]


def name_to_value(items: list[str], option: str, form: str) -> dict[str, str]:
    """An option given any number of times as NAME=VALUE -> {NAME: VALUE}."""
    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise edu_qa.UserError(f"{option} {item!r}: expected {form}")
        found[name] = value
    return found


def parse_args(argv=None) -> argparse.Namespace:
    # allow_abbrev=False: '--api-key SECRET' must not be taken for '--api-keys-file SECRET'
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], allow_abbrev=False,
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
    parser.add_argument("--max-storage-mb", type=float, default=50,
                        help="most that one key's uploaded files may take together (MB)")
    parser.add_argument("--max-jobs-per-key", type=int, default=4,
                        help="unfinished jobs one key may have queued or running")
    parser.add_argument("--base-model", action="append", default=[], metavar="ID=SOURCE",
                        help="also fine-tune SOURCE (a folder or Hugging Face id) as model ID; "
                        f"'{EMBEDDED_ID}' (the embedded SmolLM2-135M-Instruct) is always served")
    parser.add_argument("--serve-as", action="append", default=[], metavar="NAME=BASE",
                        help="train the base model BASE when a job asks for OpenAI's model "
                        f"NAME (default: {', '.join(OPENAI_MODELS)} train '{EMBEDDED_ID}')")
    parser.add_argument("--gpu", action="store_true",
                        help="train on a GPU when there is one (the recipe's --execute)")
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would repeat them all, and one may be a key: name the options only
        options = [word.split("=")[0] for word in unknown if word.startswith("--")]
        parser.error(f"unrecognized arguments: {' '.join(options) or '(not shown)'}; values "
                     "are not repeated here, in case one is a key (keys are read only from "
                     "--api-keys-file or $FINETUNE_SERVICE_API_KEYS)")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    bases = BASE_MODELS | name_to_value(args.base_model, "--base-model", "ID=SOURCE")
    serve_as = name_to_value(args.serve_as, "--serve-as", "NAME=BASE")
    keys = read_keys(args.api_keys_file)
    with serve(args.host, args.port, data_dir=args.data_dir, base_models=bases, api_keys=keys,
               max_file_mb=args.max_file_mb, max_jobs_per_key=args.max_jobs_per_key,
               max_storage_mb=args.max_storage_mb, serve_as=serve_as, use_gpu=args.gpu) as url:
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
