"""The local fine-tuning service under misuse, over 127.0.0.1 on a tiny model: oversized and
malformed bodies, a second service on the same data, requests from a web page, keys on the
command line, files and models deleted, a storage quota, files training could not use; and
OpenAI's model names, so the OpenAI cookbook's calls run unchanged."""

import json
import os
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

import edu_qa
import finetune_service as fs
from test_service import chat, jsonl, service, wait_for  # noqa: F401 (service: a fixture)


def raw_request(url: str, head: str, body_parts, timeout: float = 20) -> tuple[int, dict]:
    """Send a request by hand (head: the lines before the blank line; body_parts: bytes sent
    as they are), then read the reply: (status, JSON body). A server that waits for the rest
    of the body never answers: socket.timeout."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        try:
            for part in body_parts:
                sock.sendall(part)
        except OSError:  # the server answered and closed: read what it said
            pass
        reply = b""
        while True:
            received = sock.recv(65536)
            assert received, f"the server closed the connection after {reply[:200]!r}"
            reply += received
            header, ended, body = reply.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in header.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if ended and len(body) >= length:
                break
    return int(header.split()[1]), json.loads(body)


def is_openai_error(body: dict) -> bool:
    return set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])


# ---- bodies: size and shape -------------------------------------------------------------

def test_a_chunked_upload_is_refused_while_it_is_read_not_after(service):
    """No Content-Length: the service counts the bytes as they come and answers 413 once they
    pass the limit, without waiting for (and storing) the rest, which here never comes. Sent
    by hand: an HTTP client (httpx, the SDK) sends a whole body before it reads the reply."""
    url, _ = service(max_file_mb=0.01)
    host = urlsplit(url).netloc
    head = (f"POST /v1/files HTTP/1.1\nHost: {host}\nTransfer-Encoding: chunked\n"
            "Content-Type: multipart/form-data; boundary=b\n")
    start = (b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
             b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
             b"Content-Type: application/octet-stream\r\n\r\n")
    piece = b"x" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(start), start)] + \
        [b"%x\r\n%s\r\n" % (len(piece), piece)] * 32  # 2 MB, and the body never ends
    status, body = raw_request(url, head, chunks)
    assert status == 413 and is_openai_error(body)


def test_a_prompt_longer_than_the_context_is_refused_and_holds_no_one(service):
    """D1: a request the model cannot read is refused before it is queued, in OpenAI's words
    (context_length_exceeded), so it never holds the requests batched with it; the next short
    chat answers."""
    import openai
    _, client = service()
    api = client()
    many = [{"role": "user", "content": "hi"}] * 600  # over the tiny model's 512 positions
    start = time.monotonic()
    with pytest.raises(openai.BadRequestError) as refused:
        api.chat.completions.create(model="tiny", messages=many, max_completion_tokens=4)
    assert refused.value.code == "context_length_exceeded"
    assert "maximum context length is 512 tokens" in refused.value.message
    reply = api.chat.completions.create(model="tiny", max_completion_tokens=4,
                                        messages=[{"role": "user", "content": "hi"}])
    assert reply.choices and time.monotonic() - start < 60


def test_a_json_body_over_1_mb_is_refused_in_openais_error_shape(service):
    import openai
    url, make = service()
    client = make(max_retries=0)
    with pytest.raises(openai.APIStatusError) as declared:  # the SDK sends Content-Length
        client.fine_tuning.jobs.create(model="tiny", training_file="file-x",
                                       suffix="x" * 1_100_000)
    assert declared.value.status_code == 413
    assert declared.value.body["code"] == "request_too_large"
    big = json.dumps({"model": "tiny", "training_file": "file-x", "suffix": "x" * 2_000_000})
    chunked = httpx.post(f"{url}/fine_tuning/jobs", headers={"content-type": "application/json"},
                         content=(big[i:i + 65536].encode() for i in range(0, len(big), 65536)))
    assert chunked.status_code == 413 and is_openai_error(chunked.json())


DEEP_LIST = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000
HI = [{"role": "user", "content": "hi"}]
MALFORMED = {
    "/chat/completions": [
        DEEP_LIST, DEEP_OBJECT, "[1, 2]", "not json",
        {"model": "tiny", "messages": HI, "stop": 5},
        {"model": "tiny", "messages": HI, "stop": [""]},
        {"model": "tiny", "messages": HI, "stop": ""},
        {"model": "tiny", "messages": HI, "stop": ["a", 1]},
        {"model": "tiny", "messages": HI, "stop": ["a", "b", "c", "d", "e"]},
        {"model": "tiny", "messages": HI, "stop": {"a": 1}},
        {"model": ["tiny"], "messages": HI},
        {"model": {"id": "tiny"}, "messages": HI},
        {"messages": HI},
        {"model": "tiny", "messages": "hi"},
        {"model": "tiny", "messages": [{"role": "user", "content": ["hi"]}]},
        {"model": "tiny", "messages": HI, "max_tokens": True},
        {"model": "tiny", "messages": HI, "max_completion_tokens": "5"},
    ],
    "/fine_tuning/jobs": [
        DEEP_LIST, DEEP_OBJECT, "[]",
        {"model": ["tiny"], "training_file": "file-x"},
        {"model": {}, "training_file": "file-x"},
        {"model": None, "training_file": "file-x"},
        {"model": "tiny", "training_file": ["file-x"]},
        {"model": "tiny", "training_file": "file-x", "method": "supervised"},
        {"model": "tiny", "training_file": "file-x", "method": ["supervised"]},
        {"model": "tiny", "training_file": "file-x",
         "method": {"type": "supervised", "supervised": 5}},
        {"model": "tiny", "training_file": "file-x", "method": {
            "type": "supervised", "supervised": {"hyperparameters": "fast"}}},
        {"model": "tiny", "training_file": "file-x", "hyperparameters": [1]},
        '{"model": "tiny", "training_file": "FILE", "hyperparameters": {"n_epochs": NaN}}',
        '{"model": "tiny", "training_file": "FILE", "hyperparameters": {"n_epochs": Infinity}}',
        '{"model": "tiny", "training_file": "FILE", '
        '"hyperparameters": {"learning_rate_multiplier": -Infinity}}',
        {"model": "tiny", "training_file": "FILE", "seed": "7"},
        {"model": "tiny", "training_file": "FILE", "suffix": 5},
        {"model": "tiny", "training_file": "FILE", "metadata": [1]},
    ],
}


def test_every_malformed_body_gets_400_in_openais_error_shape_never_500(service):
    url, make = service()
    train = make().files.create(file=("t.jsonl", jsonl(chat(i) for i in range(12))),
                                purpose="fine-tune")
    for path, bodies in MALFORMED.items():
        for body in bodies:
            text = body if isinstance(body, str) else json.dumps(body)
            reply = httpx.post(url + path, content=text.replace("FILE", train.id),
                               headers={"content-type": "application/json"}, timeout=30)
            assert reply.status_code == 400, (path, text[:120], reply.text[:300])
            assert is_openai_error(reply.json()), reply.text[:300]
    assert list(make().fine_tuning.jobs.list()) == []  # none of them made a job


# ---- who may call -------------------------------------------------------------------------

def test_without_keys_only_this_machine_is_answered_not_a_web_page(service):
    """Host and Origin must be loopback names: a page from elsewhere (CSRF), or one that
    reaches 127.0.0.1 through its own DNS name (DNS rebinding), gets 403."""
    url, _ = service()
    models = f"{url}/models"
    for headers in ({"Host": "evil.example"}, {"Host": "evil.example:8000"},
                    {"Host": "127.0.0.1.evil.example"}, {"Origin": "http://evil.example"},
                    {"Origin": "null"}, {"Origin": "http://localhost.evil.example:80"}):
        reply = httpx.get(models, headers=headers)
        assert reply.status_code == 403 and is_openai_error(reply.json()), headers
    for headers in ({"Host": "localhost:1234"}, {"Host": "[::1]:80"}, {"Host": "127.0.0.1"},
                    {"Origin": "http://127.0.0.1:5173"}, {"Origin": "http://localhost"}):
        assert httpx.get(models, headers=headers).status_code == 200, headers
    post = httpx.post(f"{url}/fine_tuning/jobs", json={"model": "tiny", "training_file": "f"},
                      headers={"Origin": "https://evil.example"})
    assert post.status_code == 403


def test_with_keys_the_key_decides_whatever_the_host(service):
    url, _ = service(api_keys=["key-anna"])
    assert httpx.get(f"{url}/models", headers={"Host": "class.example"}).status_code == 401
    assert httpx.get(f"{url}/models", headers={"Host": "class.example", "Authorization":
                                               "Bearer key-anna"}).status_code == 200


def test_there_are_no_docs_pages(service):
    url, _ = service()
    root = url.removesuffix("/v1")
    for page in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        reply = httpx.get(root + page)
        assert reply.status_code == 404 and "cdn" not in reply.text.lower(), page


def test_a_key_on_the_command_line_is_refused_and_never_repeated(monkeypatch, capsys,
                                                                 tmp_path):
    secret = "sk-do-not-print-me"
    monkeypatch.delenv("FINETUNE_SERVICE_API_KEYS", raising=False)
    for argv in (["--api-key", secret], [f"--api-key={secret}"], ["--api-keys", secret],
                 ["--api-keys-file", secret]):
        assert edu_qa.run(fs.main, argv + ["--data-dir", str(tmp_path)]) == 2, argv
        err = capsys.readouterr().err
        assert secret not in err and "error" in err, (argv, err)
        assert argv[0].split("=")[0] in err  # the option is named, so it can be fixed


def test_the_keys_file_skips_blank_lines_and_comments(monkeypatch, tmp_path):
    monkeypatch.setenv("FINETUNE_SERVICE_API_KEYS", "env-key, ")
    keys = tmp_path / "keys.txt"
    keys.write_text("# the class of 2026\n\nkey-anna\n  key-ben  \n   # old: key-carl\n")
    assert fs.read_keys(str(keys)) == ["env-key", "key-anna", "key-ben"]


# ---- one service per data directory -------------------------------------------------------

def test_a_second_service_on_the_same_data_refuses_to_start_and_names_the_first(
        service, tmp_path):
    service()
    lock = tmp_path / "service" / fs.LOCK_FILE
    assert lock.read_text().strip() == str(os.getpid())
    with pytest.raises(edu_qa.UserError, match=f"in use by another finetune_service "
                                               f"\\(process {os.getpid()}\\)"):
        with fs.serve("127.0.0.1", 0, data_dir=tmp_path / "service"):
            pass
    service.stop()
    with fs.serve("127.0.0.1", 0, data_dir=tmp_path / "service"):  # free again once stopped
        pass


# ---- files and models: read back, delete, a quota -----------------------------------------

def test_files_are_read_back_deleted_by_their_owner_and_count_against_a_quota(service):
    import openai
    url, make = service(api_keys=["key-anna", "key-ben"], max_storage_mb=0.002)
    anna, ben = make("key-anna", max_retries=0), make("key-ben", max_retries=0)
    raw = b'{"x": 1}\n' * 100  # 900 bytes: two fit in 2000, three do not
    first = anna.files.create(file=("a.jsonl", raw), purpose="fine-tune")
    anna.files.create(file=("b.jsonl", raw), purpose="fine-tune")
    with pytest.raises(openai.RateLimitError, match="storage quota") as over:
        anna.files.create(file=("c.jsonl", raw), purpose="fine-tune")
    assert over.value.body["code"] == "insufficient_quota"
    ben.files.create(file=("c.jsonl", raw), purpose="fine-tune")  # each key its own quota
    # the content comes back as bytes (not JSON: a client without the spec check reads it)
    content = httpx.get(f"{url}/files/{first.id}/content",
                        headers={"Authorization": "Bearer key-anna"})
    assert content.status_code == 200 and content.content == raw
    assert httpx.get(f"{url}/files/{first.id}/content",
                     headers={"Authorization": "Bearer key-ben"}).status_code == 404
    with pytest.raises(openai.NotFoundError):
        ben.files.delete(first.id)
    deleted = anna.files.delete(first.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (first.id, "file", True)
    with pytest.raises(openai.NotFoundError):
        anna.files.retrieve(first.id)
    assert first.id not in [f.id for f in anna.files.list()]
    anna.files.create(file=("c.jsonl", raw), purpose="fine-tune")  # room again


def test_own_models_are_retrieved_and_deleted_base_models_are_not(service):
    import openai
    _, make = service(api_keys=["key-anna", "key-ben"])
    anna, ben = make("key-anna", max_retries=0), make("key-ben", max_retries=0)
    train = anna.files.create(file=("t.jsonl", jsonl(chat(i) for i in range(12))),
                              purpose="fine-tune")
    job = anna.fine_tuning.jobs.create(model="tiny", training_file=train.id, method={
        "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}})
    with pytest.raises(openai.BadRequestError, match="not finished"):
        anna.files.delete(train.id)  # a restarted service would read it again
    job = wait_for(anna, job.id)
    assert job.status == "succeeded", job.error
    checkpoint = anna.fine_tuning.jobs.checkpoints.list(job.id).data[-1]
    model = anna.models.retrieve(job.fine_tuned_model)
    assert (model.id, model.owned_by) == (job.fine_tuned_model, job.organization_id)
    assert anna.models.retrieve("tiny").owned_by == "system"
    with pytest.raises(openai.NotFoundError):
        ben.models.retrieve(job.fine_tuned_model)
    with pytest.raises(openai.NotFoundError):
        ben.models.delete(job.fine_tuned_model)
    with pytest.raises(openai.PermissionDeniedError):
        anna.models.delete("tiny")
    anna.chat.completions.create(model=job.fine_tuned_model, messages=HI,
                                 max_completion_tokens=2)  # loaded, then deleted
    deleted = anna.models.delete(job.fine_tuned_model)
    assert (deleted.id, deleted.object, deleted.deleted) == (job.fine_tuned_model, "model", True)
    with pytest.raises(openai.NotFoundError):
        anna.models.retrieve(job.fine_tuned_model)
    with pytest.raises(openai.NotFoundError):
        anna.chat.completions.create(model=job.fine_tuned_model, messages=HI)
    left = [m.id for m in anna.models.list()]
    assert job.fine_tuned_model not in left and checkpoint.fine_tuned_model_checkpoint in left
    assert anna.files.delete(train.id).deleted  # its job has finished


# ---- validation accepts exactly what training can use -------------------------------------

def test_a_function_call_turn_is_refused_at_validation_not_in_training(service):
    _, make = service()
    client = make()
    rows = [chat(i) for i in range(12)]
    rows[2]["messages"][-1] = {"role": "assistant", "content": None,
                               "function_call": {"name": "add", "arguments": "{}"}}
    calls = client.files.create(file=("calls.jsonl", jsonl(rows)), purpose="fine-tune")
    job = wait_for(client, client.fine_tuning.jobs.create(model="tiny",
                                                          training_file=calls.id).id)
    assert job.status == "failed"
    assert (job.error.code, job.error.param) == ("invalid_training_file", "training_file")
    assert "example 3" in job.error.message and "function_call" in job.error.message
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert "Fine-tuning job started" not in messages  # it never reached training
    rows = [chat(i) for i in range(12)]
    rows[4]["messages"][-1] = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}]}
    tools = client.files.create(file=("tools.jsonl", jsonl(rows)), purpose="fine-tune")
    job = wait_for(client, client.fine_tuning.jobs.create(model="tiny",
                                                          training_file=tools.id).id)
    assert job.status == "failed" and job.error.code == "invalid_training_file"
    assert "line 5" in job.error.message


# ---- OpenAI's model names: code written for OpenAI runs here unchanged --------------------

def test_the_openai_cookbook_sequence_runs_with_gpt_3_5_turbo(service):
    """The calls of OpenAI's fine-tuning cookbook, as written there, with gpt-3.5-turbo:
    trained here on the first base model (the tiny one), and said so."""
    _, make = service()
    client = make()
    training_file = client.files.create(
        file=("train.jsonl", jsonl(chat(i) for i in range(12))), purpose="fine-tune")
    validation_file = client.files.create(
        file=("valid.jsonl", jsonl(chat(i) for i in range(20, 24))), purpose="fine-tune")
    response = client.fine_tuning.jobs.create(
        training_file=training_file.id, validation_file=validation_file.id,
        model="gpt-3.5-turbo", suffix="recipe-ner")
    job_id = response.id
    while True:
        response = client.fine_tuning.jobs.retrieve(job_id)
        if response.status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert response.status == "succeeded", response.error
    assert response.model == "gpt-3.5-turbo"
    events = list(client.fine_tuning.jobs.list_events(job_id))  # the SDK pages through all
    events.reverse()  # oldest first
    assert events[0].message.startswith(f"Created fine-tuning job: {job_id}")
    assert "gpt-3.5-turbo is trained here as tiny (a local stand-in)" in events[0].message
    fine_tuned_model_id = response.fine_tuned_model
    assert fine_tuned_model_id.startswith("ft:gpt-3.5-turbo:local:recipe-ner:")
    reply = client.chat.completions.create(
        model=fine_tuned_model_id, temperature=0, max_tokens=5,
        messages=[{"role": "system", "content": "Answer briefly."},
                  {"role": "user", "content": "What is 2 plus 2?"}])
    assert reply.choices[0].message.role == "assistant"


def test_openais_model_names_map_onto_base_models_with_serve_as(service, tmp_path):
    import openai
    _, make = service(serve_as={"gpt-4o-mini": "tiny", "my-model": "tiny"})
    client = make(max_retries=0)
    train = client.files.create(file=("t.jsonl", jsonl(chat(i) for i in range(12))),
                                purpose="fine-tune")
    for model in ("gpt-4o-mini-2024-07-18", "gpt-4.1-nano-2025-04-14", "gpt-4o", "my-model"):
        job = client.fine_tuning.jobs.create(model=model, training_file=train.id)
        assert job.model == model
        client.fine_tuning.jobs.cancel(job.id)
    for model in ("gpt-4", "gpt-4o2", "babbage-002", "my-model2"):
        with pytest.raises(openai.BadRequestError, match="not available for fine-tuning"):
            client.fine_tuning.jobs.create(model=model, training_file=train.id)
    with pytest.raises(edu_qa.UserError, match="nope is not a base model"):
        with fs.serve("127.0.0.1", 0, data_dir=tmp_path / "other",
                      base_models={"tiny": "x"}, serve_as={"gpt-4o": "nope"}):
            pass
    assert fs.parse_args(["--serve-as", "gpt-4o=tiny", "--serve-as", "a=b"]).serve_as == \
        ["gpt-4o=tiny", "a=b"]
