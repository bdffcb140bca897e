"""Each script, converted with jupytext, runs top to bottom as a notebook in a Jupyter kernel,
its settings given by the one line a teacher edits (NOTEBOOK_ARGS), and leaves each step's
results in variables to inspect."""

import json

import pytest

from conftest import ROOT


def run_as_notebook(script: str, args: list[str], inspect: str):
    """The script as a notebook, NOTEBOOK_ARGS set to args, one cell added at the end that
    prints inspect (an expression over the notebook's variables); returns what it printed."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    nb = jupytext.read(ROOT / script)
    line = "NOTEBOOK_ARGS: list[str] = []"
    cells = [c for c in nb.cells if line in c.source]
    assert len(cells) == 1, "one line a teacher edits"
    cells[0].source = cells[0].source.replace(line, f"NOTEBOOK_ARGS = {args!r}")
    nb.cells.append(nbformat.v4.new_code_cell(f"print(json.dumps({inspect}))"))
    nb.cells.insert(0, nbformat.v4.new_code_cell("import json"))
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    out = nb.cells[-1].outputs
    return json.loads("".join(o.get("text", "") for o in out if o.output_type == "stream"))


@pytest.mark.slow
def test_lora_runs_as_a_notebook(tmp_path, tiny_model):
    seen = run_as_notebook("huggingface_lora.py", [
        "--model", str(tiny_model), "--train-size", "8", "--epochs", "1", "--batch-size", "4",
        "--max-new-tokens", "4", "--no-verify-reload", "--output-dir", str(tmp_path / "out"),
        "--results-dir", str(tmp_path / "results")],
        '{"train": len(formatted.train), "kept": tuned.kept, "n": answered.scores["after"]["n"], '
        '"results": run.results["method"]}')
    assert seen == {"train": 8, "kept": seen["kept"], "n": 152, "results": "huggingface_lora"}
    assert (tmp_path / "results" / "huggingface_lora.json").exists()


@pytest.mark.slow
def test_dspy_runs_as_a_notebook(tmp_path, tiny_model):
    seen = run_as_notebook("dspy_example.py", [
        "--model", str(tiny_model), "--optimizer", "labeled", "--train-size", "4",
        "--max-new-tokens", "4", "--output-dir", str(tmp_path / "out"),
        "--results-dir", str(tmp_path / "results")],
        '{"demos": len(tuned.optimized.predictors()[0].demos), '
        '"stages": sorted(run.results["extra"]["stages"]), "n": answered.scores["after"]["n"]}')
    assert seen == {"demos": 4, "stages": ["optimized program", "zero-shot program"], "n": 152}


@pytest.mark.slow
def test_openai_runs_as_a_notebook(tmp_path):
    """The local service's whole workflow, in a kernel, on the embedded model (small)."""
    seen = run_as_notebook("openai_finetune.py", [
        "--train-size", "10", "--epochs", "1", "--max-new-tokens", "4",
        "--output-dir", str(tmp_path / "out"), "--results-dir", str(tmp_path / "results")],
        '{"status": run.results["extra"]["status"], "epochs": plan["epochs"], '
        '"n": answered.scores["after"]["n"]}')
    assert seen == {"status": "succeeded", "epochs": 1, "n": 152}


@pytest.mark.parametrize("script", ["huggingface_lora.py", "dspy_example.py",
                                    "openai_finetune.py"])
def test_rendered_notebook_is_the_script_run_to_its_end(script):
    """notebooks/<script>.ipynb, what the repository page shows, holds exactly the script's
    cells (a script edited without `python report.py --notebooks` fails here), and it was run:
    every step's header, its "What to notice:" line and no error are in its outputs."""
    import nbformat

    from edu_qa.notebooks import differences, notebook_path
    path = notebook_path(script)
    assert differences(ROOT / script, path) == [], "run: python report.py --notebooks"
    cells = nbformat.read(path, as_version=4).cells
    outputs = [o for c in cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") + "".join(map(str, (o.get("data") or {}).values()))
                   for o in outputs)
    for n in range(1, 7):
        assert f"Step {n}. " in text
    assert text.count("What to notice: ") >= 6
    # a page that is read, not watched: no empty progress widget, no temporary folder
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in
                (o.get("data") or {})]
    assert "edu-qa-notebooks-" not in text
