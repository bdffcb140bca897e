"""Results files and the scoreboard, on hand-made results."""

import io
import json

import pytest
from rich.console import Console

import edu_qa
from helpers import make_results


def columns(data, tmp_path, this_run=None):
    return {c["method"]: c for c in edu_qa.scoreboard_columns(data, tmp_path, this_run)}


def test_scoreboard_mixes_only_the_same_dataset(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    edu_qa.write_results(make_results(data, "huggingface_lora"), tmp_path)
    edu_qa.write_results(make_results(data, "openai_finetune", dry_run=True), tmp_path)
    edu_qa.write_results(make_results(data, "dspy", sha="0" * 64), tmp_path)
    cols = columns(data, tmp_path)
    lora = cols["LoRA (transformers + peft)"]
    # 12/152 right after: Wilson 95% interval 0.05 to 0.13; 6 fixed, none broken: exact
    # McNemar p = 2 / 2**6 = 0.03
    assert lora["status"] == "ok" and lora["accuracy"] == "0.08 (0.05–0.13)"
    assert lora["vs_accuracy"] == ("+0.04 (6 fixed, 0 broken; exact McNemar p = 0.03): "
                                   "more than noise")
    assert lora["tune_time"] == "95 s"
    dry = cols["OpenAI fine-tuning"]
    assert dry["status"] == "ok" and dry["accuracy"] == "– (dry run)"
    assert dry["cost"] == "$0.02 (estimated)" and "dry run" in dry["note"]
    assert dry["data_sent"].startswith("no (a plan only); with --execute the training file")
    other = cols["DSPy prompt optimization"]
    assert other["status"] == "other-dataset" and "python dspy_example.py" in other["note"]


def test_each_column_says_whether_it_is_this_run_or_a_file(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    for method in ("huggingface_lora", "dspy"):
        edu_qa.write_results(make_results(data, method), tmp_path)
    cols = columns(data, tmp_path, this_run="dspy")
    assert cols["DSPy prompt optimization"]["source"] == "this run"
    lora = cols["LoRA (transformers + peft)"]["source"]
    assert lora.startswith(str(tmp_path / "huggingface_lora.json") + ", 20")


def test_the_shared_baseline_is_the_first_column_and_is_computed_once(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    test = data.split("test")
    console = Console(file=io.StringIO())
    calls = []

    def answer(chats):
        calls.append(len(chats))
        return [ex.answer for ex in test]
    first, source = edu_qa.plain_prompt_baseline("embedded", data, 48, answer, console,
                                                 tmp_path)
    again, source_again = edu_qa.plain_prompt_baseline("embedded", data, 48, answer, console,
                                                       tmp_path)
    assert calls == [152] and first == again  # the second method reads the first one's
    assert source["this_run"] and not source_again["this_run"]
    _, other = edu_qa.plain_prompt_baseline("embedded", data, 64, answer, console, tmp_path)
    assert calls == [152, 152] and other["this_run"]  # other settings: answered again
    col = edu_qa.scoreboard_columns(data, tmp_path)[0]
    assert col["method"] == edu_qa.BASELINE_TITLE and col["accuracy"].startswith("1.00 (")


def test_a_schema_1_file_is_read_and_graded_with_todays_metric(tmp_path):
    """Version 1 files have no intervals and were graded by the old metric, which failed
    '365.25 days' against the key 365: the scoreboard grades the answers again."""
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    test = data.split("test")
    res = make_results(data, "huggingface_lora", before_right=0, after_right=0)
    res["schema_version"] = 1
    for row in res["predictions"]:
        for when in ("before", "after"):
            row.pop(f"{when}_correct", None)
        if row["question"].startswith("How long does Earth take"):
            row["after"] = "The Earth takes approximately 365.25 days to orbit the Sun."
    res["before"] = {"n": 24, "accuracy": 0.0, "f1": 0.0, "per_subject": {}}
    res["after"] = {"n": 24, "accuracy": 0.0, "f1": 0.0, "per_subject": {}}
    edu_qa.write_results(res, tmp_path)
    lora = columns(data, tmp_path)["LoRA (transformers + peft)"]
    assert lora["accuracy"].startswith(f"{1 / len(test):.2f} (")
    assert "1 fixed, 0 broken" in lora["vs_accuracy"]


def test_scoreboard_shows_the_command_for_a_missing_method(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    cols = edu_qa.scoreboard_columns(data, tmp_path)
    assert [c["status"] for c in cols] == ["missing"] * 3
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
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert "$0.02" in text and "(estimated)" in text
    # method against method, paired question by question
    assert "DSPy minus LoRA: accuracy +0.00" in text


def test_results_file_has_the_documented_schema(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    path = edu_qa.write_results(make_results(data, "huggingface_lora"), tmp_path)
    res = json.loads(path.read_text())
    assert res["schema_version"] == 2
    for field in ("schema_version", "method", "model", "dataset", "before", "before_source",
                  "after", "predictions", "wall_time_s", "tokens", "cost_usd",
                  "trainable_params", "artifact", "data_left_machine", "versions", "dry_run"):
        assert field in res
    assert res["dataset"]["split_sizes"] == {"train": 72, "dev": 48, "test": 152}
    for field in ("accuracy_ci", "strict_accuracy", "f1_ci", "words_per_answer"):
        assert field in res["after"]
    assert {"before_correct", "after_correct"} <= set(res["predictions"][0])


def test_unreadable_results_file_is_reported_not_fatal(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    (tmp_path / "dspy.json").write_text("{not json")
    cols = edu_qa.scoreboard_columns(data, tmp_path)
    assert cols[0]["status"] == "unreadable"


def test_training_subset_is_stratified_seeded_and_nested():
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    train = data.split("train")
    five = edu_qa.training_subset(train, 5, seed=0)
    assert len(five) == 5 and len({r.subject for r in five}) == 5  # 5 subjects, not biology
    assert five == edu_qa.training_subset(train, 5, seed=0)        # seeded
    assert five != edu_qa.training_subset(train, 5, seed=1)
    sixteen = edu_qa.training_subset(train, 16, seed=0)
    assert set(edu_qa.by_subject(sixteen).values()) == {2}          # 8 subjects x 2
    assert {r.question for r in five} <= {r.question for r in sixteen}  # a larger N adds
    assert [r.line for r in sixteen] == sorted(r.line for r in sixteen)  # file order
    assert edu_qa.training_subset(train, None) == train


def test_run_for_results_runs_the_script_and_reads_back_its_file(tmp_path):
    """What data_needs.py and the benchmark measure through: the script itself, quiet, its
    results file read back, the shared baseline copied in; a failure names the command."""
    baseline = tmp_path / "shared" / edu_qa.BASELINE_FILE
    baseline.parent.mkdir()
    baseline.write_text('{"not": "read by a dry run"}')
    res = edu_qa.run_for_results(edu_qa.HERE / "openai_finetune.py",
                                 ["--dry-run", "--output-dir", str(tmp_path / "out")],
                                 tmp_path / "results", baseline=baseline)
    assert res["method"] == "openai_finetune" and res["dry_run"] is True
    assert (tmp_path / "results" / edu_qa.BASELINE_FILE).read_text() == baseline.read_text()
    with pytest.raises(edu_qa.UserError, match="openai_finetune.py --data .* exited 2"):
        edu_qa.run_for_results(edu_qa.HERE / "openai_finetune.py",
                               ["--data", str(tmp_path / "missing.jsonl"), "--dry-run"],
                               tmp_path / "results")


def test_step_6_notice_says_which_method_the_numbers_support(tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    edu_qa.write_results(make_results(data, "huggingface_lora", before_right=6,
                                      after_right=20), tmp_path)  # 14 fixed: more than noise
    edu_qa.write_results(make_results(data, "dspy", before_right=6, after_right=8), tmp_path)
    cols = edu_qa.scoreboard_columns(data, tmp_path)
    text = edu_qa.scoreboard.which_method(cols)
    assert text.startswith("highest accuracy: LoRA 0.13, DSPy 0.05")
    assert "more than noise: LoRA (F1: " in text and "The data supports LoRA" in text
    assert "data sent off this machine: none" in text
    edu_qa.write_results(make_results(data, "huggingface_lora", before_right=6,
                                      after_right=8), tmp_path)
    text = edu_qa.scoreboard.which_method(edu_qa.scoreboard_columns(data, tmp_path))
    assert "more than noise: none" in text and "choose by what each needs" in text


@pytest.mark.parametrize("flags, unit, native_bf16", [
    ("fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile", "AMX", True),  # the Intel Xeon of 12-01
    ("avx2 avx512f avx512_bf16", "AVX512-BF16", True),                 # the AMD EPYC of 11-27
    ("avx2 avx512f", "AVX512", False),
    ("fpu avx2 fma", "AVX2", False),                                   # the AMD EPYC of 12-01
    ("fp asimd", None, False)])
def test_results_say_the_cpus_vector_unit_which_decides_bf16_and_fp32_rounding(
        monkeypatch, flags, unit, native_bf16):
    """A run's numbers depend on the vector unit (fp32 adds in another order on AVX2 than on
    AVX512, bf16 is emulated without AVX512-BF16 or AMX): every results file records it."""
    monkeypatch.setattr(edu_qa.machine_facts, "_cpuinfo",
                        lambda: {"model name": "Some CPU", "flags": flags})
    assert edu_qa.machine()["vector_unit"] == unit and edu_qa.machine()["cpu"] == "Some CPU"
    assert edu_qa.cpu_has_native_bf16() is native_bf16
