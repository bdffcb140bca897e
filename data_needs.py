"""How much data does each method need? DSPy and LoRA at several training-set sizes, measured.

    python data_needs.py                          # sizes 5, 20, 72; seeds 0, 1, 2 (about 35 min)
    python data_needs.py --sizes 5 10 20 40 72    # the full curve
    python data_needs.py --seeds 0                # one seed: a third of the time, no spread

Each point is the script itself, run as a student would with --train-size N --seed S. Both
methods use the embedded SmolLM2-135M model and learn, at each size, from the SAME
training examples: a seeded sample with the subjects in proportion (edu_qa.training_subset,
as --train-size draws it), one sample per seed. Each point is scored by the shared metric on
the same test questions (152 in the shipped file); the plot draws the mean over seeds with the lowest and highest
seed as the spread, and the plain-prompt baseline (results/baseline.json) as a line.

Protocol, chosen to fit a laptop CPU: LoRA gets the same number of optimizer steps at every size
(as many as the default run: 2 epochs over 72 examples), so small sets are seen more often
rather than trained for fewer steps, and keeps its last epoch; DSPy runs the script's default
optimizer and adapter and keeps what step 4 keeps. Each point is cached in
results/data_needs.json, so a re-run only computes what is new.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import edu_qa

DEFAULT_SIZES = [5, 20, 72]
DEFAULT_SEEDS = [0, 1, 2]
LORA_STEPS = 18  # = 2 epochs x 72 examples / batch 8: the default LoRA run's steps
LORA_BATCH = 8


def run_point(script: str, n: int, seed: int, out: Path, results_dir: Path,
              *options: str) -> dict:
    """One point: the script itself, run as a student would (in this process), on the seeded
    sample of n training examples; its test scores read back from its results file."""
    argv = ["--train-size", str(n), "--seed", str(seed),
            "--output-dir", str(out / f"{Path(script).stem}-{n}-{seed}"), *options]
    # the shared baseline is copied in: not answered again for every point
    res = edu_qa.run_for_results(edu_qa.HERE / script, argv,
                                 out / f"results-{Path(script).stem}-{n}-{seed}",
                                 baseline=results_dir / edu_qa.BASELINE_FILE)
    return {"f1": res["after"]["f1"], "accuracy": res["after"]["accuracy"]}


def lora_point(n: int, seed: int, out: Path, results_dir: Path) -> dict:
    """LoRA with as many optimizer steps as the default run at every size, last epoch kept."""
    epochs = max(1, math.ceil(LORA_STEPS * LORA_BATCH / n))
    return run_point("huggingface_lora.py", n, seed, out, results_dir, "--epochs", str(epochs),
                     "--no-judge-on-dev", "--no-verify-reload")


def dspy_point(n: int, seed: int, out: Path, results_dir: Path) -> dict:
    """DSPy with the script's default optimizer and adapter; it keeps what step 4 keeps."""
    return run_point("dspy_example.py", n, seed, out, results_dir)


def base_point(data, results_dir: Path) -> dict:
    """The plain-prompt baseline every method shares (results/baseline.json), made here if no
    script has made it yet."""
    model, tok = None, None

    def answer(chats):
        nonlocal model, tok
        model, tok = edu_qa.load_local_model(edu_qa.EMBEDDED_MODEL)
        return edu_qa.generate(model, tok, chats, 48, 24)[0]
    answers, _ = edu_qa.plain_prompt_baseline(edu_qa.EMBEDDED_MODEL, data, 48, answer,
                                              edu_qa.console(), results_dir)
    sc = edu_qa.score(data.split("test"), answers)
    return {"f1": sc["f1"], "accuracy": sc["accuracy"]}


def plot(curve: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, color, shift in (("dspy", "#9bbb59", 0.97), ("huggingface_lora", "#2a7ab9",
                                                            1.03)):
        points = sorted((int(n), list(by_seed.values()))
                        for n, by_seed in curve["points"][method].items() if by_seed)
        if not points:
            continue
        xs = [n * shift for n, _ in points]  # side by side, so the spreads do not hide
        means = [sum(p["f1"] for p in ps) / len(ps) for _, ps in points]
        lows = [m - min(p["f1"] for p in ps) for m, (_, ps) in zip(means, points)]
        highs = [max(p["f1"] for p in ps) - m for m, (_, ps) in zip(means, points)]
        ax.errorbar(xs, means, yerr=[lows, highs], fmt="o-", color=color, capsize=4,
                    label=f"{edu_qa.METHODS[method][0]} (mean; bars: lowest-highest seed)")
    if curve.get("base"):
        ax.axhline(curve["base"]["f1"], color="#888888", linestyle="--",
                   label="plain prompt, no adaptation")
    ax.set_xscale("log")
    ax.minorticks_off()
    sizes = sorted({int(n) for m in curve["points"] for n in curve["points"][m]})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_ylim(0, 0.5)  # from zero: the gaps are small and should look it
    ax.set_xlabel("training examples, subjects in proportion (log scale)")
    ax.set_ylabel("test word-overlap F1 (same 24 questions)")
    ax.set_title(f"How much data does each method need? (SmolLM2-135M, seeds "
                 f"{', '.join(map(str, curve['seeds']))})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES,
                        help=f"training-set sizes to measure (default: {DEFAULT_SIZES})")
    parser.add_argument("--seeds", type=int, nargs="+", default=DEFAULT_SEEDS,
                        help=f"one sample (and training run) per seed (default: {DEFAULT_SEEDS})")
    parser.add_argument("--results-dir", default=str(edu_qa.RESULTS_DIR))
    parser.add_argument("--output-dir", default="outputs/data_needs")
    args = parser.parse_args(argv)
    console = edu_qa.console()
    data = edu_qa.load_qa()
    n_train = len(data.split("train"))
    if any(not 1 <= n <= n_train for n in args.sizes):
        raise edu_qa.UserError(f"--sizes must be between 1 and {n_train}")
    results_dir, out = Path(args.results_dir), Path(args.output_dir)
    cache_path = results_dir / "data_needs.json"
    try:
        cached = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    except json.JSONDecodeError:
        cached = {}
    curve = usable_points(cached, data.sha256, method_settings())
    curve["seeds"] = measured_seeds(curve) or sorted(args.seeds)
    start = time.perf_counter()
    curve["base"] = base_point(data, results_dir)
    points = (("huggingface_lora", lora_point), ("dspy", dspy_point))
    for seed in args.seeds:
        for n in args.sizes:
            for method, measure in points:
                done = curve["points"][method].setdefault(str(n), {})
                if str(seed) in done:
                    continue
                t = time.perf_counter()
                done[str(seed)] = measure(n, seed, out, results_dir)
                curve["seconds"][f"{method}-{n}-{seed}"] = round(time.perf_counter() - t, 1)
                console.print(f"{edu_qa.METHODS[method][0]}, {n} training examples, seed "
                              f"{seed}: test F1 {done[str(seed)]['f1']:.2f}")
                save(cache_path, curve)  # a long run keeps what it has measured so far
    curve["seeds"] = measured_seeds(curve)
    save(cache_path, curve)
    path = plot(curve, results_dir / "data_needs.png")
    console.print(f"plain prompt F1 {curve['base']['f1']:.2f}")
    for method in ("dspy", "huggingface_lora"):
        console.print(f"{edu_qa.METHODS[method][0]}: " + ", ".join(
            f"{n} examples -> F1 " + "/".join(f"{p['f1']:.2f}" for p in by_seed.values())
            for n, by_seed in sorted(curve["points"][method].items(), key=lambda kv: int(kv[0]))))
    console.print(f"plot: {path} | this run {time.perf_counter() - start:.0f} s")


def measured_seeds(curve: dict) -> list[int]:
    """The seeds that have points: what the plot's mean and spread are over."""
    return sorted({int(seed) for by_size in curve["points"].values()
                   for by_seed in by_size.values() for seed in by_seed})


def usable_points(cached: dict, sha256: str, settings: dict) -> dict:
    """The cached curve, without the points measured on other data or other defaults of a
    method (those are measured again)."""
    curve = cached
    if cached.get("sha256") != sha256 or "points" not in cached:
        curve = {"sha256": sha256, "seeds": [], "base": None,
                 "points": {"dspy": {}, "huggingface_lora": {}}, "seconds": {}}
    curve.setdefault("settings", {})
    for method, now in settings.items():
        if curve["settings"].get(method) != now:
            curve["points"][method], curve["settings"][method] = {}, now
    return curve


def method_settings() -> dict:
    """The defaults each method's points are measured with (besides data and seed), as each
    script states them on its command line (--print-settings)."""
    def defaults(script: str) -> dict:
        return json.loads(edu_qa.run_quietly(edu_qa.HERE / script, ["--print-settings"]))
    lc, dc = defaults("huggingface_lora.py"), defaults("dspy_example.py")
    return {"huggingface_lora": {"steps": LORA_STEPS, **{k: lc[k] for k in (
                "learning_rate", "lora_r", "lora_alpha", "lora_dropout", "target_modules",
                "batch_size", "max_length", "max_new_tokens")}},
            "dspy": {k: dc[k] for k in ("optimizer", "adapter", "max_demos", "max_new_tokens")}}


def save(path: Path, curve: dict) -> None:
    edu_qa.write_json(path, curve)


if __name__ == "__main__":
    sys.exit(edu_qa.run(main))
