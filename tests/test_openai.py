"""openai_finetune.py offline: format checks, tokens/epochs/cost, the guard; the default run
against the local service (tiny model); the live path against a fake transport (errors, a
hostile server, Ctrl-C) and against a mock server generated from OpenAI's spec."""

import json
import shutil
import socket
import subprocess
import time

import pytest

import edu_qa
import finetune_service
import openai_finetune as oft
from conftest import ROOT
from edu_qa import chat_format, openai_costs, openai_jobs
from edu_qa.recipe import EMBEDDED_ID

SCRIPT = ROOT / "openai_finetune.py"

ANSWERS = {r.question: r.answer for r in edu_qa.load_qa().records}
MAKE_CLIENT = openai_jobs.make_client  # the script's own, before any test patches it
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
    errors, _ = chat_format.check_format([GOOD, example, GOOD])
    assert errors == {error: 1}


def test_format_warnings_and_clean_data():
    assert chat_format.check_format([GOOD] * 3) == ({}, {})
    _, warnings = chat_format.check_format([{"messages": [{"role": "assistant", "content": "a"}]}])
    assert warnings == {"no_system_message": 1, "no_user_message": 1}


def test_token_counting_by_hand():
    enc = openai_costs.encoding_for("gpt-4o-mini-2024-07-18")
    assert enc.name == "o200k_base"
    # 3 (reply priming) + 3 (per message) + 'user' (1 token) + 'hi' (1 token) = 8
    assert openai_costs.num_tokens(enc, [{"role": "user", "content": "hi"}]) == 8
    # a name costs its tokens plus 1: 8 + 'bob' (1) + 1 = 10
    assert openai_costs.num_tokens(enc, [{"role": "user", "content": "hi", "name": "bob"}]) == 10
    # + 3 + 'assistant' (1) + 'Au.' (2) = 14
    assert openai_costs.num_tokens(enc, [{"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "Au."}]) == 14


def test_percentiles_are_labelled_correctly():
    values = list(range(1, 11))
    assert [openai_costs.percentile(values, q) for q in (10, 50, 90, 100)] == [1, 5, 9, 10]


@pytest.mark.parametrize("n,epochs", [(72, 3), (34, 3), (30, 3), (20, 5), (10, 10), (4, 25),
                                      (10_000, 2), (50_000, 1)])
def test_default_epochs_rule(n, epochs):
    assert chat_format.default_epochs(n) == epochs


def test_cost_estimate_by_hand(tmp_path):
    cfg = oft.Config(output_dir=str(tmp_path))
    converted = oft.Formatted(None, None, [GOOD] * 72, {"lengths": [70] * 72,
                                                        "distribution": {"mean": 70}})
    plan = oft.configure_model(cfg, converted, 24, edu_qa.console(), "openai")
    assert plan["epochs"] == 3 and plan["billable_tokens"] == 72 * 70
    assert plan["training_cost"] == pytest.approx(72 * 70 * 3 * 3.00 / 1e6)
    # inference: 24 questions x (base + tuned) x (70 prompt, 48 output tokens)
    assert plan["inference_cost"] == pytest.approx(
        24 * (70 * 0.15 + 48 * 0.60 + 70 * 0.30 + 48 * 1.20) / 1e6)
    assert plan["job"]["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": "auto"}}}
    with pytest.raises(edu_qa.UserError, match="above --max-cost"):
        oft.configure_model(oft.Config(max_cost=0.001), converted, 24, edu_qa.console(),
                            "openai")
    for mode in ("plan", "local"):  # only a paid job is refused
        oft.configure_model(oft.Config(max_cost=0.001), converted, 24, edu_qa.console(), mode)
    oft.configure_model(oft.Config(max_cost=0.001, cancel=True), converted, 24,
                        edu_qa.console(), "openai")


def test_dry_run_opens_no_socket_and_regenerates_the_committed_file(tmp_path, no_network,
                                                                    capsys):
    committed = oft.TRAINING_FILE.read_bytes()
    code = edu_qa.run_script(SCRIPT, ["--dry-run", "--output-dir", str(tmp_path / "out"),
                                 "--results-dir", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0 and no_network == []
    assert oft.TRAINING_FILE.read_bytes() == committed  # regenerated identically
    assert "would send to OpenAI: POST /fine_tuning/jobs" in out
    assert "would send to OpenAI: POST /chat/completions" in out
    assert "2027-01-06" in out
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
    code = edu_qa.run_script(SCRIPT, ["--data", str(data), "--output-dir", str(tmp_path / "out"),
                                 "--results-dir", str(tmp_path / "results"), "--dry-run"])
    assert code == 0
    assert oft.TRAINING_FILE.read_bytes() == committed
    assert (tmp_path / "out" / "training.jsonl").exists()


def test_execute_without_key_exits_2_and_sends_nothing(tmp_path, no_network, monkeypatch,
                                                        capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = edu_qa.run_script(SCRIPT, ["--execute", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    assert no_network == [] and not (tmp_path / "state.json").exists()


def test_key_is_never_printed_or_written(tmp_path, monkeypatch, capsys):
    secret = "sk-test-0123456789abcdefSECRET"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    api = FakeAPI()
    patch_client(monkeypatch, api)
    code = run_live(tmp_path)
    captured = capsys.readouterr()
    assert code == 0
    assert secret not in captured.out + captured.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace")


# ---- the default run: the whole workflow on the local service ----------------------------

def test_default_run_trains_on_the_local_service_and_measures_before_and_after(
        tmp_path, tiny_model, no_network, monkeypatch, capsys):
    """No flags: a local OpenAI-compatible service on 127.0.0.1 (here with a tiny model as
    its base), the same SDK calls, a measured row; nothing leaves the machine."""
    # the service's base models: one dict, shared by finetune_service and edu_qa.service
    monkeypatch.setitem(finetune_service.BASE_MODELS, finetune_service.EMBEDDED_ID,
                        str(tiny_model))
    args = ["--output-dir", str(tmp_path / "out"), "--results-dir", str(tmp_path / "results"),
            "--train-size", "12", "--epochs", "1", "--max-new-tokens", "4"]
    assert edu_qa.run_script(SCRIPT, args) == 0
    out = capsys.readouterr().out
    assert no_network == []  # only 127.0.0.1
    assert "would send to OpenAI: POST /fine_tuning/jobs" in out
    assert "[info] Fine-tuning job started" in out and "job ftjob-" in out
    res = json.loads((tmp_path / "results" / "openai_finetune.json").read_text())
    assert res["dry_run"] is False and res["data_left_machine"] is False
    assert res["cost_usd"] == {"amount": 0.0, "kind": "local"}
    assert res["before"]["n"] == res["after"]["n"] == 152
    # the "before" is the plain-prompt baseline, saved for the other methods to share
    assert res["before_source"]["kind"] == "plain-prompt baseline"
    baseline = json.loads((tmp_path / "results" / "baseline.json").read_text())
    assert [p["answer"] for p in baseline["predictions"]] == \
        [p["before"] for p in res["predictions"]]
    # never worse: the base and each checkpoint scored on dev, the best kept (a tiny random
    # model's checkpoint rarely beats its base: then the base is what a student should use)
    assert set(res["extra"]["dev_scores"]) == {"base", "step 2"}
    if res["extra"]["kept"] == "base":
        assert res["tuned_model"] == EMBEDDED_ID and res["after"] == res["before"]
    else:
        assert res["tuned_model"].startswith(f"ft:{EMBEDDED_ID}:local:edu-qa:")
    assert res["tokens"]["training"] > 0 and res["wall_time_s"]["tune"] >= 0
    assert res["extra"]["service"] == "local" and res["extra"]["openai_estimate_usd"] > 0
    # a re-run resumes the recorded job: nothing uploaded or trained again
    assert edu_qa.run_script(SCRIPT, args) == 0
    again = capsys.readouterr().out
    assert "resuming job" in again and "uploaded training.jsonl:" not in again


def test_cancel_and_dry_run_contradict(tmp_path, no_network, capsys):
    assert edu_qa.run_script(SCRIPT, ["--dry-run", "--cancel", "--output-dir", str(tmp_path)]) == 2
    assert "--cancel needs a service" in capsys.readouterr().err
    assert edu_qa.run_script(SCRIPT, ["--dry-run", "--execute", "--output-dir", str(tmp_path)]) == 2


# ---- the live path against a fake transport: what a mock server cannot produce -------------

class FakeAPI:
    """Just enough of OpenAI's API for one job; statuses and failures are scripted."""

    def __init__(self, statuses=("running", "succeeded"), fail_first=None, fail_always=None,
                 reply=None, interrupt=None, event_text="Step 10/27", tuned_learns=True,
                 lose_create_reply=False, foreign_jobs=False, no_choices=False,
                 no_finished_at=False):
        self.statuses, self.fail_first, self.fail_always = list(statuses), fail_first, fail_always
        self.reply, self.interrupt, self.event_text = reply, interrupt, event_text
        self.calls, self.failed, self.created = [], set(), []
        self.tuned_learns = tuned_learns  # the fine-tuned model answers like the references
        self.lose_create_reply = lose_create_reply  # the job is made, then a 502
        self.foreign_jobs = foreign_jobs  # listings: someone else's job, and has_more forever
        self.no_choices, self.no_finished_at = no_choices, no_finished_at

    def __call__(self, request):
        import httpx2
        key = f"{request.method} {request.url.path.removeprefix('/v1')}"
        self.calls.append(key)
        if self.reply and key.startswith(self.reply[0]):
            return httpx2.Response(200, content=self.reply[1], headers={
                "content-type": self.reply[2]})
        if self.fail_always and key.startswith(self.fail_always[0]):
            return httpx2.Response(self.fail_always[1], json={"error": {
                "message": "fine-tuning is not available [to this org]", "type": "x",
                "param": None, "code": None}})
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
            if self.interrupt == key:
                raise KeyboardInterrupt
            n = sum(c == key for c in self.calls)
            return httpx2.Response(200, json={
                "id": f"file-{n}", "object": "file", "bytes": 1, "created_at": 1,
                "filename": "x.jsonl", "purpose": "fine-tune", "status": "processed"})
        if key == "POST /fine_tuning/jobs":
            self.created.append(json.loads(request.content))
            if self.interrupt == key:  # the job was made; the reply never arrives
                raise KeyboardInterrupt
            if self.lose_create_reply and len(self.created) == 1:
                return httpx2.Response(502, json={"error": {"message": "bad gateway"}})
            return httpx2.Response(200, json=job)
        if key == "GET /fine_tuning/jobs":
            if self.foreign_jobs:  # ignores the filter; says there is always more
                return httpx2.Response(200, json={"object": "list", "has_more": True, "data": [
                    dict(job, id="ftjob-theirs", metadata={"edu_qa_request": "not-yours"})]})
            wanted = request.url.params.get("metadata[edu_qa_request]")
            mine = [dict(job, metadata=c["metadata"]) for c in self.created
                    if c["metadata"]["edu_qa_request"] == wanted]
            return httpx2.Response(200, json={"object": "list", "has_more": False,
                                              "data": mine})
        if key == "GET /fine_tuning/jobs/ftjob-1":
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            job["status"] = status
            if status == "succeeded":
                job.update(fine_tuned_model="ft:gpt-4o-mini-2024-07-18:org:edu-qa:abc",
                           trained_tokens=15390,
                           finished_at=None if self.no_finished_at else 2)
            if status == "failed":
                job.update(finished_at=2, error={"code": "invalid_training_file",
                                                 "message": "bad line 3",
                                                 "param": "training_file"})
            return httpx2.Response(200, json=job)
        if key == "GET /fine_tuning/jobs/ftjob-1/events":
            return httpx2.Response(200, json={"object": "list", "has_more": False, "data": [
                {"id": "ev-2", "object": "fine_tuning.job.event", "created_at": 2,
                 "level": "info", "message": self.event_text, "type": "metrics",
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
            tuned = body["model"].startswith("ft:") and self.tuned_learns
            question = body["messages"][-1]["content"]
            if self.no_choices:
                return httpx2.Response(200, json={
                    "id": "c", "object": "chat.completion", "created": 1,
                    "model": body["model"], "choices": []})
            return httpx2.Response(200, json={
                "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
                    "role": "assistant", "refusal": None,
                    "content": ANSWERS[question] if tuned else "I am not sure."}}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45}})
        if key == "POST /fine_tuning/jobs/ftjob-1/cancel":
            return httpx2.Response(200, json=dict(job, status="cancelled"))
        return httpx2.Response(404, json={"error": {"message": f"no fake for {key}"}})


def patch_client(monkeypatch, api, max_retries=2):
    """The script's own client (strict validation included) over a fake transport."""
    import httpx2
    monkeypatch.setattr(openai_jobs, "make_client", lambda url, key: MAKE_CLIENT(
        "http://127.0.0.1:9/v1", key, max_retries=max_retries,
        http_client=httpx2.Client(transport=httpx2.MockTransport(api))))


def run_live(tmp_path, *extra):
    return edu_qa.run_script(SCRIPT, ["--execute", "--output-dir", str(tmp_path / "out"),
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
    assert "[info] Step 10/27" in out and "dev:   step 18 accuracy" in out  # the checkpoint judged
    res = json.loads((tmp_path / "results" / "openai_finetune.json").read_text())
    assert res["dry_run"] is False and res["data_left_machine"] is True
    assert res["tuned_model"].startswith("ft:")
    assert res["before"]["accuracy"] < res["after"]["accuracy"]
    # training, plus step 5: 48 dev questions to the base and to the checkpoint, then 152 test
    # questions to the base and to the kept model (each reply: 40 prompt, 5 completion tokens)
    inference = (48 + 152) * (40 * 0.15 + 5 * 0.60 + 40 * 0.30 + 5 * 1.20) / 1e6
    assert res["cost_usd"] == {"amount": round(15390 * 3.00 / 1e6 + inference, 4),
                               "kind": "actual"}

    api2 = FakeAPI(statuses=("succeeded",))
    patch_client(monkeypatch, api2)
    assert run_live(tmp_path) == 0
    assert "resuming job ftjob-1" in capsys.readouterr().out
    assert "POST /files" not in api2.calls and "POST /fine_tuning/jobs" not in api2.calls


def test_a_fine_tuned_model_no_better_on_dev_is_not_used(tmp_path, key, monkeypatch, capsys):
    api = FakeAPI(tuned_learns=False)  # the checkpoint answers like the base
    patch_client(monkeypatch, api)
    assert run_live(tmp_path) == 0
    assert "kept: the BASE model" in capsys.readouterr().out
    res = json.loads((tmp_path / "results" / "openai_finetune.json").read_text())
    assert res["extra"]["kept"] == "base" and res["after"] == res["before"]
    assert res["tuned_model"] == "gpt-4o-mini-2024-07-18"
    # dev: base + the checkpoint; test: the base only (the kept model IS the base)
    assert api.calls.count("POST /chat/completions") == 48 + 48 + 152


def test_a_service_without_checkpoints_judges_the_final_model(tmp_path, key, monkeypatch,
                                                                capsys):
    api = FakeAPI()
    real = api.__call__

    def no_checkpoints(request):
        if request.url.path.endswith("/checkpoints"):
            import httpx2
            return httpx2.Response(404, json={"error": {"message": "no checkpoints here"}})
        return real(request)
    patch_client(monkeypatch, no_checkpoints)
    assert run_live(tmp_path) == 0
    res = json.loads((tmp_path / "results" / "openai_finetune.json").read_text())
    assert set(res["extra"]["dev_scores"]) == {"base", "final"}
    assert res["extra"]["kept"] == "final" and res["tuned_model"].startswith("ft:")


def test_a_refusal_is_said_in_plain_words_and_keeps_uploads_for_the_rerun(
        tmp_path, key, monkeypatch, capsys):
    api = FakeAPI(fail_always=("POST /fine_tuning/jobs", 403))
    patch_client(monkeypatch, api, max_retries=1)
    assert run_live(tmp_path) == 2
    err = capsys.readouterr().err
    assert "POST /fine_tuning/jobs failed: PermissionDeniedError (HTTP 403)" in err
    assert "'fine-tuning is not available [to this org]'" in err  # quoted, literally
    assert "2027-01-06" in err and "Traceback" not in err
    assert api.calls.count("POST /fine_tuning/jobs") == 1  # a 403 is not retried
    api2 = FakeAPI()
    patch_client(monkeypatch, api2)
    assert run_live(tmp_path) == 0
    assert "POST /files" not in api2.calls  # the files uploaded before the 403 are reused


@pytest.mark.parametrize("body,ctype", [(b"<html>Bad gateway</html>", "text/html"),
                                        (b"{not json", "application/json"),
                                        (b"{}", "application/json"),
                                        (b'{"id": null, "object": "file"}', "application/json")])
def test_a_hostile_reply_stops_cleanly_and_saves_no_null_id(tmp_path, key, monkeypatch, capsys,
                                                             body, ctype):
    patch_client(monkeypatch, FakeAPI(reply=("POST /files", body, ctype)), max_retries=0)
    assert run_live(tmp_path) == 2
    err = capsys.readouterr().err
    assert "POST /files (openai_edu_qa_training.jsonl) failed" in err
    assert "Traceback" not in err
    state = tmp_path / "out" / "state.json"
    assert not state.exists() or "null" not in state.read_text()
    patch_client(monkeypatch, FakeAPI())  # and the next run is not broken by it
    assert run_live(tmp_path) == 0


def test_a_corrupt_state_file_is_named_not_a_traceback(tmp_path, key, monkeypatch, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "state.json").write_text('{"version": 2, "services": {"x": {"s": '
                                                 '{"job_id": null}}}}')
    patch_client(monkeypatch, FakeAPI())
    assert run_live(tmp_path) == 2
    assert "state.json: not a state file this script can read" in capsys.readouterr().err


def test_ctrl_c_during_upload_exits_130_and_the_rerun_goes_on(tmp_path, key, monkeypatch,
                                                               capsys):
    patch_client(monkeypatch, FakeAPI(interrupt="POST /files"))
    assert run_live(tmp_path) == edu_qa.cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "Interrupted during POST /files" in err and "Traceback" not in err
    api = FakeAPI()
    patch_client(monkeypatch, api)
    assert run_live(tmp_path) == 0
    assert api.calls.count("POST /fine_tuning/jobs") == 1


def test_ctrl_c_after_the_job_was_created_never_creates_a_second(tmp_path, key, monkeypatch,
                                                                 capsys):
    api = FakeAPI(interrupt="POST /fine_tuning/jobs")
    patch_client(monkeypatch, api)
    assert run_live(tmp_path) == edu_qa.cli.EXIT_INTERRUPTED
    assert "Interrupted during POST /fine_tuning/jobs" in capsys.readouterr().err
    api.interrupt = None  # the same service, which now holds the job
    api.calls.clear()
    assert run_live(tmp_path) == 0
    assert "nothing created again" in capsys.readouterr().out
    assert "POST /fine_tuning/jobs" not in api.calls and len(api.created) == 1
    assert api.created[0]["metadata"]["training_sha256"] == openai_jobs.sha256_file(oft.TRAINING_FILE)


def test_failed_job_says_why_exits_3_and_new_job_starts_another(tmp_path, key, monkeypatch,
                                                                 capsys):
    patch_client(monkeypatch, FakeAPI(statuses=("running", "failed")))
    assert run_live(tmp_path) == openai_jobs.EXIT_JOB_FAILED
    out = capsys.readouterr().out
    assert "failed: invalid_training_file: bad line 3" in out and "--new-job" in out
    assert not (tmp_path / "results" / "openai_finetune.json").exists()
    patch_client(monkeypatch, FakeAPI(statuses=("failed",)))
    assert run_live(tmp_path) == openai_jobs.EXIT_JOB_FAILED  # the same, not "None: None", exit 0
    api = FakeAPI()
    patch_client(monkeypatch, api)
    assert run_live(tmp_path, "--new-job") == 0
    assert api.calls.count("POST /fine_tuning/jobs") == 1 and "POST /files" not in api.calls


def test_a_lost_create_reply_is_not_retried_and_the_rerun_finds_the_job(tmp_path, key,
                                                                        monkeypatch, capsys):
    """The SDK retries a 502 by itself: on the create call that would make a second job (the
    first was made; only its reply was lost). Retries are off there, and the re-run finds the
    job by the metadata it was sent with."""
    api = FakeAPI(lose_create_reply=True)
    patch_client(monkeypatch, api, max_retries=2)
    assert run_live(tmp_path) == 2
    assert "POST /fine_tuning/jobs failed" in capsys.readouterr().err
    assert len(api.created) == 1
    assert run_live(tmp_path) == 0
    assert "nothing created again" in capsys.readouterr().out
    assert len(api.created) == 1


def test_the_rerun_never_adopts_someone_elses_job_and_lists_one_page(tmp_path, key,
                                                                     monkeypatch, capsys):
    patch_client(monkeypatch, FakeAPI(interrupt="POST /fine_tuning/jobs"))
    assert run_live(tmp_path) == edu_qa.cli.EXIT_INTERRUPTED
    api = FakeAPI(foreign_jobs=True)
    patch_client(monkeypatch, api)
    assert run_live(tmp_path) == 0
    assert "ftjob-theirs" not in capsys.readouterr().out
    assert api.calls.count("GET /fine_tuning/jobs") == 1  # one page, though has_more stays true
    assert len(api.created) == 1  # not found: created (with the same intent and key)


def test_no_choices_and_no_finished_at_are_said_not_tracebacks(tmp_path, key, monkeypatch,
                                                              capsys):
    patch_client(monkeypatch, FakeAPI(no_choices=True))
    assert run_live(tmp_path) == 2
    err = capsys.readouterr().err
    assert "with no choices" in err and "Traceback" not in err
    patch_client(monkeypatch, FakeAPI(no_finished_at=True))
    assert run_live(tmp_path / "again") == 0
    res = json.loads((tmp_path / "again" / "results" / "openai_finetune.json").read_text())
    assert res["wall_time_s"]["tune"] is None


def test_event_text_is_shown_literally(tmp_path, key, monkeypatch, capsys):
    patch_client(monkeypatch, FakeAPI(event_text="loss [/b] for a[i] [bold]x[/bold]"))
    assert run_live(tmp_path) == 0
    assert "[info] loss [/b] for a[i] [bold]x[/bold]" in capsys.readouterr().out


def test_max_wait_leaves_the_job_running_and_exits_4(tmp_path, key, monkeypatch, capsys):
    patch_client(monkeypatch, FakeAPI(statuses=("running",)))
    assert run_live(tmp_path, "--max-wait", "0") == openai_jobs.EXIT_STILL_RUNNING
    assert "--max-wait reached; job ftjob-1 goes on" in capsys.readouterr().out


def test_cancel_is_not_refused_by_max_cost(tmp_path, key, monkeypatch, capsys):
    patch_client(monkeypatch, FakeAPI(statuses=("running",)))
    run_live(tmp_path, "--max-wait", "0")
    api = FakeAPI()
    patch_client(monkeypatch, api)
    assert run_live(tmp_path, "--cancel", "--max-cost", "0.00001") == 0
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


@pytest.mark.slow
def test_contract_live_path_against_openai_spec(tmp_path, mock_server, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-contract-test")
    monkeypatch.setenv("OPENAI_BASE_URL", mock_server)
    uploads = []

    def client(url, key):
        c = MAKE_CLIENT(url, key, max_retries=0, default_headers={
            "X-Steady-Seed": SUCCEEDED_SEED, "X-Steady-Reject-On-Error": "true"})
        real = c.files.create
        c.files.create = lambda **kw: uploads.append(kw["purpose"]) or real(**kw)
        return c
    monkeypatch.setattr(openai_jobs, "make_client", client)
    assert run_live(tmp_path) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert uploads == ["fine-tune", "fine-tune"]
    assert "created job" in out and "succeeded" in out
    res = json.loads((tmp_path / "results" / "openai_finetune.json").read_text())
    assert res["dry_run"] is False and res["before"]["n"] == res["after"]["n"] == 152
    assert res["extra"]["status"] == "succeeded"
    state = json.loads((tmp_path / "out" / "state.json").read_text())
    assert len(state["services"][mock_server]) == 1  # one job, for one training file

    uploads.clear()
    assert run_live(tmp_path) == 0
    assert "resuming job" in capsys.readouterr().out
    assert uploads == []  # the second run watched the same job: nothing uploaded, nothing paid
