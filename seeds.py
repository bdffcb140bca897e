"""The same command over several seeds: how far one method's score moves when only its
random draws change.

    python seeds.py                                   # seeds 0-4, all three methods
    python seeds.py --seeds 5 --methods huggingface_lora
    python report.py                                  # then: the README block with the spread

One run is one draw. What --seed changes in each method:
  huggingface_lora  the adapter's initial weights (LoRA's A matrices), data order, dropout
  openai_finetune   the same, on the local service (the job's seed)
  dspy              the order in which the optimizer meets the training examples, and so
                    which demo sets it builds and tries
Everything else (data, splits, the plain-prompt baseline, greedy decoding) stays fixed, so two
runs of one seed give the same numbers (tests/test_seeds.py) and the spread is the seed's.

Seed 0 is the default run, results/<method>.json (`python <script>`); seed S runs
`python <script> --seed S --results-dir results/seeds/seed-S`, each in its own process, exactly
as a student would type it. A seed whose results file exists for this dataset is not run again.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import edu_qa
from edu_qa.seeds import seed_folder, seed_runs, spread

SCRIPTS = {"dspy": "dspy_example.py", "huggingface_lora": "huggingface_lora.py",
           "openai_finetune": "openai_finetune.py"}


def command(method: str, seed: int) -> list[str]:
    argv = [SCRIPTS[method]]
    if seed:
        argv += ["--seed", str(seed), "--results-dir", str(edu_qa.results.portable(
            seed_folder(seed))), "--output-dir", f"outputs/seeds/{method}-seed-{seed}"]
    return argv


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 to N-1 (default: 5)")
    parser.add_argument("--methods", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    args = parser.parse_args(argv)
    console = edu_qa.console()
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    logs = Path("outputs/seeds")
    logs.mkdir(parents=True, exist_ok=True)
    for seed in range(args.seeds):
        for method in args.methods:
            if any(r["seed"] == seed for r in seed_runs(data, method)):
                continue
            cmd = command(method, seed)
            if seed and (edu_qa.RESULTS_DIR / edu_qa.BASELINE_FILE).exists():
                # the plain prompt's answers do not depend on the seed: shared, not re-answered
                seed_folder(seed).mkdir(parents=True, exist_ok=True)
                shutil.copy(edu_qa.RESULTS_DIR / edu_qa.BASELINE_FILE, seed_folder(seed))
            log = logs / f"{method}-seed-{seed}.log"
            console.print(f"python {' '.join(cmd)}  (output: {log})")
            start = time.perf_counter()
            with open(log, "w", encoding="utf-8") as out:
                rc = subprocess.run([sys.executable, *cmd], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL).returncode
            if rc:
                console.print(f"error: exit {rc}; see {log}")
                return rc
            console.print(f"  done in {time.perf_counter() - start:.0f} s")
    for method in args.methods:
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
