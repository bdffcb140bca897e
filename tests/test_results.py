"""Results files and the scoreboard, on hand-made results."""

import dataclasses
import io
import json

from rich.console import Console

import edu_qa


@dataclasses.dataclass(frozen=True)
class FakeConfig:
    data: str = "x.jsonl"
    seed: int = 0


def make_results(data, method, *, dry_run=False, sha=None, before=0.25, after=0.5):
    res = edu_qa.new_results(method, FakeConfig(), data, model="m", dry_run=dry_run)
    if sha:
        res["dataset"]["sha256"] = sha
    if not dry_run:
        res["before"] = {"n": 24, "accuracy": before, "f1": 0.1, "per_subject": {}}
        res["after"] = {"n": 24, "accuracy": after, "f1": 0.3, "per_subject": {}}
        res["wall_time_s"]["tune"] = 95.0
    else:
        res["cost_usd"] = {"amount": 0.02, "kind": "estimated"}
    return res


def test_scoreboard_mixes_only_the_same_dataset(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    edu_qa.write_results(make_results(data, "huggingface_lora"), tmp_path)
    edu_qa.write_results(make_results(data, "openai_finetune", dry_run=True), tmp_path)
    edu_qa.write_results(make_results(data, "dspy", sha="0" * 64), tmp_path)
    rows = {r["method"]: r for r in edu_qa.scoreboard_rows(data.sha256, tmp_path)}
    lora = rows["LoRA (transformers + peft)"]
    assert lora["status"] == "ok" and lora["accuracy"] == "0.25 → 0.50"
    assert lora["tune_time"] == "95 s"
    dry = rows["OpenAI fine-tuning"]
    assert dry["status"] == "ok" and dry["accuracy"] == "– → –"
    assert dry["cost"] == "$0.02 (estimated)" and "dry run" in dry["note"]
    other = rows["DSPy prompt optimization"]
    assert other["status"] == "other-dataset" and "python dspy_example.py" in other["note"]


def test_scoreboard_shows_the_command_for_a_missing_method(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    rows = edu_qa.scoreboard_rows(data.sha256, tmp_path)
    assert [r["status"] for r in rows] == ["missing"] * 3
    out = io.StringIO()
    edu_qa.print_scoreboard(Console(file=out, width=250), data, tmp_path)
    for _, command in edu_qa.METHODS.values():
        assert f"not run: {command}" in out.getvalue()


def test_scoreboard_fits_an_80_column_terminal_without_cutting_a_value(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    for method in ("huggingface_lora", "dspy"):
        edu_qa.write_results(make_results(data, method), tmp_path)
    edu_qa.write_results(make_results(data, "openai_finetune", dry_run=True), tmp_path)
    out = io.StringIO()
    edu_qa.print_scoreboard(Console(file=out, width=80), data, tmp_path)
    text = out.getvalue()
    lines = text.splitlines()
    assert "…" not in text and max(len(line) for line in lines) <= 80
    # each measure is one row whose cells hold whole values
    assert any("accuracy" in ln and ln.count("0.25 → 0.50") == 2 for ln in lines)
    assert any("cost" in ln and "$0.02 (estimated)" in ln for ln in lines)


def test_results_file_has_the_documented_schema(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    path = edu_qa.write_results(make_results(data, "huggingface_lora"), tmp_path)
    res = json.loads(path.read_text())
    for field in ("schema_version", "method", "model", "dataset", "before", "after",
                  "predictions", "wall_time_s", "tokens", "cost_usd", "trainable_params",
                  "artifact", "data_left_machine", "versions", "dry_run"):
        assert field in res
    assert res["dataset"]["split_sizes"] == {"train": 72, "dev": 24, "test": 24}


def test_unreadable_results_file_is_reported_not_fatal(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    (tmp_path / "dspy.json").write_text("{not json")
    rows = edu_qa.scoreboard_rows(data.sha256, tmp_path)
    assert rows[0]["status"] == "unreadable"
