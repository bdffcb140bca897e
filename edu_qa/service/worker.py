"""A job's way from its creation to its end: validating_files -> queued -> running ->
succeeded | failed | cancelled. Two threads of the service move jobs along: one validates
jobs as they arrive; the other takes the queued ones in turn (each key's jobs in order, the
keys taking turns: fair_queue.py) and has each trained, one at a time, in the training
process (training_process.py), applying what it reports to the store.

Validation uses chat_format, the same checks as the OpenAI script's step 2, and then renders
every example with the base model's chat template, so a file that passes validation is one
training can use. Training is training.py's, in the child process; the service's records are
written here only, by the API's own process. A cancelled job is "cancelled" at once, and its
training stops at the next step (or its process is ended). A job that succeeds gets a
results file, OpenAI's step metrics as CSV (purpose fine-tune-results), in result_files."""

from __future__ import annotations

import csv
import io
import queue
import threading

from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

import edu_qa
from edu_qa import chat_format
from edu_qa.recipe import LORA

from .fair_queue import FairQueue
from .models import LOADING
from .store import RESULTS_PURPOSE, TERMINAL_STATES, Store, base_of, new_id, now, unique_steps
from .training_process import TrainingProcess

# OpenAI's results file: one row per step, a cell left empty where nothing was measured
STEP_METRICS = ("step", "train_loss", "train_accuracy", "valid_loss",
                "valid_mean_token_accuracy")


class Worker:
    def __init__(self, store: Store, base_models: dict[str, str], use_gpu: bool):
        self.store, self.base_models, self.use_gpu = store, base_models, use_gpu
        self.to_validate = queue.Queue()
        with store.lock:  # each key's last turn, so that a restarted service keeps the order
            turns = {}
            for record in store.jobs.values():
                turns[record["owner"]] = max(turns.get(record["owner"], 0),
                                             record.get("turn", 0))
        self.to_train = FairQueue(turns)
        self.cancelled, self.examples, self.resumed = set(), {}, set()
        self.trainer: TrainingProcess | None = None  # started by the first job to train
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=args, daemon=True) for args in
                        ((self.to_validate.get, self._validate),
                         (self._next_to_train, self._train))]
        for thread in self.threads:
            thread.start()

    def submit(self, job_id: str, resumed: bool = False) -> None:
        """A new job, to validate, then queue; resumed: one that was training when the
        service stopped, which trains again first."""
        if resumed:
            self.resumed.add(job_id)
        self.to_validate.put(job_id)

    def cancel(self, job_id: str) -> None:
        """The job stops: it leaves the queue, or its training stops at the next step."""
        self.cancelled.add(job_id)
        self.to_train.discard(job_id)

    def stop(self, timeout: float = 30) -> None:
        """The service stops: its training process ends at once, leaving the job "running"
        on disk (a restarted service trains it again), and both threads end."""
        self.stopping.set()
        self.to_validate.put(None)
        self.to_train.close()
        if self.trainer:  # now, not at the next step: the job trains again from the start
            self.trainer.terminate()
        for thread in self.threads:
            thread.join(timeout)
        if self.trainer:
            self.trainer.end()

    def stopped(self, job_id: str) -> bool:
        """Training must stop: the job was cancelled, or the service is stopping."""
        return job_id in self.cancelled or self.stopping.is_set()

    def _next_to_train(self) -> str | None:
        """The next job in the fair queue, its turn noted in its record (kept on disk)."""
        taken = self.to_train.get()
        if taken is None:  # stop()
            return None
        job_id, turn = taken
        with self.store.lock:
            self.store.jobs[job_id]["turn"] = turn
        return job_id

    def _run(self, next_job, work):
        while True:
            job_id = next_job()
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
        examples, problem = chat_format.read_examples(self.store.file_path(file_id).read_bytes())
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
        with LOADING:
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
        self.to_train.put(record["owner"], job["id"], first=job["id"] in self.resumed)
        self.resumed.discard(job["id"])

    def _train(self, record: dict) -> None:
        """The job's training, in the training process, with the job's status around it:
        running once the process has it, then succeeded or failed; or left as it is when the
        job is cancelled or the service stops (a restarted service trains it again)."""
        job, store = record["object"], self.store
        train, valid = self.examples.pop(job["id"])
        hyper = hyperparameters(job["method"]["supervised"]["hyperparameters"], len(train))
        if self.stopping.is_set():  # the job trains when the service restarts
            return
        if self.trainer is None or not self.trainer.alive():  # the first job, or it died
            self.trainer = TrainingProcess()
        task = {"data_dir": str(store.dir), "job_id": job["id"], "seed": job["seed"],
                "base_model": self.base_models[base_of(record)],
                "fine_tuned_model": fine_tuned_name(record), "use_gpu": self.use_gpu,
                "train": train, "valid": valid, "hyper": hyper}
        for kind, details in self.trainer.train(task, lambda: self.stopped(job["id"])):
            if self.stopped(job["id"]):  # nothing is reported after "Job cancelled"
                continue
            if kind == "started":  # the training process has it: "running" from now
                with store.lock:
                    self._set(record, status="running", hyperparameters=hyper, method={
                        "type": "supervised", "supervised": {"hyperparameters": hyper}})
                store.event(record, "Fine-tuning job started")
            elif kind == "event":
                store.event(record, **details)
            elif kind == "checkpoint":
                self._checkpoint(record, **details)
            elif kind == "done":
                self._succeed(record, **details)
            elif kind == "unusable":
                self._fail(record, "invalid_training_file", details, "training_file")
            elif kind in ("error", "crashed"):
                self._fail(record, "server_error", f"train failed: {details}", None)

    def _checkpoint(self, record: dict, step: int, name: str, folder: str,
                    metrics: dict) -> None:
        """A checkpoint's adapter, written whole: the job's checkpoint, callable as name."""
        cp = FineTuningJobCheckpoint(
            id=new_id("ftckpt"), object="fine_tuning.job.checkpoint", created_at=now(),
            fine_tuned_model_checkpoint=name, fine_tuning_job_id=record["object"]["id"],
            step_number=step, metrics=dict(metrics, step=step),
        ).model_dump(mode="json", exclude_none=True)
        with self.store.lock:  # a job trained again replaces its earlier run's checkpoints
            record["checkpoints"] = unique_steps(
                record["checkpoints"] + [dict(cp, folder=folder)])
            self.store.save("jobs", record)
        self.store.event(record, f"Checkpoint created at step {step}")

    def _succeed(self, record: dict, adapter_dir: str, tokens: int, steps: list[dict]) -> None:
        """The fine-tuned model, and its step metrics as a results file of the job's owner."""
        store, name = self.store, fine_tuned_name(record)
        results = store.add_file(record["owner"], "step_metrics.csv", RESULTS_PURPOSE,
                                 step_metrics_csv(steps))
        record["adapter"] = adapter_dir
        store.event(record, f"New fine-tuned model created: {name}")
        store.event(record, "The job has successfully completed")
        # the status last: a client that sees "succeeded" finds every event already there
        self._set(record, status="succeeded", finished_at=now(), fine_tuned_model=name,
                  trained_tokens=tokens, result_files=[results["id"]])


def hyperparameters(given: dict, n_examples: int) -> dict:
    """The job's hyperparameters, each 'auto' decided."""
    return {"n_epochs": chat_format.default_epochs(n_examples) if given["n_epochs"] == "auto"
            else given["n_epochs"],
            "batch_size": LORA.batch_size if given["batch_size"] == "auto"
            else given["batch_size"],
            "learning_rate_multiplier": 1.0 if given["learning_rate_multiplier"] == "auto"
            else given["learning_rate_multiplier"]}


def step_metrics_csv(steps: list[dict]) -> bytes:
    """OpenAI's results file: a row per step, numbers to 5 decimals as OpenAI writes them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STEP_METRICS)
    for row in steps:
        writer.writerow(["" if row.get(column) is None else
                         row[column] if column == "step" else round(row[column], 5)
                         for column in STEP_METRICS])
    return out.getvalue().encode()


def fine_tuned_name(record: dict) -> str:
    """ft:MODEL:ORG:SUFFIX:ID, as OpenAI names a fine-tuned model; checkpoints add
    :ckpt-step-N."""
    job = record["object"]
    return ":".join(("ft", job["model"], record["org"], record["suffix"] or "",
                     job["id"].removeprefix("ftjob-")[:8]))


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
