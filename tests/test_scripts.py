"""The scripts stay in step: same six headers and step functions; --help is fast and light."""

import dataclasses
import importlib
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT

SCRIPTS = sorted(p.name for p in ROOT.glob("*.py")
                 if p.name in ("dspy_example.py", "openai_finetune.py", "huggingface_lora.py"))
HEADERS = ["# %% Step 1. Environment & data preparation", "# %% Step 2. Data format preparation",
           "# %% Step 3. Model configuration", "# %% Step 4. Fine-tuning / optimization",
           "# %% Step 5. Inference and demonstration", "# %% Step 6. Comparison"]
STEP_FUNCTIONS = ["prepare_data", "convert_format", "configure_model", "tune", "infer",
                  "compare"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_cell_does_its_step_at_top_level(script):
    """Each of the six cells ends by running its step (under __main__, which a notebook
    kernel also is), so the cells run one by one; the first cell reads NOTEBOOK_ARGS."""
    text = (ROOT / script).read_text()
    cells = text.split("# %% Step ")[1:]
    assert len(cells) == 6
    for number, cell in enumerate(cells, 1):
        assert '\nif __name__ == "__main__":\n' in cell, f"step {number} runs nothing"
        assert f"edu_qa.step(console, {number}," in cell
    assert "edu_qa.begin(Config, __doc__, NOTEBOOK_ARGS)" in cells[0]
    assert "\ndef main(" not in text


@pytest.mark.parametrize("script", SCRIPTS)
def test_same_six_steps(script):
    text = (ROOT / script).read_text()
    positions = [text.index(h) for h in HEADERS]
    assert positions == sorted(positions), "the six step headers, in order"
    for name in STEP_FUNCTIONS:
        assert re.search(rf"^def {name}\(", text, re.M), f"{script} has no {name}()"
    # the shared settings come from one place, so every script has them, with one meaning
    assert re.search(r"^class Config\(edu_qa\.SharedConfig\):", text, re.M)
    module = importlib.import_module(script.removesuffix(".py"))
    names = {f.name for f in dataclasses.fields(module.Config)}
    assert {"data", "model", "seed", "output_dir", "results_dir", "execute", "train_size",
            "question", "max_new_tokens"} <= names


# The library calls each method is about, in the step where a student reads them (issue 25):
# the scripts make them; the package keeps only the bookkeeping around them.
CALLS = {
    "huggingface_lora.py": {
        2: ["apply_chat_template(", "[-100]"],
        3: ["LoraConfig(", "get_peft_model(", "set_seed("],
        4: ["TrainingArguments(", "Trainer(", "trainer.train(", "model.save_pretrained("],
        5: ["model.generate(", "model.disable_adapter()", "PeftModel.from_pretrained("]},
    "dspy_example.py": {
        2: ["(dspy.Signature)", "dspy.InputField(", "dspy.OutputField("],
        3: ["dspy.LM(", "dspy.Predict(", "dspy.BootstrapFewShotWithRandomSearch(",
            "dspy.configure("],
        4: ["optimizer.compile(", "dspy.Evaluate(", "keep.save("],
        5: [".load("]},
    "openai_finetune.py": {
        4: ["client.files.create(", ".fine_tuning.jobs.create(",
            "client.fine_tuning.jobs.retrieve(", "client.fine_tuning.jobs.list_events(",
            "client.fine_tuning.jobs.checkpoints.list(", "client.chat.completions.create("]},
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_makes_its_methods_calls_in_their_step(script):
    cells = (ROOT / script).read_text().split("# %% Step ")[1:]
    for step, calls in CALLS[script].items():
        for call in calls:
            assert call in cells[step - 1], f"{script}: {call} is not in step {step}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_steps_return_the_same_records(script):
    """Step 1 returns edu_qa.Prepared and step 4 edu_qa.Tuned in every script, and one
    edu_qa.Run takes the facts of every step: a diff of two scripts shows the method."""
    text = (ROOT / script).read_text()
    assert re.search(r"^def prepare_data\(.*\) -> edu_qa\.Prepared:", text, re.M)
    assert re.search(r"^def tune\((.|\n)*?\) -> edu_qa\.Tuned( \| None)?:", text, re.M)
    assert "edu_qa.Answered(" in text and "run = edu_qa.Run.start(" in text
    assert len(text.splitlines()) <= 400


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_help_is_instant_and_imports_nothing_heavy(script):
    code = (f"import sys, runpy; sys.argv = ['{script}', '--help']\n"
            f"try: runpy.run_path('{script}', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'dspy', 'openai') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--execute" in proc.stdout
    assert "HEAVY []" in proc.stdout
    assert time.perf_counter() - start < 10  # generous: a loaded CI machine; the benchmark times it


@pytest.mark.slow
def test_importing_a_script_runs_nothing():
    proc = subprocess.run([sys.executable, "-c", "import huggingface_lora; print('ok')"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok"


def test_a_process_that_imported_ipykernel_is_not_a_notebook(monkeypatch):
    """Only a kernel's own shell makes a notebook: the test that runs notebooks imports
    ipykernel, and the scripts run after it must still read their command line."""
    import sys
    import types

    import edu_qa
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert not edu_qa.in_notebook()


@pytest.mark.parametrize("script", SCRIPTS)
def test_print_settings_states_the_defaults_and_runs_nothing(script, capsys):
    """A script's settings, read through its command line (data_needs.py does so): every
    Config field with its default, then exit 0 before any step."""
    import json

    import edu_qa
    module = importlib.import_module(script.removesuffix(".py"))
    assert edu_qa.run_script(ROOT / script, ["--print-settings", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    settings = json.loads(out)
    # a seed other than the default's writes beside the measured results, not over them
    assert settings == dict(dataclasses.asdict(module.Config()), seed=3,
                            results_dir=str(edu_qa.EXERCISE_RESULTS / "seed-3"))
    assert "Step 1" not in out
