"""The same command over several seeds: how far one method's score moves when only its
random draws change.

    python seeds.py                                   # seeds 0-4, all three methods
    python seeds.py --seeds 5 --methods huggingface_lora
    python seeds.py --exercises                       # LESSON.md's exercises 2, 3 and 5
    python report.py                                  # then: the README block with the spread

One run is one draw. What --seed changes in each method:
  huggingface_lora  the adapter's initial weights (LoRA's A matrices), data order (and dropout
                    masks, with --lora-dropout above the default 0)
  openai_finetune   the same, on the local service (the job's seed)
  dspy              the order in which the optimizer meets the training examples, and so
                    which demo sets it builds and tries
Everything else (data, splits, the plain-prompt baseline, greedy decoding) stays fixed, so two
runs of one seed give the same numbers (tests/test_seeds.py) and the spread is the seed's.

Seed 0 is the default run, results/<method>.json (`python <script>`); seed S runs
`python <script> --seed S --results-dir results/seeds/seed-S`, each in its own process, exactly
as a student would type it. A seed whose results file exists for this dataset is not run
again; one that runs starts from an empty output folder, except a method's seed 0, whose
folder is the default run's (outputs/<method>).

--exercises runs LESSON.md's exercises that are settings of their own (2: DSPy's own field
markers, 3: LoRA for 4 epochs, 5: two cheaper DSPy optimizers) over the same seeds, into
results/exercises/<exercise>/seed-S/, so that the lesson's solutions can say what to expect as a
range over seeds. All 20 runs take about 85 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import edu_qa
from edu_qa.seeds import EXERCISES, exercise_folder, exercise_runs, seed_folder, seed_runs, spread

SCRIPTS = {"dspy": "dspy_example.py", "huggingface_lora": "huggingface_lora.py",
           "openai_finetune": "openai_finetune.py"}


def command(method: str, seed: int, exercise: str | None = None) -> list[str]:
    """The student's command for this seed: the default run for seed 0, else --seed S written
    to its own folder. For an exercise, its own method and settings (method is not read),
    written to the exercise's folder, seed 0 too."""
    if exercise:
        method, settings = EXERCISES[exercise]
        return [SCRIPTS[method], *settings, "--seed", str(seed), "--results-dir",
                str(edu_qa.results.portable(exercise_folder(exercise, seed))),
                "--output-dir", f"outputs/exercises/{exercise}-seed-{seed}"]
    argv = [SCRIPTS[method]]
    if seed:
        argv += ["--seed", str(seed), "--results-dir", str(edu_qa.results.portable(
            seed_folder(seed))), "--output-dir", f"outputs/seeds/{method}-seed-{seed}"]
    return argv


def recorded(data, method: str, seed: int, exercise: str | None) -> bool:
    if exercise:
        return any(res["config"]["seed"] == seed for res in exercise_runs(data, exercise))
    return any(r["seed"] == seed for r in seed_runs(data, method))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 to N-1 (default: 5)")
    parser.add_argument("--methods", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    parser.add_argument("--exercises", nargs="*", choices=list(EXERCISES), default=None,
                        help="run LESSON.md's exercises (all, or these) over the seeds, "
                             "instead of the --methods' default runs")
    args = parser.parse_args(argv)
    console = edu_qa.console()
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    logs = Path("outputs/seeds")
    logs.mkdir(parents=True, exist_ok=True)
    todo = [(seed, method, None) for seed in range(args.seeds) for method in args.methods] \
        if args.exercises is None else \
        [(seed, EXERCISES[name][0], name) for name in args.exercises or EXERCISES
         for seed in range(args.seeds)]
    for seed, method, exercise in todo:
        if recorded(data, method, seed, exercise):
            continue
        cmd = command(method, seed, exercise)
        folder = exercise_folder(exercise, seed) if exercise else seed_folder(seed)
        if folder != edu_qa.RESULTS_DIR and (edu_qa.RESULTS_DIR / edu_qa.BASELINE_FILE).exists():
            # the plain prompt's answers do not depend on the seed: shared, not re-answered
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(edu_qa.RESULTS_DIR / edu_qa.BASELINE_FILE, folder)
        if "--output-dir" in cmd:  # seeds.py's own folder: started afresh, as in a new clone,
            # or DSPy's cache left there by an earlier run answers every call in seconds
            shutil.rmtree(cmd[cmd.index("--output-dir") + 1], ignore_errors=True)
        log = logs / f"{exercise or method}-seed-{seed}.log"
        console.print(f"python {' '.join(cmd)}  (output: {log})")
        start = time.perf_counter()
        with open(log, "w", encoding="utf-8") as out:
            rc = subprocess.run([sys.executable, *cmd], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL).returncode
        if rc:
            console.print(f"error: exit {rc}; see {log}")
            return rc
        console.print(f"  done in {time.perf_counter() - start:.0f} s")
    for method in args.methods if args.exercises is None else []:
        runs = seed_runs(data, method)
        acc, f1 = spread(runs), spread(runs, "f1")
        if acc:
            console.print(f"{edu_qa.METHODS[method][0]}: accuracy "
                          + ", ".join(f"{r['accuracy']:.2f}" for r in runs)
                          + f" (mean {acc['mean']:.2f}); F1 "
                          + ", ".join(f"{r['f1']:.2f}" for r in runs)
                          + f" (mean {f1['mean']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
