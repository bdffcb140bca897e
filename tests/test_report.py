"""report.py and the one-question view, on hand-made results files."""

import io

import pytest
from rich.console import Console

import edu_qa
import report
from helpers import make_results


@pytest.fixture
def results_dir(tmp_path):
    """LoRA scored, OpenAI dry run only, DSPy from another dataset: must not be mixed in."""
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    test = data.split("test")
    lora = make_results(data, "huggingface_lora", before_right=0, after_right=len(test))
    lora["prompt_template"] = "<|im_start|>user\n{question}<|im_end|>"
    lora["command"] = "python huggingface_lora.py"
    edu_qa.write_results(lora, tmp_path)
    dry = make_results(data, "openai_finetune", dry_run=True)
    dry["command"] = "python openai_finetune.py"
    edu_qa.write_results(dry, tmp_path)
    edu_qa.write_results(make_results(data, "dspy", sha="f" * 64), tmp_path)
    return tmp_path


def test_one_question_through_every_method(results_dir):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    ex = edu_qa.pick_question(data, "2")
    rows = edu_qa.one_question_rows(data, ex, results_dir)
    by_who = {r["who"].split(":")[0]: r for r in rows}
    assert by_who["DSPy prompt optimization"]["note"] == "not run: python dspy_example.py"
    assert "dry run" in by_who["OpenAI fine-tuning"]["note"]
    after = by_who["LoRA (transformers + peft)"]
    assert after["answer"] == ex.answer and after["correct"] and after["f1"] == 1.0
    out = io.StringIO()
    edu_qa.print_one_question(Console(file=out, width=200), data, "2", results_dir)
    assert f"<|im_start|>user\n{ex.question}<|im_end|>" in out.getvalue()
    assert f"✓ {ex.answer}" in out.getvalue()


def nth_test_question(i):
    return edu_qa.load_qa(edu_qa.DATA_FILE).split("test")[i].question


def test_pick_question_by_words_and_bad_choice():
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    test = data.split("test")
    assert edu_qa.pick_question(data, None) == test[0]
    assert edu_qa.pick_question(data, test[5].question[:20].lower()) == test[5]
    with pytest.raises(edu_qa.UserError, match="not a test question"):
        edu_qa.pick_question(data, "999")


def test_report_is_deterministic_and_leaves_other_datasets_out(results_dir, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\n{report.START}\nold\n{report.END}\n\ntail\n")
    argv = ["--results-dir", str(results_dir), "--readme", str(readme)]
    assert edu_qa.run(report.main, argv) == 0
    first = readme.read_text()
    assert edu_qa.run(report.main, argv) == 0
    assert readme.read_text() == first  # same files, same text
    assert "1.00 (0.98–1.00)" in first and "`python huggingface_lora.py`" in first
    assert "results are for another dataset" in first  # shown as such, not mixed in
    assert "+1.00 (152 fixed, 0 broken; exact McNemar p = 0.00): more than noise" in first
    assert "fixed (152): " + nth_test_question(0) in first
    assert first.endswith("\n\ntail\n") and "\nold\n" not in first
    assert edu_qa.run(report.main, argv + ["--check"]) == 0
    for name in ("scores.png", "cost_time.png"):
        assert (results_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_check_fails_when_readme_is_stale(results_dir, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.START}\nhand-edited numbers\n{report.END}\n")
    with pytest.raises(SystemExit) as err:
        report.main(["--results-dir", str(results_dir), "--readme", str(readme), "--check"])
    assert err.value.code == 1


def test_plots_from_hand_made_results(results_dir, tmp_path):
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    results = edu_qa.current_results(data, results_dir)
    assert set(results) == {"huggingface_lora", "openai_finetune"}
    assert report.plot_scores(data, results, results_dir, tmp_path / "a.png").stat().st_size \
        > 5000
    assert report.plot_cost_time(results, tmp_path / "b.png").stat().st_size > 5000


def test_data_needs_plot_and_table_from_hand_made_points(results_dir, tmp_path):
    import data_needs
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    def seeds(*f1s):
        return {str(i): {"f1": f, "accuracy": 0.5} for i, f in enumerate(f1s)}
    curve = {"sha256": data.sha256, "seeds": [0, 1], "base": {"f1": 0.19, "accuracy": 0.5},
             "seconds": {}, "points": {
                 "dspy": {"5": seeds(0.1, 0.14), "20": seeds(0.16, 0.2), "72": seeds(0.21, 0.21)},
                 "huggingface_lora": {"5": seeds(0.2, 0.2), "20": seeds(0.22, 0.26),
                                      "72": seeds(0.28, 0.28)}}}
    data_needs.save(results_dir / "data_needs.json", curve)
    assert data_needs.plot(curve, tmp_path / "d.png").stat().st_size > 5000
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.START}\n{report.END}\n")
    assert edu_qa.run(report.main, ["--results-dir", str(results_dir),
                                    "--readme", str(readme)]) == 0
    # accuracy beside F1: at 5 examples accuracy can fall while F1 barely moves
    assert "| 20 | 0.50 (0.50–0.50) | 0.18 (0.16–0.20) | 0.50 (0.50–0.50) | 0.24 (0.22–0.26) |" \
        in readme.read_text()


def test_data_needs_rejects_sizes_outside_the_training_split(capsys):
    import data_needs
    assert edu_qa.run(data_needs.main, ["--sizes", "0", "500"]) == 2
    assert "--sizes must be between 1 and 72" in capsys.readouterr().err


def test_data_needs_measures_again_the_points_made_with_other_defaults():
    """A cached LoRA point trained at another learning rate must not be plotted as today's."""
    import data_needs
    now = data_needs.method_settings()
    old_lora = {**now["huggingface_lora"], "learning_rate": 1e-3}
    point = {"0": {"f1": 0.21, "accuracy": 0.5}}
    cached = {"sha256": "abc", "seeds": [0], "base": None, "seconds": {},
              "settings": {"huggingface_lora": old_lora, "dspy": now["dspy"]},
              "points": {"dspy": {"5": point}, "huggingface_lora": {"5": point}}}
    curve = data_needs.usable_points(cached, "abc", now)
    assert curve["points"]["huggingface_lora"] == {} and curve["points"]["dspy"] == {"5": point}
    assert curve["settings"] == now
    assert data_needs.usable_points(cached, "other data", now)["points"]["dspy"] == {}


def test_lesson_numbers_are_generated_and_a_hand_edit_fails_the_check(tmp_path, capsys):
    """LESSON.md's numbers sit between markers that report.py fills from results/; a number
    typed by hand there fails `python report.py --check`, naming LESSON.md."""
    from edu_qa import lesson
    readme = tmp_path / "README.md"
    readme.write_text((edu_qa.HERE / "README.md").read_text())
    stale = tmp_path / "LESSON.md"
    stale.write_text(f"# L\n{lesson.START}\naccuracy 0.99 in every seed\n{lesson.END}\n"
                     f"{lesson.EXERCISES_START}\n{lesson.EXERCISES_END}\n")
    with pytest.raises(SystemExit) as err:
        report.main(["--check", "--readme", str(readme), "--lesson", str(stale)])
    assert err.value.code == 1 and f"{stale}: the numbers differ" in capsys.readouterr().err
    data = edu_qa.load_qa(edu_qa.DATA_FILE)
    made = lesson.lesson_text(data, edu_qa.current_results(data), edu_qa.RESULTS_DIR, stale)
    assert "0.99" not in made and "test accuracy, lowest–highest" in made
    assert "Exercise 1: OpenAI's rule gives 10 examples 10 epochs" in made


def test_dev_choice_reads_each_methods_own_record():
    from edu_qa.lesson import dev_choice
    dspy = {"method": "dspy", "extra": {"kept": "optimized", "dev": {
        "zero-shot": {"accuracy": 0.5}, "optimized": {"accuracy": 0.6}}}}
    lora = {"method": "huggingface_lora", "extra": {"kept": "epoch 2", "epochs": [
        {"epoch": 0, "dev_accuracy": 0.5}, {"epoch": 1, "dev_accuracy": 0.7},
        {"epoch": 2, "dev_accuracy": 0.6}]}}
    openai = {"method": "openai_finetune", "extra": {"kept": "base", "dev_scores": {
        "base": {"accuracy": 0.5}, "step 9": {"accuracy": 0.4}}}}
    assert dev_choice(dspy) == {"base": 0.5, "kept": 0.6, "name": "optimized"}
    assert dev_choice(lora) == {"base": 0.5, "kept": 0.6, "name": "epoch 2"}
    assert dev_choice(openai) == {"base": 0.5, "kept": 0.5, "name": "base"}
    assert dev_choice({"method": "dspy", "extra": {}}) is None


def test_exercise_findings_come_from_their_runs_over_seeds(tmp_path, monkeypatch):
    """Exercises 2, 3 and 5 are runs of their own settings (python seeds.py --exercises): the
    solutions give each finding per seed, read from those runs only, and say how to make them
    when there are none."""
    from edu_qa import lesson, seeds
    monkeypatch.setattr(seeds, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(seeds, "SEEDS_DIR", tmp_path / "seeds")
    monkeypatch.setattr(seeds, "EXERCISES_DIR", tmp_path / "exercises")
    data = edu_qa.load_qa()
    assert "has no recorded runs: `python seeds.py --exercises`" in \
        "\n".join(lesson.exercise_lines(data, tmp_path))

    def run(method, seed, right, folder, extra=None, **config):
        res = make_results(data, method, before_right=70, after_right=right)
        res["config"], res["extra"] = {"seed": seed, **config}, extra
        res["wall_time_s"]["total"] = 120.0 + 60 * seed
        edu_qa.write_results(res, folder)

    def stages(zero_failed=0, failed=0, accuracy=0.5):
        return {"zero-shot program": {"parse_failures": zero_failed},
                "optimized program": {"parse_failures": failed, "accuracy": accuracy}}

    for seed in (0, 1):
        run("dspy", seed, 80, seeds.seed_folder(seed), optimizer="random-search", adapter="x",
            extra={"optimizer_report": {"lm_calls": 578 + seed}, "kept": "optimized",
                   "stages": stages(accuracy=0.5)})
        run("huggingface_lora", seed, 76, seeds.seed_folder(seed), epochs=2)
        run("dspy", seed, 20 + seed, seeds.exercise_folder("adapter-chat", seed),
            optimizer="random-search", adapter="chat",
            extra={"kept": "zero-shot", "stages": stages(140, 120 - seed)})
        kept = "epoch 2" if seed == 0 else "base"
        run("huggingface_lora", seed, 75, seeds.exercise_folder("epochs-4", seed), epochs=4.0,
            extra={"kept": kept, "epochs": [
                {"epoch": e, "train_loss": t, "dev_loss": d}
                for e, t, d in ((0, None, 2.2), (1, 1.7, 1.56), (2, 1.1, 1.55 + seed),
                                (3, 0.6, 1.7), (4, 0.3 + seed, 1.9))]})
        for name, right, calls in (("labeled", 150, 0), ("bootstrap", 80, None)):
            run("dspy", seed, right, seeds.exercise_folder(f"optimizer-{name}", seed),
                optimizer=name, adapter="x",
                extra={"optimizer_report": {"lm_calls": calls} if calls is not None else None,
                       "kept": "zero-shot" if name == "labeled" and seed else "optimized",
                       "stages": stages(accuracy=0.9 if name == "labeled" else 0.6)})
    # in an exercise's folder but with other settings, or of another dataset: not counted
    run("dspy", 2, 150, seeds.exercise_folder("adapter-chat", 2), optimizer="bootstrap",
        adapter="chat", extra={})
    run("huggingface_lora", 3, 0, seeds.exercise_folder("epochs-4", 3), epochs=3, extra={})
    text = "\n".join(lesson.exercise_lines(data, tmp_path))
    assert "Exercise 2: with `--adapter chat`, test replies that failed to parse, of 152: the " \
           "zero-shot program 140, 140 (seeds 0-1), the optimized program (with its demos) " \
           "120, 119 (seeds 0-1); the program the dev split kept: zero-shot, zero-shot " \
           "(seeds 0-1), test accuracy 0.13–0.14, against 0.53 with the default adapter over " \
           "its seeds; 2.0–3.0 min a run." in text
    assert "Exercise 3: with `--epochs 4`, the training loss fell at every epoch in 1 of 2 " \
           "seeds; the dev loss was lowest at epoch 2, 1 (seeds 0-1); the dev answers kept " \
           "epoch 2, none (the base model) (seeds 0-1); test accuracy 0.49, against 0.50 at " \
           "the default epochs over its seeds; 2.0–3.0 min a run." in text
    assert "Exercise 5 (seeds 0-1; test accuracy" in text
    assert "labeled: optimized 0.90, kept 0.99 (zero-shot kept in 1 of 2), 0 LM calls, " \
           "2.0–3.0 min a run; bootstrap: optimized 0.60, kept 0.53 (zero-shot kept in 0 of 2), " \
           "? LM calls, 2.0–3.0 min a run; random-search: optimized 0.50, kept 0.53 (zero-shot " \
           "kept in 0 of 2), 578–579 LM calls, 2.0–3.0 min a run. The kept programs of random search and the cheaper optimizer, seed by seed, " \
           "differ by more than noise (exact McNemar): labeled in 2 of 2 seeds (labeled higher " \
           "in 2, random search in 0); bootstrap in 0 of 2 seeds." in text
