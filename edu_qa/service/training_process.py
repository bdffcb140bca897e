"""The training process: jobs train in a child process of the service, one at a time, so that
the API and chat keep answering while a job trains (training holds its own interpreter, GIL
and CPU threads, not the service's).

The child imports torch, transformers and peft once (seconds) and trains job after job. It
never touches the service's records: for each job it receives a task (the job's examples and
settings) and sends back messages, which the worker applies to the store:

    ("started", None)                         the task arrived: the job is running
    ("event", {message, level, kind, data})   one of the job's events
    ("checkpoint", {step, name, folder, metrics})  a checkpoint's adapter, written whole
    ("done", {adapter_dir, tokens, steps})    the fine-tuned model's adapter, the step metrics
    ("stopped", None)                         cancelled, or the service stopping: nothing kept
    ("unusable", reason)                      the examples cannot be tokenized
    ("error", reason)                         training raised an exception
and, said by the parent: ("crashed", reason) when the child died (killed, out of memory).

A cancelled job is asked to stop at its next step; a child that has not stopped STOP_GRACE_S
later is killed, and the next job starts a new one. A stopping service ends the child at once.
Ctrl-C is the service's to handle: the child ignores it, and the service ends it."""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Callable, Iterator

# spawn, not fork: the service runs threads (uvicorn's, the chat generators'), and a fork
# copies their locks in whatever state they are; spawn starts a clean interpreter everywhere
CONTEXT = multiprocessing.get_context("spawn")
STOP_GRACE_S = 5  # a step of the embedded model takes a few seconds on a laptop CPU
ENDS = ("done", "stopped", "unusable", "error", "crashed")  # a job's last message


class TrainingProcess:
    """The service's handle on its child process that trains jobs."""

    def __init__(self):
        self.conn, child_end = CONTEXT.Pipe()
        self.stop = CONTEXT.Event()  # set: the job in training stops at its next step
        self.process = CONTEXT.Process(target=train_jobs, args=(child_end, self.stop),
                                       name="finetune-service-training", daemon=True)
        self.process.start()
        child_end.close()  # the child's end lives in the child: its death closes the pipe

    def alive(self) -> bool:
        return self.process.is_alive()

    def train(self, task: dict, stopped: Callable[[], bool]) -> Iterator[tuple]:
        """The child's messages about one job, as they come, ending with one of ENDS."""
        self.stop.clear()
        self.conn.send(task)
        asked_at = None  # when the child was asked to stop
        while True:
            if self.conn.poll(0.1):  # a message, or the child's end closed (it died)
                try:
                    message = self.conn.recv()
                except (EOFError, OSError):
                    yield from self.died(stopped)
                    return
                yield message
                if message[0] in ENDS:
                    return
            elif not self.process.is_alive():
                yield from self.died(stopped)
                return
            if stopped() and asked_at is None:
                self.stop.set()
                asked_at = time.monotonic()
            elif asked_at is not None and time.monotonic() - asked_at > STOP_GRACE_S:
                self.end()  # not stopped at its step: ended, and nothing it wrote is kept
                yield ("stopped", None)
                return

    def died(self, stopped: Callable[[], bool]) -> Iterator[tuple]:
        self.process.join(5)
        if stopped():  # the job was cancelled, or the service stops: nothing to report
            yield ("stopped", None)
            return
        code = self.process.exitcode
        if code == -9:  # SIGKILL (not named: Windows has no signal.SIGKILL)
            why = ("killed by signal 9, SIGKILL, which the system sends when memory runs out; "
                   "try fewer or shorter examples, or a smaller batch_size")
        else:
            why = f"killed by signal {-code}" if code and code < 0 else f"exit status {code}"
        yield ("crashed", f"the training process ended unexpectedly ({why})")

    def terminate(self) -> None:
        """The child ends now, whatever it is doing (the service is stopping: a job in
        training stays "running", to be trained again by a restarted service)."""
        self.process.terminate()

    def end(self) -> None:
        """The child ends: asked first (between jobs it is waiting for the next), then
        killed if it has not ended within a few seconds."""
        try:
            self.conn.send(None)
        except OSError:
            pass  # already gone
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def train_jobs(conn, stop) -> None:
    """The child: trains each task it receives, sending its messages, until None comes or
    the service is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the service, which ends us
    import edu_qa
    edu_qa.quiet_transformers()  # first: importing training loads bitsandbytes, which warns
    from . import training
    # CPU threads: torch's default (one per core), as when training ran in the service's own
    # process. Holding training to 1 thread on 2 cores was measured (benchmarks/README.md, "A
    # class at once"): chat answered no faster, and the adapters came out a few ulps apart, so
    # the same seed would no longer give the same checkpoints as before.
    service = multiprocessing.parent_process()

    def stopped() -> bool:  # asked to stop, or the service died without asking
        return stop.is_set() or not service.is_alive()

    while True:
        try:
            task = conn.recv()
        except EOFError:  # the service is gone
            return
        if task is None:
            return
        conn.send(("started", None))
        examples = task.pop("train"), task.pop("valid"), task.pop("hyper")
        run = training.JobRun(**task, stopped=stopped, send=conn.send)
        try:
            trained = training.train(run, *examples)
        except training.UnusableExamples as err:
            conn.send(("unusable", str(err)))
            continue
        except Exception as err:  # the job fails with the reason; the next job may train
            conn.send(("error", f"{type(err).__name__}: {err}"))
            continue
        conn.send(("stopped", None) if trained is None else ("done", {
            "adapter_dir": str(trained.adapter_dir), "tokens": trained.tokens,
            "steps": trained.steps}))
