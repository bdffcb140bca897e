"""The "What to notice:" lines: each of the six steps ends with exactly one (a plan: each step
it finished), citing this run's numbers, checked against its results file and printed figures;
then the notice functions alone, on crafted numbers, branch by branch."""

import contextlib
import io
import json
import re

import pytest

import edu_qa
import finetune_service
from conftest import ROOT
from edu_qa import chat_format, notices
from edu_qa.results import fmt_seconds
from helpers import answers, make_results

NOTICE = "What to notice: "
MOVED = r"(?:(fell|rose) ([\d.]+) \(([\d.]+) -> ([\d.]+)\)|stayed at ([\d.]+))"


def run_script(script: str, args: list[str], out, **base_models) -> dict:
    """The script run in this process, wide enough that no line wraps; its output, each
    step's lines (by its header) and the results file it wrote, if any."""
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()) as text:
        mp.setenv("COLUMNS", "3000")
        for model_id, source in base_models.items():  # the local service's base model
            mp.setitem(finetune_service.BASE_MODELS, model_id, source)
        code = edu_qa.run_script(ROOT / script, [*args, "--output-dir", str(out / "out"),
                                                 "--results-dir", str(out / "results")])
    printed = text.getvalue()
    assert code == 0, printed[-3000:]
    steps, step = {}, None
    for line in printed.splitlines():
        header = re.match(r"─+ Step (\d)\. ", line)
        if header:
            step = int(header[1])
            steps[step] = []
        elif step and line.strip():
            steps[step].append(line)
    files = [p for p in (out / "results").glob("*.json") if p.stem in edu_qa.METHODS]
    return {"out": printed, "steps": steps,
            "results": json.loads(files[0].read_text()) if files else None,
            "notices": {s: lines[-1].removeprefix(NOTICE) for s, lines in steps.items()}}


TINY = "<the tiny test model>"
RUNS = {  # name: script, tiny settings (the tiny model for the embedded one), step a plan ends
    "lora": ("huggingface_lora.py", ["--model", TINY, "--train-size", "8", "--epochs", "2",
                                     "--batch-size", "4", "--max-new-tokens", "4",
                                     "--no-verify-reload"], None),
    "dspy": ("dspy_example.py", ["--model", TINY, "--optimizer", "labeled", "--train-size", "4",
                                 "--max-new-tokens", "4"], None),
    # two epochs given: two checkpoints, and half the time of the rule's five
    "openai": ("openai_finetune.py", ["--train-size", "20", "--epochs", "2",
                                      "--max-new-tokens", "4"], None),
    # 20 examples: OpenAI's rule raises their epochs from 3 to 5
    "openai_dry": ("openai_finetune.py", ["--dry-run", "--train-size", "20"], None),
    "lora_plan": ("huggingface_lora.py", ["--model", "someone/not-downloaded-7B"], 2),
    "dspy_plan": ("dspy_example.py", ["--lm", "openai/gpt-4o-mini"], 3)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    """Each run of RUNS, made once, when a test first asks for it."""
    done = {}

    def run(name: str) -> dict:
        if name not in done:
            script, args, _ = RUNS[name]
            done[name] = run_script(script, [str(tiny_model) if a == TINY else a for a in args],
                                    tmp_path_factory.mktemp(name),
                                    **{finetune_service.EMBEDDED_ID: str(tiny_model)})
        return done[name]
    return run


@pytest.mark.parametrize("name", list(RUNS))
def test_each_step_ends_with_exactly_one_notice(name, runs, request):
    """A plan-only run: each step it finished; the one it stops in ends with the plan."""
    stops = RUNS[name][2]
    if stops:
        request.getfixturevalue("no_network")  # a plan sends nothing
    run = runs(name)
    assert sorted(run["steps"]) == list(range(1, (stops or 6) + 1))
    for step, lines in run["steps"].items():
        found = [line for line in lines if NOTICE in line]
        assert found == ([] if step == stops else [lines[-1]]), f"step {step}"
    assert not stops or run["steps"][stops][-1].startswith("To go ahead: ")


def check_moved(groups, before: float, after: float) -> None:
    """MOVED's groups (verb, by how much, from, to, or stayed at) against the numbers."""
    verb, by, start, end, stayed = groups
    a, b = round(before, 3), round(after, 3)
    if stayed:
        assert float(stayed) == a == b
        return
    assert (float(start), float(end)) == (a, b)
    assert verb == ("fell" if b < a else "rose") and float(by) == round(abs(b - a), 3)


def check_steps_1_5_6(said: dict, res: dict, short: str) -> None:
    """The notices every script shares, against its results file: the splits (step 1), the
    answers before and after (5), and this run's row of the scoreboard (6, alone there)."""
    sizes = res["dataset"]["split_sizes"]
    m = re.search(r"train \((\d+)(?: of (\d+))? examples\), chooses what to keep on dev \((\d+)\)"
                  r", and is only scored on test \((\d+)\): one test question is ([\d.]+) of "
                  r"accuracy", said[1])
    assert (int(m[1]), int(m[2] or m[1]), int(m[3]), int(m[4])) == (
        res["dataset"]["train_used"], sizes["train"], sizes["dev"], sizes["test"])
    assert float(m[5]) == float(f"{1 / sizes['test']:.2g}")
    before, after, rows = res["before"], res["after"], res["predictions"]
    m = re.match(r"answers went from (\d+) to (\d+) words", said[5])
    assert m.groups() == (f"{before['words_per_answer']:.0f}", f"{after['words_per_answer']:.0f}")
    m = re.search(r"accuracy ([\d.]+) -> ([\d.]+) \((\d+) fixed, (\d+) broken\)", said[5])
    assert m.groups() == (f"{before['accuracy']:.2f}", f"{after['accuracy']:.2f}",
                          str(sum(r["after_correct"] > r["before_correct"] for r in rows)),
                          str(sum(r["after_correct"] < r["before_correct"] for r in rows)))
    assert ("the same answers, word for word" in said[5]) == all(
        r["before"] == r["after"] for r in rows)
    cost = res["cost_usd"]
    assert said[6].startswith(f"highest accuracy: {short} {res['after']['accuracy']:.2f}; ")
    assert f"tuning time: {short} {fmt_seconds(res['wall_time_s']['tune'])}; cost: {short} " \
           f"${cost['amount']:.2f} ({cost['kind']}); data sent off this machine: " \
           f"{short if res['data_left_machine'] else 'none'}." in said[6]


def test_lora_notices_cite_this_runs_numbers(runs):
    run = runs("lora")
    said, res = run["notices"], run["results"]
    shown = re.search(r"Tokens that carry loss \((\d+) of (\d+);", run["out"])
    m = re.search(r"only the (\d+) tokens of its answer turn; its (\d+) prompt tokens", said[2])
    assert int(m[1]) == int(shown[1]) and int(m[1]) + int(m[2]) == int(shown[2])
    m = re.match(r"only ([\d.]+)% of the parameters train \(([\d,]+) of ([\d,]+)\): the rank-"
                 r"(\d+) ", said[3])
    n, total = res["trainable_params"], res["total_params"]
    assert (m[2], m[3], int(m[4])) == (f"{n:,}", f"{total:,}", res["config"]["lora_r"])
    assert float(m[1]) == round(100 * n / total, 2)
    rows = {r["epoch"]: r for r in res["extra"]["epochs"]}  # the epoch table, epoch 0 = base
    m = re.match(rf"from epoch (\d+) to (\d+) training loss {MOVED} and dev loss {MOVED}",
                 said[4])
    first, second = rows[int(m[1])], rows[int(m[2])]
    assert int(m[2]) == int(m[1]) + 1 == 2  # two epochs: the only pair of trained ones
    check_moved(m.groups()[2:7], first["train_loss"], second["train_loss"])
    check_moved(m.groups()[7:12], first["dev_loss"], second["dev_loss"])
    kept = res["extra"]["kept"]
    assert f"Kept: {'the base model' if kept == 'base' else kept}, by its dev answers" in said[4]
    check_steps_1_5_6(said, res, "LoRA")


def test_dspy_notices_cite_this_runs_numbers(runs):
    run = runs("dspy")
    said, res = run["notices"], run["results"]
    shown = [line for line in run["steps"][2] if re.fullmatch(r"--- \w+ ---", line)]
    assert said[2].startswith(f"these {len(shown)} messages are the plain chat prompt")
    m = re.search(r"LabeledFewShot will put (\d+) of the (\d+) training pairs", said[3])
    n = res["dataset"]["train_used"]
    assert (int(m[1]), int(m[2])) == (min(res["config"]["max_demos"], n), n)
    demos, dev = res["extra"]["optimizer_report"]["demos"], res["extra"]["dev"]
    m = re.match(r"LabeledFewShot put (\d+) demos in the prompt \((.*?)\); on dev the optimized "
                 r"program scored accuracy ([\d.]+) \(F1 ([\d.]+)\) and the zero-shot one "
                 r"([\d.]+) \(F1 ([\d.]+)\)", said[4])
    assert int(m[1]) == len(demos) and m[2] == ", ".join(
        f"{s} {k}" for s, k in edu_qa.by_subject(demos).items())
    assert m.groups()[2:] == tuple(f"{dev[name][key]:.2f}" for name in ("optimized", "zero-shot")
                                   for key in ("accuracy", "f1"))
    assert f"the {res['extra']['kept']} program is kept" in said[4]
    assert "DSPy changes no weight" in said[5] or "the same answers" in said[5]
    check_steps_1_5_6(said, res, "DSPy")


def test_openai_notices_cite_this_runs_numbers(runs):
    run = runs("openai")
    said, res, out = run["notices"], run["results"], run["out"]
    check_steps_1_5_6(said, res, "OpenAI-style")
    m = re.match(r"OpenAI bills all ([\d,]+) tokens of the (\d+) training lines for each epoch, "
                 r"but the model learns from the ([\d,]+) tokens of their assistant turns", said[2])
    assert m[1] == re.search(r"billable tokens: ([\d,]+) x", out)[1]
    assert m[3] == re.search(r"assistant tokens: (\d+)", out)[1]
    n, epochs = res["dataset"]["train_used"], res["extra"]["epochs"]
    assert int(m[2]) == n == 20 and epochs == res["config"]["epochs"] == 2
    assert said[3].startswith(f"--epochs 2 was given; OpenAI's rule would give {n} examples "
                              f"{chat_format.default_epochs(n)}. This job: {n} examples x "
                              f"{epochs} epochs = {n * epochs} example-passes, about "
                              f"${res['extra']['openai_estimate_usd']:.4f} at OpenAI")
    assert "fewer examples" not in said[3]
    # step 4: the steps and losses it cites are its checkpoints', as the results file has them
    cps = res["extra"]["checkpoints"]
    assert len(cps) == epochs and said[4] == notices.openai_checkpoints(res)
    losses = {round(c[k], 3) for c in cps for k in ("train_loss", "valid_loss")}
    assert {int(s) for s in re.findall(r"step (\d+)", said[4])} <= {c["step"] for c in cps}
    for verb, by, start, end, stayed in re.findall(MOVED, said[4]):
        cited = [float(x) for x in ((start, end) if verb else (stayed,))]
        assert set(cited) <= losses
        assert not verb or float(by) == round(abs(cited[1] - cited[0]), 3)
    valid, train = ([round(c[k], 3) for c in cps] for k in ("valid_loss", "train_loss"))
    rose, fell = valid[-1] > min(valid), train[-1] < train[valid.index(min(valid))]
    assert said[4].startswith("overfitting: ") == (rose and fell)
    assert ("did not rise from its lowest" in said[4]) == (not rose)
    kept = res["extra"]["kept"]
    assert f"Kept: {'the base model' if kept == 'base' else kept}, " in said[4]


def test_openai_dry_run_notices_say_what_execute_would_do(runs):
    said, res = runs("openai_dry")["notices"], runs("openai_dry")["results"]
    assert said[1].startswith("the method adapts to train (20 of 72 examples)")
    n, estimate = res["dataset"]["train_used"], res["extra"]["openai_estimate_usd"]
    assert res["extra"]["epochs"] == chat_format.default_epochs(n) == 5
    assert said[3].startswith(f"OpenAI's rule aims at 3 epochs; {n} examples x 3 = {3 * n} "
                              "example-passes is under its floor of 100, so it raises the epochs "
                              f"to 5 (100 // {n}): fewer examples, more passes over each. This "
                              f"job: {n} examples x 5 epochs = {5 * n} example-passes, about "
                              f"${estimate:.4f} at OpenAI")
    assert f"upload {n} training and {res['dataset']['split_sizes']['dev']} validation " \
           f"examples and start one job, which OpenAI would charge about ${estimate:.4f}" in said[4]
    assert said[5].startswith("a dry run answers nothing") and res["after"] is None
    assert said[6].startswith("this run was a dry run") and \
        f"about ${res['cost_usd']['amount']:.4f} (estimated)" in said[6]


# ---- the notice functions on crafted numbers --------------------------------------------------

def job(*checkpoints, kept: str) -> dict:
    return {"config": {"dry_run": False}, "extra": {"kept": kept, "checkpoints": [
        {"step": s, "train_loss": t, "valid_loss": v} for s, t, v in checkpoints]}}


@pytest.mark.parametrize("checkpoints,kept,says", [
    ([(10, 1.0, 0.9), (20, 0.8, 0.85), (30, 0.6, 0.95)], "step 30",  # valid loss turns up
     ["overfitting: from step 20 to step 30 training loss fell 0.200 (0.800 -> 0.600) while "
      "validation loss rose from its lowest (0.850 -> 0.950)",
      "Kept: step 30, by its dev ANSWERS, not by the lowest validation loss (step 20)."]),
    ([(10, 1.0, 0.9), (20, 0.8, 0.85), (30, 0.7, 0.8)], "step 30",  # it does not
     ["validation loss did not rise from its lowest: from step 10 to step 30 it fell 0.100 "
      "(0.900 -> 0.800) and training loss fell 0.300 (1.000 -> 0.700), so no overfitting shows",
      "Kept: step 30, which has both the best dev answers and the lowest validation loss."]),
    ([(10, 0.8, 0.9), (20, 0.9, 1.0)], "base",  # both rise: not while training loss fell
     ["training loss did not fall, so this is not the overfitting pattern",
      "Kept: the base model, by its dev answers"]),
    ([(10, 1.0, 0.9)], "step 10", ["one checkpoint (step 10): training loss 1.000, validation "
                                   "loss 0.900; one point shows no trend"]),
    ([(10, 0.4, None)], "step 10", ["no training and validation loss together for its 1 "
                                    "checkpoint(s)", "Kept: step 10, by its dev answers."]),
    ([], "final", ["the service listed no checkpoints", "Kept: final, by its dev answers."])])
def test_openai_step_4_reads_validation_against_training_loss(checkpoints, kept, says):
    text = notices.openai_checkpoints(job(*checkpoints, kept=kept))
    assert all(part in text for part in says), text
    assert text.startswith("overfitting:") == says[0].startswith("overfitting:")


def test_openai_prefers_the_loss_on_the_whole_validation_file():
    res = job((10, 1.0, 0.5), (20, 0.9, 0.4), kept="step 10")
    res["extra"]["checkpoints"][1]["full_valid_loss"] = 0.7  # worse on the whole file
    assert "validation loss rose from its lowest (0.500 -> 0.700)" in \
        notices.openai_checkpoints(res)


@pytest.mark.parametrize("losses,kept,says", [
    ([(None, 2.0), (2.5, 1.8)], "epoch 1",  # one epoch, dev loss under training loss
     "from the untrained model to epoch 1 dev loss fell 0.200 (2.000 -> 1.800); training loss "
     "is logged only while training (2.500 at the end), so one epoch has no next one to "
     "compare: overfitting shows when dev loss rises from one epoch to the next while training "
     "loss falls. Kept: epoch 1, by its dev answers, not by its loss."),
    ([(None, 2.0), (1.5, 1.6), (1.2, 1.7), (1.0, 1.9)], "base",  # where overfitting starts
     "from epoch 1 to 2 training loss fell 0.300 (1.500 -> 1.200) and dev loss rose 0.100 "
     "(1.600 -> 1.700): better on its training answers, worse on new questions, which is "
     "overfitting. Kept: the base model, by its dev answers (no epoch answered better)."),
    ([(None, 2.0), (1.5, 1.6), (1.2, 1.5), (1.0, 1.45)], "epoch 3",  # the last pair
     "from epoch 2 to 3 training loss fell 0.200 (1.200 -> 1.000) and dev loss fell 0.050 "
     "(1.500 -> 1.450): both fell, so what it learned still carries over to new questions. "
     "Kept: epoch 3, by its dev answers, not by its loss.")])
def test_lora_step_4_compares_consecutive_epochs(losses, kept, says):
    assert notices.lora_epochs({"extra": {"kept": kept, "epochs": [
        {"epoch": i, "train_loss": t, "dev_loss": d} for i, (t, d) in enumerate(losses)]}}) == says


def test_lora_without_the_dev_judge_reads_the_trainers_log():
    log = [{"loss": 3.0, "epoch": 0.5}, {"loss": 2.5, "epoch": 1.0}, {"eval_loss": 2.7, "epoch": 1}]
    assert notices.epoch_rows(log) == [{"epoch": 1, "train_loss": 2.5, "dev_loss": 2.7}]
    text = notices.lora_epochs({"extra": {"train_log": log, "kept": "last epoch"}})
    assert text.startswith("after epoch 1 dev loss is 2.700; training loss is logged only "
                           "while training (2.500 at the end)")
    assert text.endswith("Kept: the last epoch, unjudged (--no-judge-on-dev).")


@pytest.mark.parametrize("n,epochs_,says,more_passes", [
    (12, 8, "12 examples x 3 = 36 example-passes is under its floor of 100, so it raises the "
            "epochs to 8 (100 // 12)", True),
    (30, 3, "under its floor of 100, but 100 // 30 is still 3, so it keeps 3", False),
    (72, 3, "x 3 = 216 example-passes, within its 100 to 25,000, so it keeps 3", False),
    (10_000, 2, "over its ceiling of 25,000, so it lowers the epochs to 2", False),
    (3, 25, "raises the epochs to 25 (100 // 3, at most 25)", True)])
def test_openai_epochs_rule_says_fewer_examples_more_passes_only_when_the_floor_applied(
        n, epochs_, says, more_passes):
    got, text = notices.epochs_rule(n)
    assert got == epochs_ == chat_format.default_epochs(n)
    assert says in text
    assert ("fewer examples, more passes" in text) == more_passes


def step_5(method: str, right_before: int, right_after: int, kept="epoch 2") -> str:
    test = edu_qa.load_qa().split("test")
    before, after = answers(test, right_before), answers(test, right_after)
    return notices.style_or_facts({
        "method": method, "extra": {"kept": kept}, "before": edu_qa.score(test, before),
        "after": edu_qa.score(test, after),
        "predictions": edu_qa.prediction_rows(test, before, after)})


def test_step_5_calls_dspys_gain_elicitation_and_the_weights_methods_learning():
    dspy = step_5("dspy", 6, 30)
    assert "accuracy 0.04 -> 0.20 (24 fixed, 0 broken), more than noise: the prompt drew more " \
           "right answers out of the same frozen weights (elicitation" in dspy
    assert "weights give" not in dspy and "learned" not in dspy
    lora = step_5("huggingface_lora", 30, 6)
    assert "(0 fixed, 24 broken), more than noise: the tuned weights give fewer right " \
           "answers" in lora and "elicitation" not in lora
    assert step_5("dspy", 6, 8).endswith(", within noise: DSPy changes no weight, only what "
                                         "the prompt draws out.")
    assert step_5("openai_finetune", 6, 8).endswith(", within noise.")
    assert step_5("huggingface_lora", 6, 6, kept="base").endswith(
        "(0 fixed, 0 broken): the same answers, word for word, as step 4 kept the untrained one.")
    assert notices.style_or_facts({"method": "openai_finetune", "before": None, "after": None,
                                   "predictions": []}).startswith("a dry run answers nothing")


def test_step_6_says_which_method_when_with_cost_and_what_left_the_machine(tmp_path):
    data = edu_qa.load_qa()
    lora = make_results(data, "huggingface_lora", before_right=6, after_right=30)
    lora["wall_time_s"]["tune"] = 200.0
    dspy = make_results(data, "dspy", before_right=6, after_right=8)
    dspy.update(data_left_machine=True, cost_usd={"amount": 0.12, "kind": "actual"})
    for res in (lora, dspy):
        edu_qa.write_results(res, tmp_path)
    text = notices.which_method(edu_qa.scoreboard_columns(data, tmp_path))
    assert "tuning time: DSPy 95 s, LoRA 3.3 min; cost: DSPy $0.12 (actual), LoRA $0.00 " \
           "(free); data sent off this machine: DSPy. The data supports LoRA on accuracy: use " \
           "LoRA when that gain is worth its time and cost, DSPy when tuning time matters " \
           "more" in text
    dry = make_results(data, "openai_finetune", dry_run=True)
    text = notices.which_method(edu_qa.scoreboard_columns(data, tmp_path), dry)
    assert text.startswith("this run was a dry run: nothing was trained or scored; with "
                           "--execute OpenAI would charge about $0.0200 (estimated)")
    assert "highest accuracy: LoRA 0.20, DSPy 0.05" in text
    assert notices.which_method([], dry).endswith("get a row to compare")


def test_steps_1_to_3_say_what_their_numbers_mean():
    res = {"dataset": {"split_sizes": {"train": 10, "dev": 3, "test": 4}, "train_used": 5},
           "config": {"judge_on_dev": False, "lora_r": 8, "target_modules": "q_proj,v_proj"},
           "trainable_params": 1_000, "total_params": 400_000}
    assert notices.splits(res) == (
        "the method adapts to train (5 of 10 examples), only measures its loss on dev (3; "
        "--no-judge-on-dev), and is only scored on test (4): one test question is 0.25 of "
        "accuracy, so a change of a few questions can be noise")
    assert notices.trainable(res).startswith("only 0.25% of the parameters train (1,000 of "
                                             "400,000): the rank-8 LoRA matrices")
    assert notices.loss_tokens(0, 64, 64).startswith("the example above was cut at "
                                                     "--max-length 64 before its answer")
    assert "the 30 tokens of their assistant turns (25%)" in notices.chat_tokens(
        {"lengths": [60, 60], "assistant_tokens": 30})
    chat = [{"role": "user", "content": "[[ ## question ## ]]\nq\n\n[[ ## answer ## ]]"}]
    assert "field markers" in notices.dspy_messages(chat, "q")
    assert "not the plain chat prompt" in notices.dspy_messages([{"role": "user",
                                                                  "content": "q"}], "q")


@pytest.mark.parametrize("optimizer,says", [
    ("none", "--optimizer none leaves its prompt as it is"),
    ("labeled", "LabeledFewShot will put 3 of the 3 training pairs"),
    ("bootstrap", "BootstrapFewShot will run it on the 3 training questions and keep up to 4"),
    ("random-search", "random search will build 8 demo sets of up to 4 demos from the 3 "
                      "training examples, besides zero-shot, labeled and one bootstrap, and "
                      "keep the best on the 5 dev questions"),
    ("mipro", "MIPROv2 will propose instructions and demo sets of up to 4 demos"),
    ("gepa", "GEPA's reflection LM (openai/gpt-4o) will rewrite the instruction")])
def test_dspy_step_3_says_only_the_prompt_can_change(optimizer, says):
    text = notices.dspy_program({"config": {
        "optimizer": optimizer, "max_demos": 4, "candidates": 8, "reflection_lm": "openai/gpt-4o"},
        "dataset": {"train_used": 3, "split_sizes": {"dev": 5}}})
    assert text.startswith("0 trainable parameters: the model stays frozen") and says in text


def test_dspy_step_4_counts_the_demos_and_says_which_program_dev_kept():
    demos = [{"subject": "physics", "kind": "bootstrapped: the model's own answer"},
             {"subject": "physics", "kind": "labeled: the reference answer"}]
    dev = {"zero-shot": {"accuracy": 0.5, "f1": 0.2}, "optimized": {"accuracy": 0.6, "f1": 0.3}}
    res = {"extra": {"kept": "optimized", "dev": dev, "optimizer_report": {
        "optimizer": "bootstrap", "demos": demos, "instruction": "Be brief."}}}
    assert notices.dspy_demos(res).startswith(
        "BootstrapFewShot put 2 demos in the prompt (physics 2), 1 of them the model's own "
        "answers and a new instruction; on dev the optimized program scored accuracy 0.60 (F1 "
        "0.30) and the zero-shot one 0.50 (F1 0.20), so the optimized program is kept")
    res["extra"].update(kept="zero-shot", optimizer_report={
        "optimizer": "none", "demos": [], "instruction": edu_qa.SYSTEM_PROMPT})
    text = notices.dspy_demos(res)
    assert text.startswith("--optimizer none added nothing to the prompt")
    assert "so the zero-shot program is kept (the optimized one must score higher)" in text
