"""Same command, same numbers: everything random is seeded (the adapter's initial weights
included), a service job is seeded, and an exercise never overwrites a measured result."""

import hashlib
import json
import subprocess
import sys

import pytest

import edu_qa
import huggingface_lora as lora
from conftest import ROOT
from helpers import tiny_setup, tune


def adapter_tensors(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def train_once(tiny_model, out, precision, seed=0):
    """Steps 1-4 of the recipe on the tiny model, then three test answers."""
    s = tiny_setup(tiny_model, out, precision=precision, epochs=1, seed=seed,
                   judge_on_dev=False)
    model, tok = s.model, s.tok
    initial = adapter_tensors(model)
    tune(s)
    chats = [edu_qa.chat_messages(ex.question) for ex in edu_qa.load_qa().split("test")[:3]]
    answers, _ = edu_qa.generate(model.eval(), tok, chats, 12, batch_size=3)
    return initial, adapter_tensors(model), answers


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_two_runs_of_one_seed_train_the_same_adapter(tmp_path, tiny_model, precision):
    """get_peft_model draws LoRA's A matrices before Trainer seeds: unseeded, two runs of the
    same command start (and end) apart. bf16 runs on any CPU (emulated where not native)."""
    import torch
    init1, end1, answers1 = train_once(tiny_model, tmp_path / "a", precision)
    init2, end2, answers2 = train_once(tiny_model, tmp_path / "b", precision)
    assert init1.keys() == end1.keys() and len(init1) > 0
    assert all(torch.equal(init1[k], init2[k]) for k in init1)
    assert all(torch.equal(end1[k], end2[k]) for k in end1)
    assert not all(torch.equal(init1[k], end1[k]) for k in init1), "training changed nothing"
    assert answers1 == answers2
    other, _, _ = train_once(tiny_model, tmp_path / "c", precision, seed=1)
    assert not all(torch.equal(init1[k], other[k]) for k in init1), "the seed changes the draw"


def test_seed_everything_seeds_python_numpy_and_torch():
    import random

    import numpy
    import torch
    draws = []
    for _ in range(2):
        edu_qa.seed_everything(7)
        draws.append((random.random(), numpy.random.rand(), torch.rand(1).item()))
    assert draws[0] == draws[1]


def test_a_service_job_is_seeded_and_one_without_a_seed_gets_one(tmp_path, tiny_model):
    """Two jobs with the same seed give identical checkpoints; a job created without one
    reports the seed it was given, as OpenAI's does."""
    from openai import OpenAI

    import finetune_service as fs
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{2 * i}."}]} for i in range(12)]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    with fs.serve("127.0.0.1", 0, data_dir=tmp_path / "service",
                  base_models={"tiny": str(tiny_model)}) as url:
        client = OpenAI(base_url=url, api_key="sk-local")
        file = client.files.create(file=("train.jsonl", body), purpose="fine-tune")
        hyper = {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 1}
        jobs = [client.fine_tuning.jobs.create(model="tiny", training_file=file.id, seed=seed,
                                               hyperparameters=hyper)
                for seed in (5, 5, None)]
        assert jobs[0].seed == jobs[1].seed == 5
        assert isinstance(jobs[2].seed, int) and 0 <= jobs[2].seed < 2**31
        import time
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            done = [client.fine_tuning.jobs.retrieve(j.id) for j in jobs]
            if all(j.status in ("succeeded", "failed", "cancelled") for j in done):
                break
            time.sleep(0.2)
        assert [j.status for j in done] == ["succeeded"] * 3, [j.error for j in done]
        assert done[2].seed == jobs[2].seed
        weights = []
        for job in done[:2]:
            folders = sorted((tmp_path / "service").rglob(f"*{job.id}*/checkpoints/step-*"))
            assert folders, f"no checkpoint folder for {job.id}"
            weights.append([hashlib.sha256((f / "adapter_model.safetensors").read_bytes())
                            .hexdigest() for f in folders])
        assert weights[0] == weights[1]


def test_other_settings_write_beside_the_measured_results_not_over_them():
    import dspy_example
    import openai_finetune
    parse = edu_qa.parse_config
    assert parse(dspy_example.Config, "x", []).results_dir == str(edu_qa.RESULTS_DIR)
    # settings that do not change the numbers keep the default run's folder
    assert parse(lora.Config, "x", ["--output-dir", "/tmp/x", "--question", "3"]
                 ).results_dir == str(edu_qa.RESULTS_DIR)
    labeled = parse(dspy_example.Config, "x", ["--optimizer", "labeled"]).results_dir
    assert labeled == str(edu_qa.EXERCISE_RESULTS / "optimizer-labeled")
    assert parse(openai_finetune.Config, "x", ["--dry-run"]).results_dir.endswith("dry-run")
    small = parse(lora.Config, "x", ["--train-size", "10", "--data", "/a/b/my.jsonl"])
    assert small.results_dir == str(edu_qa.EXERCISE_RESULTS / "data-my_train-size-10")
    # named on purpose: as given
    assert parse(lora.Config, "x", ["--train-size", "10", "--results-dir", "results"]
                 ).results_dir == "results"


def snapshot(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_dry_run_leaves_results_untouched(no_network):
    """LESSON's first exercise: the plan alone. It used to replace the measured OpenAI-style
    row with a dry-run file."""
    before = snapshot(edu_qa.RESULTS_DIR)
    proc = subprocess.run([sys.executable, "openai_finetune.py", "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot(edu_qa.RESULTS_DIR) == before
    written = edu_qa.EXERCISE_RESULTS / "dry-run" / "openai_finetune.json"
    assert json.loads(written.read_text())["dry_run"] is True


def results_without_times(path):
    res = json.loads(path.read_text())
    for key in ("created", "wall_time_s", "machine"):
        res.pop(key)
    res["tokens"].pop("training_per_s", None)
    for row in res["extra"].get("epochs") or []:
        row.pop("seconds")
    for row in res["extra"].get("train_log") or []:
        for key in list(row):
            if key.endswith(("runtime", "per_second", "_time")) or key == "total_flos":
                row.pop(key)
    return res


@pytest.mark.slow
def test_the_same_command_twice_gives_the_same_results_file(tmp_path, tiny_model):
    """A whole run of the LoRA script, twice, on the tiny model: identical results apart from
    times, dates and the machine."""
    argv = ["huggingface_lora.py", "--model", str(tiny_model), "--train-size", "16",
            "--epochs", "1", "--batch-size", "4", "--max-new-tokens", "8"]
    files = []
    for run in ("one", "two"):
        results = tmp_path / run
        proc = subprocess.run([sys.executable, *argv, "--results-dir", str(results),
                               "--output-dir", str(tmp_path / f"out-{run}")], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        files.append(results / "huggingface_lora.json")
    one, two = (results_without_times(f) for f in files)
    one["config"].pop("output_dir"), two["config"].pop("output_dir")
    one["config"].pop("results_dir"), two["config"].pop("results_dir")
    one["command"] = two["command"] = None
    one["artifact"].pop("path"), two["artifact"].pop("path")
    one["before_source"].pop("file"), two["before_source"].pop("file")
    assert one == two


def test_a_run_says_where_it_falls_among_the_recorded_seeds(tmp_path, monkeypatch):
    """seed_runs keeps runs whose settings are the default run's apart from the seed; the
    scoreboard line and the README's table are built from them."""
    from edu_qa import seeds
    from helpers import make_results
    monkeypatch.setattr(seeds, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(seeds, "SEEDS_DIR", tmp_path / "seeds")
    data = edu_qa.load_qa()
    for seed, right in ((0, 53), (1, 80), (2, 70)):  # seed 0: 3 fixed, within noise
        res = make_results(data, "huggingface_lora", before_right=50, after_right=right)
        res["config"] = {"seed": seed, "epochs": 2, "results_dir": "x", "output_dir": "y"}
        edu_qa.write_results(res, seeds.seed_folder(seed) if seed else tmp_path)
    other = make_results(data, "huggingface_lora", after_right=150)  # other settings: left out
    other["config"] = {"seed": 3, "epochs": 4}
    edu_qa.write_results(other, tmp_path / "seeds" / "seed-3")
    runs = seeds.seed_runs(data, "huggingface_lora")
    assert [r["seed"] for r in runs] == [0, 1, 2]
    line = seeds.spread_in_words(data, "huggingface_lora", runs[0], 0)
    assert line.startswith("this run (seed 0): accuracy 0.35, F1 ")
    assert "seeds 0-2 (python seeds.py): accuracy 0.35-0.53 (mean 0.45)" in line
    assert seeds.holds_in_words(runs) == "more than noise in 2 of 3 seeds"


def test_the_exercises_run_over_seeds_are_the_lessons_commands():
    """`python seeds.py --exercises` runs exactly the settings LESSON.md's exercises ask for,
    each seed into its own folder, so the solutions' ranges answer the exercises as written."""
    import seeds as seeds_script
    from edu_qa.seeds import EXERCISES
    lesson = (ROOT / "LESSON.md").read_text(encoding="utf-8")
    for name, (method, settings) in EXERCISES.items():
        script = seeds_script.SCRIPTS[method]
        assert f"python {script} {' '.join(settings)}" in lesson or \
            (script == "dspy_example.py" and f"`{' '.join(settings)}`" in lesson), name
        for seed in (0, 3):  # seed 0 too: an exercise never writes results/<method>.json
            argv = seeds_script.command(method, seed, name)
            assert argv[:len(settings) + 1] == [script, *settings]
            assert argv[argv.index("--seed") + 1] == str(seed)
            assert argv[argv.index("--results-dir") + 1] == \
                f"results/exercises/{name}/seed-{seed}"


def test_a_seed_runs_in_a_fresh_output_folder(tmp_path, monkeypatch):
    """A seed that is run again (its results file deleted) starts without the outputs of the
    last run: DSPy's cache there would answer every call, and the run's minutes, which LESSON.md
    reports, would be the cache's."""
    import seeds as seeds_script
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(seeds_script, "recorded", lambda *a: False)
    monkeypatch.setattr(seeds_script, "exercise_folder", lambda name, seed: tmp_path / "r")
    old = tmp_path / "outputs" / "exercises" / "optimizer-bootstrap-seed-0"
    old.mkdir(parents=True)
    (old / "cache.db").write_text("answers of the last run")
    seen = []

    def fake_run(argv, **kwargs):
        seen.append((argv, old.exists()))
        return subprocess.CompletedProcess(argv, 0)
    monkeypatch.setattr(seeds_script.subprocess, "run", fake_run)
    assert seeds_script.main(["--exercises", "optimizer-bootstrap", "--seeds", "1"]) == 0
    assert len(seen) == 1 and seen[0][1] is False  # removed before the run started
    assert seen[0][0][seen[0][0].index("--output-dir") + 1] == str(old.relative_to(tmp_path))
