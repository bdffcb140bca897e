"""The local fine-tuning service, driven by the official openai SDK over 127.0.0.1 on a tiny
model: the whole job lifecycle, a bad file, cancel, a queue of two, keys; every response
checked against OpenAI's OpenAPI description."""

import json
import time

import pytest

import edu_qa
import finetune_service as fs
import openapi_check


def chat(i: int) -> dict:
    return {"messages": [{"role": "system", "content": "Answer briefly."},
                         {"role": "user", "content": f"What is {i} plus {i}?"},
                         {"role": "assistant", "content": f"{2 * i}."}]}


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def service(tmp_path, tiny_model):
    """start(**options) -> (base URL, a client factory); every response is spec-checked;
    start.stop() stops what was started."""
    import httpx2
    from openai import OpenAI
    found, servers = [], []

    def start(**options):
        ctx = fs.serve("127.0.0.1", 0, data_dir=tmp_path / "service",
                       base_models={"tiny": str(tiny_model)}, **options)
        url = ctx.__enter__()
        servers.append(ctx)

        def client(key="sk-local", **kw):
            hooks = {"response": [openapi_check.hook(found)]} if openapi_check.SPEC.exists() \
                else {}
            return OpenAI(base_url=url, api_key=key, _strict_response_validation=True,
                          http_client=httpx2.Client(event_hooks=hooks), **kw)
        return url, client
    def stop():
        """Stop the services started so far (one service at a time may use a data dir)."""
        while servers:
            servers.pop().__exit__(None, None, None)
    start.found = found  # None per response checked, or a problem
    start.stop = stop
    yield start
    stop()
    problems = [p for p in found if p is not None]
    assert problems == [], problems[:5]


def wait_for(client, job_id, states=("succeeded", "failed", "cancelled"), timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job.status}")


def test_sdk_drives_the_whole_lifecycle_on_a_tiny_model(service):
    _, make = service()
    client = make()
    train = client.files.create(file=("train.jsonl", jsonl(chat(i) for i in range(12))),
                                purpose="fine-tune")
    valid = client.files.create(file=("valid.jsonl", jsonl(chat(i) for i in range(20, 24))),
                                purpose="fine-tune")
    assert client.files.retrieve(train.id).bytes == train.bytes > 0
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=train.id, validation_file=valid.id, suffix="edu-qa",
        seed=3, metadata={"run": "one"},
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2}}})
    assert job.status == "validating_files" and job.fine_tuned_model is None
    job = wait_for(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model.startswith("ft:tiny:local:edu-qa:")
    assert job.trained_tokens > 0 and job.finished_at >= job.created_at
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 4

    messages = [e.message for e in reversed(list(client.fine_tuning.jobs.list_events(
        job.id, limit=3)))]  # three to a page: the SDK pages through all of them
    assert messages[0].startswith("Created fine-tuning job")
    assert "Files validated, moving job to queued state" in messages
    assert any(m.startswith("Step 3/6: training loss=") for m in messages)
    assert any("validation loss=" in m for m in messages)
    assert messages[-1] == "The job has successfully completed"
    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id) if e.type == "metrics"]
    assert all(e.data["total_steps"] == 6 for e in metrics)

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [6, 3]  # one per epoch, newest first
    assert checkpoints[1].fine_tuned_model_checkpoint == job.fine_tuned_model + ":ckpt-step-3"
    assert checkpoints[0].metrics.valid_loss is not None

    models = [m.id for m in client.models.list()]
    assert {"tiny", job.fine_tuned_model, checkpoints[1].fine_tuned_model_checkpoint} <= \
        set(models)
    for model in (job.fine_tuned_model, checkpoints[1].fine_tuned_model_checkpoint, "tiny"):
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "What is 2 plus 2?"}],
            max_completion_tokens=4, temperature=0)
        assert reply.choices[0].finish_reason in ("stop", "length")
        assert reply.usage.prompt_tokens > 0
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"run": "one"})] == [job.id]
    assert list(client.fine_tuning.jobs.list(metadata={"run": "two"})) == []


def test_a_bad_training_file_fails_the_job_with_openais_error_shape(service):
    _, make = service()
    client = make()
    rows = jsonl(chat(i) for i in range(12)).split(b"\n")
    rows[2] = b'{"messages": [{"role": "user", "content": "no answer"'
    bad = client.files.create(file=("bad.jsonl", b"\n".join(rows)), purpose="fine-tune")
    job = wait_for(client, client.fine_tuning.jobs.create(model="tiny",
                                                          training_file=bad.id).id)
    assert job.status == "failed"
    assert (job.error.code, job.error.param) == ("invalid_training_file", "training_file")
    assert "line 3: invalid JSON" in job.error.message
    few = client.files.create(file=("few.jsonl", jsonl(chat(i) for i in range(9))),
                              purpose="fine-tune")
    job = wait_for(client, client.fine_tuning.jobs.create(model="tiny",
                                                          training_file=few.id).id)
    assert job.error.code == "invalid_n_examples" and "at least 10" in job.error.message


def test_requests_the_service_refuses_get_openais_errors(service):
    import openai
    _, make = service()
    client = make(max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    with pytest.raises(openai.BadRequestError, match="not available for fine-tuning"):
        client.fine_tuning.jobs.create(model="babbage-002", training_file="file-nope")
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="ft:nope", messages=[
            {"role": "user", "content": "hi"}])


def test_cancel_while_training_and_two_jobs_run_one_after_the_other(service):
    _, make = service()
    client = make()
    train = client.files.create(file=("t.jsonl", jsonl(chat(i) for i in range(12))),
                                purpose="fine-tune")
    long = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50,
                                                                     "batch_size": 1}}}
    first = client.fine_tuning.jobs.create(model="tiny", training_file=train.id, method=long)
    second = client.fine_tuning.jobs.create(model="tiny", training_file=train.id,
                                            method={"type": "supervised", "supervised": {
                                                "hyperparameters": {"n_epochs": 1}}})
    wait_for(client, first.id, states=("running",))
    assert client.fine_tuning.jobs.retrieve(second.id).status == "queued"  # one at a time
    cancelled = client.fine_tuning.jobs.cancel(first.id)
    assert (cancelled.id, cancelled.status) == (first.id, "cancelled")  # at once, as OpenAI
    first = wait_for(client, first.id)
    assert first.status == "cancelled" and first.fine_tuned_model is None
    second = wait_for(client, second.id)
    assert second.status == "succeeded"
    started = [e.created_at for e in client.fine_tuning.jobs.list_events(second.id)
               if e.message == "Fine-tuning job started"]
    # cancelled means stopped: the next job starts within seconds, not after 50 epochs
    assert started and first.finished_at <= started[0] <= first.finished_at + 30


def test_keys_keep_each_user_to_their_own_objects_and_bound_what_they_queue(service):
    import openai
    _, make = service(api_keys=["key-anna", "key-ben"], max_jobs_per_key=1, max_file_mb=0.01)
    anna, ben = make("key-anna", max_retries=0), make("key-ben", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        make("key-wrong", max_retries=0).models.list()
    file = anna.files.create(file=("t.jsonl", jsonl(chat(i) for i in range(12))),
                             purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        ben.files.retrieve(file.id)
    with pytest.raises(openai.BadRequestError, match="invalid training_file"):
        ben.fine_tuning.jobs.create(model="tiny", training_file=file.id)
    job = anna.fine_tuning.jobs.create(model="tiny", training_file=file.id, method={
        "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50}}})
    assert job.organization_id != "org-local"
    with pytest.raises(openai.RateLimitError, match="at most 1"):
        anna.fine_tuning.jobs.create(model="tiny", training_file=file.id)
    assert [j.id for j in ben.fine_tuning.jobs.list()] == []
    with pytest.raises(openai.NotFoundError):
        ben.fine_tuning.jobs.cancel(job.id)
    anna.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.APIStatusError) as too_big:
        anna.files.create(file=("big.jsonl", b"x" * 20_000), purpose="fine-tune")
    assert too_big.value.status_code == 413


def test_the_same_idempotency_key_gets_the_same_job(service):
    _, make = service()
    client = make()
    train = client.files.create(file=("t.jsonl", jsonl(chat(i) for i in range(12))),
                                purpose="fine-tune")
    jobs = [client.fine_tuning.jobs.create(model="tiny", training_file=train.id,
                                           extra_headers={"Idempotency-Key": "once"})
            for _ in range(2)]
    assert jobs[0].id == jobs[1].id and len(list(client.fine_tuning.jobs.list())) == 1


def test_a_restarted_service_keeps_its_jobs_and_trains_an_unfinished_one_again(
        tmp_path, tiny_model, service):
    _, make = service()
    client = make()
    train = client.files.create(file=("t.jsonl", jsonl(chat(i) for i in range(12))),
                                purpose="fine-tune")
    job = wait_for(client, client.fine_tuning.jobs.create(model="tiny",
                                                          training_file=train.id).id)
    service.stop()
    record = tmp_path / "service" / "jobs" / f"{job.id}.json"
    saved = json.loads(record.read_text())
    saved["object"].update(status="running", fine_tuned_model=None)  # as if stopped mid-way
    record.write_text(json.dumps(saved))
    _, make_again = service()
    client = make_again()
    again = wait_for(client, job.id)
    assert again.status == "succeeded" and again.fine_tuned_model == job.fine_tuned_model
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert "The service restarted; the job is queued again" in messages
    # trained twice, each checkpoint is listed once (by step), in the job and in the models
    steps = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    assert steps and len(steps) == len(set(steps))
    models = [m.id for m in client.models.list()]
    assert len(models) == len(set(models))


def test_it_will_not_listen_beyond_loopback_without_keys(no_network):
    with pytest.raises(edu_qa.UserError, match="API keys"):
        with fs.serve("0.0.0.0", 0):
            pass
    assert fs.is_loopback("127.0.0.1") and fs.is_loopback("::1")
    assert not fs.is_loopback("192.168.1.5")


def test_every_reply_matches_openais_openapi_description(service):
    """The service fixture checks each reply against OpenAI's published OpenAPI description;
    here, that the check really runs (and finds nothing wrong: the fixture asserts that)."""
    if not openapi_check.SPEC.exists():
        pytest.skip(f"OpenAI's OpenAPI description is not at {openapi_check.SPEC}")
    assert openapi_check.problems("GET", "/v1/models", 200, {"object": "list"}) != []
    _, make = service()
    client = make()
    train = client.files.create(file=("t.jsonl", jsonl(chat(i) for i in range(12))),
                                purpose="fine-tune")
    job = wait_for(client, client.fine_tuning.jobs.create(model="tiny", training_file=train.id,
                                                          method={"type": "supervised"}).id)
    client.files.list()
    client.models.list()
    client.fine_tuning.jobs.list()
    client.chat.completions.create(model=job.fine_tuned_model, max_completion_tokens=2,
                                   messages=[{"role": "user", "content": "hi"}])
    assert service.found.count(None) >= 8  # responses checked
