"""openai_finetune.py offline: format checks, tokens/epochs/cost, the guard, the live path
against a fake transport (errors) and against a mock server generated from OpenAI's spec."""

import json
import shutil
import socket
import subprocess
import time

import pytest

import edu_qa
import openai_finetune as oft
from conftest import ROOT

GOOD = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                     {"role": "assistant", "content": "a"}]}


@pytest.mark.parametrize("example,error", [
    ("not a dict", "data_type"),
    ({"prompt": "q"}, "missing_messages_list"),
    ({"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]},
     "message_missing_key"),
    ({"messages": [{"role": "user", "content": "q", "mood": "x"},
                   {"role": "assistant", "content": "a"}]}, "message_unrecognized_key"),
    ({"messages": [{"role": "teacher", "content": "q"}, {"role": "assistant", "content": "a"}]},
     "unrecognized_role"),
    ({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]},
     "missing_content"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]},
     "example_missing_assistant_message"),
])
def test_each_format_error_is_counted(example, error):
    errors, _ = oft.check_format([GOOD, example, GOOD])
    assert errors == {error: 1}


def test_format_warnings_and_clean_data():
    assert oft.check_format([GOOD] * 3) == ({}, {})
    _, warnings = oft.check_format([{"messages": [{"role": "assistant", "content": "a"}]}])
    assert warnings == {"no_system_message": 1, "no_user_message": 1}


def test_token_counting_by_hand():
    enc = oft.encoding_for("gpt-4o-mini-2024-07-18")
    assert enc.name == "o200k_base"
    # 3 (reply priming) + 3 (per message) + 'user' (1 token) + 'hi' (1 token) = 8
    assert oft.num_tokens(enc, [{"role": "user", "content": "hi"}]) == 8
    # a name costs its tokens plus 1: 8 + 'bob' (1) + 1 = 10
    assert oft.num_tokens(enc, [{"role": "user", "content": "hi", "name": "bob"}]) == 10
    # + 3 + 'assistant' (1) + 'Au.' (2) = 14
    assert oft.num_tokens(enc, [{"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "Au."}]) == 14


def test_percentiles_are_labelled_correctly():
    values = list(range(1, 11))
    assert [oft.percentile(values, q) for q in (10, 50, 90, 100)] == [1, 5, 9, 10]


@pytest.mark.parametrize("n,epochs", [(72, 3), (34, 3), (30, 3), (20, 5), (10, 10), (4, 25),
                                      (10_000, 2), (50_000, 1)])
def test_default_epochs_rule(n, epochs):
    assert oft.default_epochs(n) == epochs


def test_cost_estimate_by_hand(tmp_path):
    cfg = oft.Config(output_dir=str(tmp_path))
    converted = {"examples": [GOOD] * 72, "stats": {"lengths": [70] * 72,
                                                  "distribution": {"mean": 70}}}
    plan = oft.configure_model(cfg, converted, 24, edu_qa.console())
    assert plan["epochs"] == 3 and plan["billable_tokens"] == 72 * 70
    assert plan["training_cost"] == pytest.approx(72 * 70 * 3 * 3.00 / 1e6)
    # inference: 24 questions x (base + tuned) x (70 prompt, 64 output tokens)
    assert plan["inference_cost"] == pytest.approx(
        24 * (70 * 0.15 + 64 * 0.60 + 70 * 0.30 + 64 * 1.20) / 1e6)
    assert plan["job"]["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": "auto"}}}
    with pytest.raises(edu_qa.UserError, match="above --max-cost"):
        oft.configure_model(oft.Config(max_cost=0.001), converted, 24, edu_qa.console())


def test_dry_run_opens_no_socket_and_regenerates_the_committed_file(tmp_path, no_network,
                                                                    capsys):
    committed = oft.TRAINING_FILE.read_bytes()
    code = edu_qa.run(oft.main, ["--output-dir", str(tmp_path / "out"),
                                 "--results-dir", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0 and no_network == []
    assert oft.TRAINING_FILE.read_bytes() == committed  # regenerated identically
    assert "would send: POST /fine_tuning/jobs" in out
    assert "would send: POST /chat/completions" in out
    # the line is printed whole, exactly as uploaded (no wrapping at the terminal width)
    assert oft.TRAINING_FILE.read_text().splitlines()[0] in out.splitlines()
    res = json.loads((tmp_path / "results" / "openai_finetune.json").read_text())
    assert res["dry_run"] is True and res["before"] is None and res["after"] is None
    assert res["cost_usd"]["kind"] == "estimated" and res["cost_usd"]["amount"] > 0
    assert res["data_left_machine"] is False


def test_other_data_never_overwrites_the_shipped_file(tmp_path, no_network):
    committed = oft.TRAINING_FILE.read_bytes()
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"{2 * i}."} for i in range(40)]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = edu_qa.run(oft.main, ["--data", str(data), "--output-dir", str(tmp_path / "out"),
                                 "--results-dir", str(tmp_path / "results")])
    assert code == 0
    assert oft.TRAINING_FILE.read_bytes() == committed
    assert (tmp_path / "out" / "training.jsonl").exists()


def test_execute_without_key_exits_2_and_sends_nothing(tmp_path, no_network, monkeypatch,
                                                        capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = edu_qa.run(oft.main, ["--execute", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    assert no_network == [] and not (tmp_path / "state.json").exists()


def test_key_is_never_printed_or_written(tmp_path, monkeypatch, capsys):
    secret = "sk-test-0123456789abcdefSECRET"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    api = FakeAPI()
    patch_client(monkeypatch, api)
    code = edu_qa.run(oft.main, ["--execute", "--output-dir", str(tmp_path / "out"),
                                 "--results-dir", str(tmp_path / "results"),
                                 "--poll-interval", "0"])
    captured = capsys.readouterr()
    assert code == 0
    assert secret not in captured.out + captured.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace")


# ---- the live path against a fake transport: what a mock server cannot produce -------------

class FakeAPI:
    """Just enough of OpenAI's API for one job; statuses and failures are scripted."""

    def __init__(self, statuses=("running", "succeeded"), fail_first=None, fail_always=None):
        self.statuses, self.fail_first, self.fail_always = list(statuses), fail_first, fail_always
        self.calls, self.failed = [], set()

    def __call__(self, request):
        import httpx2
        key = f"{request.method} {request.url.path.removeprefix('/v1')}"
        self.calls.append(key)
        if self.fail_always and key.startswith(self.fail_always[0]):
            return httpx2.Response(self.fail_always[1], json={"error": {"message": "boom"}})
        if self.fail_first and key.startswith(self.fail_first[0]) and key not in self.failed:
            self.failed.add(key)
            return httpx2.Response(self.fail_first[1], json={"error": {"message": "slow down"}},
                                   headers={"retry-after-ms": "1"})
        job = {"id": "ftjob-1", "object": "fine_tuning.job", "created_at": 1,
               "model": "gpt-4o-mini-2024-07-18", "organization_id": "org", "seed": 0,
               "status": "queued", "training_file": "file-1", "validation_file": "file-2",
               "result_files": [], "hyperparameters": {"n_epochs": 3},
               "fine_tuned_model": None, "finished_at": None, "trained_tokens": None,
               "error": None}
        if key == "POST /files":
            n = sum(c == key for c in self.calls)
            return httpx2.Response(200, json={
                "id": f"file-{n}", "object": "file", "bytes": 1, "created_at": 1,
                "filename": "x.jsonl", "purpose": "fine-tune", "status": "processed"})
        if key == "POST /fine_tuning/jobs":
            return httpx2.Response(200, json=job)
        if key == "GET /fine_tuning/jobs/ftjob-1":
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            job["status"] = status
            if status == "succeeded":
                job.update(fine_tuned_model="ft:gpt-4o-mini-2024-07-18:org:edu-qa:abc",
                           trained_tokens=15390, finished_at=2)
            if status == "failed":
                job["error"] = {"code": "invalid_training_file", "message": "bad line 3",
                                "param": "training_file"}
            return httpx2.Response(200, json=job)
        if key == "GET /fine_tuning/jobs/ftjob-1/events":
            return httpx2.Response(200, json={"object": "list", "has_more": False, "data": [
                {"id": "ev-2", "object": "fine_tuning.job.event", "created_at": 2,
                 "level": "info", "message": "Step 10/27", "type": "metrics",
                 "data": {"step": 10, "train_loss": 0.5}},
                {"id": "ev-1", "object": "fine_tuning.job.event", "created_at": 1,
                 "level": "info", "message": "Job started"}]})
        if key == "GET /fine_tuning/jobs/ftjob-1/checkpoints":
            return httpx2.Response(200, json={"object": "list", "has_more": False, "data": [
                {"id": "cp-1", "object": "fine_tuning.job.checkpoint", "created_at": 2,
                 "fine_tuned_model_checkpoint": "ft:gpt-4o-mini:org:edu-qa:abc:ckpt-step-18",
                 "fine_tuning_job_id": "ftjob-1", "step_number": 18,
                 "metrics": {"train_loss": 0.4}}]})
        if key == "POST /chat/completions":
            body = json.loads(request.content)
            tuned = body["model"].startswith("ft:")
            return httpx2.Response(200, json={
                "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant",
                    "content": "Carbon dioxide." if tuned else "I am not sure."}}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45}})
        if key == "POST /fine_tuning/jobs/ftjob-1/cancel":
            return httpx2.Response(200, json=dict(job, status="cancelled"))
        return httpx2.Response(404, json={"error": {"message": f"no fake for {key}"}})


def patch_client(monkeypatch, api, max_retries=2):
    import httpx2
    from openai import OpenAI
    monkeypatch.setattr(oft, "make_client", lambda cfg: OpenAI(
        base_url="http://127.0.0.1:9/v1", max_retries=max_retries,
        http_client=httpx2.Client(transport=httpx2.MockTransport(api))))


def run_live(tmp_path, *extra):
    return edu_qa.run(oft.main, ["--execute", "--output-dir", str(tmp_path / "out"),
                                 "--results-dir", str(tmp_path / "results"),
                                 "--poll-interval", "0", *extra])


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-for-the-fake-transport")


def test_live_path_with_429_retry_and_resume_without_second_upload(tmp_path, key, monkeypatch,
                                                                     capsys):
    api = FakeAPI(fail_first=("POST /files", 429))
    patch_client(monkeypatch, api)
    assert run_live(tmp_path) == 0
    out = capsys.readouterr().out
    assert api.calls.count("POST /files") == 3  # 2 files, one retried after the 429
    assert api.calls.count("POST /fine_tuning/jobs") == 1
    assert "train loss 0.5" in out and "ckpt-step-18" in out
    res = json.loads((tmp_path / "results" / "openai_finetune.json").read_text())
    assert res["dry_run"] is False and res["data_left_machine"] is True
    assert res["tuned_model"].startswith("ft:")
    assert res["before"]["accuracy"] < res["after"]["accuracy"]
    assert res["cost_usd"] == {"amount": round(15390 * 3.00 / 1e6, 4), "kind": "actual"}

    api2 = FakeAPI(statuses=("succeeded",))
    patch_client(monkeypatch, api2)
    assert run_live(tmp_path) == 0
    assert "resuming job ftjob-1" in capsys.readouterr().out
    assert "POST /files" not in api2.calls and "POST /fine_tuning/jobs" not in api2.calls


def test_server_error_on_job_create_keeps_uploads_for_the_rerun(tmp_path, key, monkeypatch,
                                                                 capsys):
    api = FakeAPI(fail_always=("POST /fine_tuning/jobs", 500))
    patch_client(monkeypatch, api, max_retries=1)
    assert run_live(tmp_path) == 2
    assert "InternalServerError" in capsys.readouterr().err
    assert api.calls.count("POST /fine_tuning/jobs") == 2  # the SDK retried once
    api2 = FakeAPI()
    patch_client(monkeypatch, api2)
    assert run_live(tmp_path) == 0
    assert "POST /files" not in api2.calls  # the files uploaded before the 500 are reused


def test_failed_job_reports_openai_error(tmp_path, key, monkeypatch, capsys):
    patch_client(monkeypatch, FakeAPI(statuses=("running", "failed")))
    assert run_live(tmp_path) == 0
    out = capsys.readouterr().out
    assert "invalid_training_file: bad line 3" in out
    res = json.loads((tmp_path / "results" / "openai_finetune.json").read_text())
    assert res["extra"]["status"] == "failed" and res["after"] is None


def test_max_wait_leaves_the_job_running_and_says_how_to_resume(tmp_path, key, monkeypatch,
                                                                 capsys):
    patch_client(monkeypatch, FakeAPI(statuses=("running",)))
    assert run_live(tmp_path, "--max-wait", "0") == 0
    assert "--max-wait reached; job ftjob-1 goes on" in capsys.readouterr().out


def test_cancel(tmp_path, key, monkeypatch, capsys):
    patch_client(monkeypatch, FakeAPI(statuses=("running",)))
    run_live(tmp_path, "--max-wait", "0")
    api = FakeAPI()
    patch_client(monkeypatch, api)
    assert run_live(tmp_path, "--cancel") == 0
    assert "POST /fine_tuning/jobs/ftjob-1/cancel" in api.calls
    assert "is cancelled" in capsys.readouterr().out


# ---- contract test: a mock server generated from OpenAI's published OpenAPI description -----

SPEC = ROOT.parent / "shared" / "openai-openapi" / "openapi.yaml"
STEADY = ROOT / ".mock" / "node_modules" / ".bin" / "steady"
SUCCEEDED_SEED = "4"  # with this X-Steady-Seed the mock's job status is 'succeeded'


@pytest.fixture(scope="module")
def mock_server():
    if not SPEC.exists():
        pytest.skip(f"OpenAI's spec is not at {SPEC}")
    if not STEADY.exists() or shutil.which("node") is None:
        pytest.skip("the mock server is not installed: npm install --prefix .mock @stdy/cli")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(STEADY), "--host", "127.0.0.1", "-p", str(port), "-q",
                             str(SPEC)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("the mock server did not start")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_contract_live_path_against_openai_spec(tmp_path, mock_server, monkeypatch, capsys):
    from openai import OpenAI
    monkeypatch.setenv("OPENAI_API_KEY", "sk-contract-test")
    monkeypatch.setenv("OPENAI_BASE_URL", mock_server)
    uploads = []

    def client(cfg):
        c = OpenAI(max_retries=0, default_headers={"X-Steady-Seed": SUCCEEDED_SEED,
                                                   "X-Steady-Reject-On-Error": "true"})
        real = c.files.create
        c.files.create = lambda **kw: uploads.append(kw["purpose"]) or real(**kw)
        return c
    monkeypatch.setattr(oft, "make_client", client)
    assert run_live(tmp_path) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert uploads == ["fine-tune", "fine-tune"]
    assert "created job" in out and "succeeded" in out
    res = json.loads((tmp_path / "results" / "openai_finetune.json").read_text())
    assert res["dry_run"] is False and res["before"]["n"] == res["after"]["n"] == 24
    assert res["extra"]["status"] == "succeeded"
    state = json.loads((tmp_path / "out" / "state.json").read_text())
    assert len(state) == 1

    uploads.clear()
    assert run_live(tmp_path) == 0
    assert "resuming job" in capsys.readouterr().out
    assert uploads == []  # the second run watched the same job: nothing uploaded, nothing paid
