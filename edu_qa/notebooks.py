"""The three scripts as executed notebooks (notebooks/*.ipynb), readable on the repository page
without running anything.

    python report.py --notebooks    # convert each script with jupytext and run it in a kernel

Each notebook is its script converted by jupytext (one cell per step, as `jupytext --to
notebook` gives a teacher) and run top to bottom with the default settings, in a fresh copy of
the project's files, as a new user would run it: its outputs are a default run's, and results/
here is not touched. differences() is what CI checks: every notebook's cells are exactly its
script's, so a script edited without rendering again fails the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .data import HERE

SCRIPTS = ("huggingface_lora.py", "dspy_example.py", "openai_finetune.py")
NOTEBOOKS_DIR = HERE / "notebooks"


def notebook_path(script: str, folder: Path = NOTEBOOKS_DIR) -> Path:
    return Path(folder) / (Path(script).stem + ".ipynb")


def differences(script: Path, notebook: Path) -> list[str]:
    """What differs between a script's cells and a rendered notebook's, in words ([]: none)."""
    import jupytext
    import nbformat
    if not notebook.exists():
        return [f"{notebook} is missing"]
    want = [(c.cell_type, c.source) for c in jupytext.read(script).cells]
    have = [(c.cell_type, c.source) for c in nbformat.read(notebook, as_version=4).cells]
    if len(want) != len(have):
        return [f"{notebook}: {len(have)} cells, {script.name} has {len(want)}"]
    return [f"{notebook}: cell {i + 1} differs from {script.name}"
            for i, (a, b) in enumerate(zip(want, have)) if a != b]


def project_copy(folder: Path) -> Path:
    """The project's files (git's tracked and new ones; without git, all but outputs/) copied
    into folder: what a fresh clone holds, with the embedded model's one-time conversion kept
    where it is (EDU_QA_MODEL_CACHE)."""
    try:
        names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                               cwd=HERE, capture_output=True, text=True, check=True).stdout
        files = [HERE / name for name in names.splitlines() if (HERE / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in HERE.rglob("*") if p.is_file() and not {"outputs", ".venv", ".git"}
                 & set(p.relative_to(HERE).parts)]
    for path in files:
        target = folder / path.relative_to(HERE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return folder


def render(console, folder: Path = NOTEBOOKS_DIR, scripts=SCRIPTS, timeout_s: int = 1800):
    """Run each script as a notebook in a fresh copy of the project; write it, outputs
    included, to folder/<script>.ipynb. Returns the paths written."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    from .local_model import EMBEDDED_CACHE, embedded_model_folder
    embedded_model_folder()  # the one-time conversion, here, so every copy reuses it
    os.environ["EDU_QA_MODEL_CACHE"] = str(EMBEDDED_CACHE)  # the kernels inherit it, and:
    os.environ["TQDM_DISABLE"] = "1"  # no progress bars in a page that is read, not watched
    written = []
    with tempfile.TemporaryDirectory(prefix="edu-qa-notebooks-") as tmp:
        copy = project_copy(Path(tmp))
        for script in scripts:
            console.print(f"running {script} as a notebook in a fresh copy ...")
            nb = jupytext.read(copy / script)
            NotebookClient(nb, timeout=timeout_s, kernel_name="python3", record_timing=False,
                           resources={"metadata": {"path": str(copy)}}).execute()
            nb.metadata.pop("widgets", None)
            path = notebook_path(script, folder)
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, path)
            written.append(path)
    return written
