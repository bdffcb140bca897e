"""A job's way from its creation to its end: validating_files -> queued -> running ->
succeeded | failed | cancelled, in two background threads, one that validates jobs as they
arrive and one that trains the queued ones, one at a time, in order.

Validation uses chat_format, the same checks as the OpenAI script's step 2, and then renders
every example with the base model's chat template, so a file that passes validation is one
training can use. Training is training.py's; a cancelled job is "cancelled" at once, and its
training stops at the next step."""

from __future__ import annotations

import queue
import threading

import edu_qa
from edu_qa import chat_format

from .store import TERMINAL_STATES, Store, base_of, now


class Worker:
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

    def stopped(self, job_id: str) -> bool:
        """Training must stop: the job was cancelled, or the service is stopping."""
        return job_id in self.cancelled or self.stopping.is_set()

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
        """The job's training (training.py) on its examples, with the job's status around it:
        running, then succeeded; or left as it is when the job is cancelled or the service
        stops (a restarted service trains it again)."""
        # imported by this thread, when it first trains, not when the service starts:
        # training.py loads torch, transformers and peft (seconds). Quieted first, since
        # importing them loads bitsandbytes, which warns about kernels we do not use.
        edu_qa.quiet_transformers()
        from . import training
        job, store = record["object"], self.store
        train, valid = self.examples.pop(job["id"])
        hyper = training.hyperparameters(job["method"]["supervised"]["hyperparameters"],
                                         len(train))
        with store.lock:
            if job["status"] in TERMINAL_STATES:  # cancelled while it was queued
                return
            self._set(record, status="running", hyperparameters=hyper,
                      method={"type": "supervised", "supervised": {"hyperparameters": hyper}})
        store.event(record, "Fine-tuning job started")
        run = training.JobRun(store, record, self.base_models[base_of(record)],
                              fine_tuned_name(record), self.use_gpu,
                              stopped=lambda: self.stopped(job["id"]))
        try:
            trained = training.train(run, train, valid, hyper)
        except training.UnusableExamples as err:
            return self._fail(record, "invalid_training_file", str(err), "training_file")
        if trained is None:  # "cancelled" already (cancel_job), or "running" for a restart
            return
        record["adapter"] = str(trained.adapter_dir)
        store.event(record, f"New fine-tuned model created: {run.fine_tuned_model}")
        store.event(record, "The job has successfully completed")
        # the status last: a client that sees "succeeded" finds every event already there
        self._set(record, status="succeeded", finished_at=now(),
                  fine_tuned_model=run.fine_tuned_model, trained_tokens=trained.tokens)


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
