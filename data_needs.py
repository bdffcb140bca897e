"""How much data does each method need? DSPy and LoRA at several training-set sizes, measured.

    python data_needs.py                     # sizes 5, 20, 72 on the embedded model (11 min)
    python data_needs.py --sizes 5 10 20 40 72   # the full curve: two more points per method

Both methods use the embedded SmolLM2-135M model, train on the first N training examples, and
are scored by the shared metric on the same 24 test questions; the zero-shot base model (plain
chat prompt, no adaptation) is drawn as a line. The plot goes to results/data_needs.png.

Protocol, chosen to fit a laptop CPU: LoRA gets the same number of optimizer steps at every size
(as many as the default run: 2 epochs over 72 examples), so small sets are seen more often
rather than trained for fewer steps; DSPy runs its default optimizer (bootstrap) with at most 4
demos. Each point is cached in results/data_needs.json (LoRA) and DSPy's cache, so a re-run only
computes what is new.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import edu_qa

DEFAULT_SIZES = [5, 20, 72]
LORA_STEPS = 18  # = 2 epochs x 72 examples / batch 8: the default LoRA run's steps


def lora_point(n: int, seed: int, out: Path, console) -> float:
    """Test F1 of LoRA trained on the first n training examples."""
    import huggingface_lora as lora
    base = lora.Config()
    epochs = max(1, math.ceil(LORA_STEPS * base.batch_size / n))
    cfg = dataclasses.replace(base, train_size=n, epochs=epochs, seed=seed,
                              output_dir=str(out / f"lora-{n}"), verify_reload=False)
    data, train, dev, test, env = lora.prepare_data(cfg, console)
    tok = edu_qa.load_tokenizer(cfg.model)
    # 8 dev questions are enough for the per-epoch dev loss; with 5 examples there are 29
    # epochs, and the test score below is what the curve plots
    train_ds, dev_ds = lora.convert_format(cfg, tok, train, dev[:8], console)
    lora_config, _, _, _ = lora.configure_model(cfg, env, train_ds, console)
    model, tok, _, _ = lora.load_model(cfg, env, lora_config, console)
    lora.tune(cfg, env, model, tok, train_ds, dev_ds, console)
    model.eval()
    answers, _ = edu_qa.generate(model, tok, [edu_qa.chat_messages(ex.question) for ex in test],
                                 cfg.max_new_tokens, cfg.eval_batch_size)
    return edu_qa.score(test, answers)["f1"]


def base_point(results_dir: Path) -> float:
    """Test F1 of the zero-shot base model with the plain chat prompt all methods share: the
    LoRA run's 'before' when it is there (the very same answers), else generated here."""
    data = edu_qa.load_qa()
    lora = edu_qa.current_results(data, results_dir).get("huggingface_lora")
    if lora and lora.get("before") and lora["config"].get("model") == edu_qa.EMBEDDED_MODEL:
        return lora["before"]["f1"]
    test = data.split("test")
    model, tok = edu_qa.load_local_model(edu_qa.EMBEDDED_MODEL)
    answers, _ = edu_qa.generate(model, tok, [edu_qa.chat_messages(ex.question) for ex in test],
                                 48, 8)
    return edu_qa.score(test, answers)["f1"]


def dspy_points(sizes: list[int], seed: int, out: Path, console) -> dict[int, float]:
    """Test F1 of the DSPy program optimized on the first n training examples, per n."""
    import dspy
    import dspy_example as dx
    points = {}
    base = dataclasses.replace(dx.Config(), seed=seed, output_dir=str(out / "dspy"))
    data, train, dev, test, env = dx.prepare_data(base, console)
    signature, adapter = dx.convert_format(base, train, console)
    lm, _ = dx.configure_model(base, env, console)  # one model load for every size
    dspy.configure(lm=lm, adapter=adapter, max_errors=10**6)
    metric = dx.make_metric()
    evaluate = dspy.Evaluate(devset=test, metric=metric, num_threads=base.threads,
                             display_progress=False, failure_score=0.0)
    for n in sizes:
        cfg = dataclasses.replace(base, train_size=n)
        optimizer = dx.build_optimizer(cfg, metric)
        program = optimizer.compile(dspy.Predict(signature), trainset=train[:n])
        points[n] = round(evaluate(program).score / 100, 4)
        console.print(f"DSPy, {n} training examples: test F1 {points[n]:.2f}")
    return points


def plot(curve: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, color in (("dspy", "#9bbb59"), ("huggingface_lora", "#2a7ab9")):
        points = sorted((int(n), f) for n, f in curve[method].items())
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color=color,
                    label=edu_qa.METHODS[method][0])
    if curve.get("base") is not None:
        ax.axhline(curve["base"], color="#888888", linestyle="--",
                   label="zero-shot base model (no adaptation)")
    ax.set_xscale("log")
    ax.minorticks_off()
    sizes = sorted({int(n) for m in ("dspy", "huggingface_lora") for n in curve[m]})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_ylim(0, 0.5)  # from zero: the gaps are small and should look it
    ax.set_xlabel("training examples (log scale)")
    ax.set_ylabel("test F1 (same 24 questions)")
    ax.set_title("How much data does each method need? (SmolLM2-135M, 2 CPU cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES,
                        help=f"training-set sizes to measure (default: {DEFAULT_SIZES})")
    parser.add_argument("--seed", type=int, default=0)
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
    cached = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    curve = usable_points(cached, data.sha256, args.seed, method_settings())
    start = time.perf_counter()
    if curve["base"] is None:
        curve["base"] = base_point(results_dir)
    for n in args.sizes:
        if str(n) not in curve["huggingface_lora"]:
            t = time.perf_counter()
            curve["huggingface_lora"][str(n)] = lora_point(n, args.seed, out, console)
            curve["seconds"][f"lora-{n}"] = round(time.perf_counter() - t, 1)
            save(cache_path, curve)  # a long run keeps what it has measured so far
    todo = [n for n in args.sizes if str(n) not in curve["dspy"]]
    if todo:
        t = time.perf_counter()
        for n, f1 in dspy_points(todo, args.seed, out, console).items():
            curve["dspy"][str(n)] = f1
        curve["seconds"]["dspy"] = round(time.perf_counter() - t, 1)
    save(cache_path, curve)
    path = plot(curve, results_dir / "data_needs.png")
    console.print(f"zero-shot base F1 {curve['base']:.2f}")
    for method in ("dspy", "huggingface_lora"):
        console.print(f"{edu_qa.METHODS[method][0]}: " + ", ".join(
            f"{n} examples -> F1 {f:.2f}" for n, f in sorted(curve[method].items(),
                                                            key=lambda kv: int(kv[0]))))
    console.print(f"plot: {path} | this run {time.perf_counter() - start:.0f} s")


def usable_points(cached: dict, sha256: str, seed: int, settings: dict) -> dict:
    """The cached curve, without the points measured on other data, another seed or other
    defaults of a method (those are measured again)."""
    curve = cached
    if cached.get("sha256") != sha256 or cached.get("seed") != seed:
        curve = {"sha256": sha256, "seed": seed, "base": None,
                 "dspy": {}, "huggingface_lora": {}, "seconds": {}}
    curve.setdefault("settings", {})
    for method, now in settings.items():
        if curve["settings"].get(method) != now:
            curve[method], curve["settings"][method] = {}, now
    return curve


def method_settings() -> dict:
    """The defaults each method's points were measured with (besides data and seed)."""
    import dspy_example as dx
    import huggingface_lora as lora
    lc, dc = lora.Config(), dx.Config()
    return {"huggingface_lora": {"steps": LORA_STEPS, **{k: getattr(lc, k) for k in (
                "learning_rate", "lora_r", "lora_alpha", "lora_dropout", "target_modules",
                "batch_size", "max_length", "max_new_tokens")}},
            "dspy": {k: getattr(dc, k) for k in ("optimizer", "max_demos", "max_new_tokens")}}


def save(path: Path, curve: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(curve, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(edu_qa.run(main))
