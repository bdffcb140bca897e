"""The local fine-tuning service shared by a class, over 127.0.0.1 on a tiny model: training
runs in its own process (the API answers meanwhile, a crashed one fails only its job), keys
take turns in the training queue (also after a restart), and a job that succeeds lists
OpenAI's step-metrics CSV in result_files."""

import base64
import csv
import io
import multiprocessing
import os
import signal
import time

import pytest

import test_service
from edu_qa.service.fair_queue import FairQueue
from test_service import chat, jsonl, wait_for

service = test_service.service  # the fixture: a service on 127.0.0.1, restartable

OPEN = ("validating_files", "queued")
LONG = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50,
                                                                 "batch_size": 1}}}
SHORT = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}}


def training_processes() -> list:
    return [p for p in multiprocessing.active_children()
            if p.name == "finetune-service-training" and p.is_alive()]


def first_to_leave_the_queue(jobs, timeout=120) -> list[str]:
    """jobs: (client, job) pairs; their statuses when the first of them has left the queue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = [client.fine_tuning.jobs.retrieve(job.id).status for client, job in jobs]
        if any(s not in OPEN for s in now):
            return now
        time.sleep(0.02)
    raise AssertionError(f"none of the jobs left the queue: {now}")


def test_training_runs_in_its_own_process_and_a_killed_one_fails_only_its_job(service):
    _, make = service()
    client = make(max_retries=0)
    train = client.files.create(file=("t.jsonl", jsonl(chat(i) for i in range(12))),
                                purpose="fine-tune")
    doomed = client.fine_tuning.jobs.create(model="tiny", training_file=train.id, method=LONG)
    wait_for(client, doomed.id, states=("running",))
    children = training_processes()
    assert len(children) == 1 and children[0].pid != os.getpid()
    started = time.monotonic()  # the API answers while its training process is busy
    reply = client.chat.completions.create(model="tiny", max_completion_tokens=4,
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.choices and time.monotonic() - started < 30
    assert client.fine_tuning.jobs.retrieve(doomed.id).status == "running"
    os.kill(children[0].pid, signal.SIGKILL)  # as the system does when memory runs out
    doomed = wait_for(client, doomed.id)
    assert doomed.status == "failed" and doomed.error.code == "server_error"
    assert "training process ended unexpectedly (killed by signal 9" in doomed.error.message
    after = wait_for(client, client.fine_tuning.jobs.create(
        model="tiny", training_file=train.id, method=SHORT).id)
    assert after.status == "succeeded", after.error  # the service went on, in a new process
    assert [p.pid for p in training_processes()] != [children[0].pid]


def test_one_keys_jobs_do_not_queue_ahead_of_another_keys_even_after_a_restart(service):
    """Key A creates three jobs, then key B one: B's trains second, not fourth. The service
    stops while A's first trains; restarted, it trains that one first, then B's."""
    _, make = service(api_keys=["key-anna", "key-ben"])
    anna, ben = make("key-anna", max_retries=0), make("key-ben", max_retries=0)
    files = [c.files.create(file=("t.jsonl", jsonl(chat(i) for i in range(12))),
                            purpose="fine-tune") for c in (anna, ben)]
    first = anna.fine_tuning.jobs.create(model="tiny", training_file=files[0].id, method=LONG)
    wait_for(anna, first.id, states=("running",))
    more = [anna.fine_tuning.jobs.create(model="tiny", training_file=files[0].id,
                                         method=SHORT) for _ in range(2)]
    bens = ben.fine_tuning.jobs.create(model="tiny", training_file=files[1].id, method=SHORT)
    for client, job in ((anna, more[0]), (anna, more[1]), (ben, bens)):
        wait_for(client, job.id, states=("queued",))
    service.stop()
    assert training_processes() == []  # stopping the service ends its training process

    _, make = service(api_keys=["key-anna", "key-ben"])
    anna, ben = make("key-anna", max_retries=0), make("key-ben", max_retries=0)
    now = first_to_leave_the_queue([(anna, first), (anna, more[0]), (anna, more[1]),
                                    (ben, bens)])
    # the one it was training first (the others may still be validating)
    assert now[0] == "running" and all(s in OPEN for s in now[1:]), now
    anna.fine_tuning.jobs.cancel(first.id)
    now = first_to_leave_the_queue([(anna, more[0]), (anna, more[1]), (ben, bens)])
    assert now[2] != "queued" and now[1] == "queued", now  # B's job, not A's second
    assert wait_for(ben, bens.id).status == "succeeded"
    assert [wait_for(anna, job.id).status for job in more] == ["succeeded"] * 2


def test_the_fair_queue_serves_the_key_served_longest_ago():
    queue = FairQueue()
    for job in ("a1", "a2", "a3"):
        queue.put("a", job)
    assert queue.get() == ("a1", 1)
    queue.put("b", "b1")
    queue.put("c", "c1")
    queue.put("c", "c2")
    queue.discard("a3")  # cancelled while it waited
    assert [queue.get()[0] for _ in range(4)] == ["b1", "c1", "a2", "c2"]
    # restarted: the turns come from the jobs' records; a job that was training goes first
    again = FairQueue({"a": 7, "b": 5})
    for owner, job in (("a", "a4"), ("b", "b2"), ("c", "c3")):
        again.put(owner, job)
    again.put("a", "a3", first=True)
    assert [again.get() for _ in range(4)] == [("a3", 8), ("c3", 9), ("b2", 10), ("a4", 11)]
    again.close()
    assert again.get() is None


def test_a_job_that_succeeds_lists_openais_step_metrics_csv_in_result_files(service):
    """One file of purpose fine-tune-results: a row per step, the losses the job's events
    report, token accuracies, and the validation figures at each epoch's end; base64-encoded
    as OpenAI sends it (the cookbook decodes it)."""
    import openai
    url, make = service(api_keys=["key-anna", "key-ben"])
    anna, ben = make("key-anna", max_retries=0), make("key-ben", max_retries=0)
    train = anna.files.create(file=("t.jsonl", jsonl(chat(i) for i in range(12))),
                              purpose="fine-tune")
    valid = anna.files.create(file=("v.jsonl", jsonl(chat(i) for i in range(20, 24))),
                              purpose="fine-tune")
    job = wait_for(anna, anna.fine_tuning.jobs.create(
        model="tiny", training_file=train.id, validation_file=valid.id, seed=1,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 4}}}).id)
    assert job.status == "succeeded", job.error
    assert len(job.result_files) == 1
    results = anna.files.retrieve(job.result_files[0])
    assert (results.purpose, results.filename) == ("fine-tune-results", "step_metrics.csv")
    assert results.id in [f.id for f in anna.files.list(purpose="fine-tune-results")]
    # content is not JSON: read by a client without the fixture's OpenAPI check of JSON
    plain = openai.OpenAI(base_url=url, api_key="key-anna", max_retries=0)
    text = base64.b64decode(plain.files.content(results.id).read()).decode()
    assert text.splitlines()[0] == \
        "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(float(r["train_loss"]) > 0 and 0 <= float(r["train_accuracy"]) <= 1
               for r in rows)
    # the validation figures at each epoch's end only; the cells between are empty
    assert [r["step"] for r in rows if r["valid_loss"]] == ["3", "6"]
    assert all(0 <= float(r["valid_mean_token_accuracy"]) <= 1 for r in rows if r["valid_loss"])
    assert all(r["valid_mean_token_accuracy"] == "" for r in rows if not r["valid_loss"])
    events = {e.data["step"]: e.data for e in anna.fine_tuning.jobs.list_events(job.id)
              if e.type == "metrics" and "train_loss" in e.data}  # logged at every step here
    assert [float(r["train_loss"]) for r in rows] == \
        [round(events[s]["train_loss"], 5) for s in range(1, 7)]
    checkpoints = anna.fine_tuning.jobs.checkpoints.list(job.id).data
    assert float(rows[-1]["valid_loss"]) == round(checkpoints[0].metrics.valid_loss, 5)
    with pytest.raises(openai.NotFoundError):  # another key's files do not exist for it
        ben.files.content(results.id)
