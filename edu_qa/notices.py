"""What to notice: the one line that ends each of the six steps, in words, from this run's
numbers. Each function returns a sentence that is true for any run (any seed, data file,
training size or tiny model), so it only says what its numbers show; cli.notice() prints it.

    splits()             step 1, every method: what train, dev and test are for
    loss_tokens()        step 2, LoRA: only the answer carries loss
    dspy_messages()      step 2, DSPy: is the zero-shot program the plain prompt?
    chat_tokens()        step 2, OpenAI: what the job bills and what it learns from
    trainable()          step 3, LoRA: the share of parameters that train
    dspy_program()       step 3, DSPy: what the optimizer may change (the prompt only)
    openai_epochs()      step 3, OpenAI: its epochs rule for this many examples, and the cost
    lora_epochs()        step 4, LoRA: training and dev loss from one epoch to the next
    dspy_demos()         step 4, DSPy: what went into the prompt, and what dev kept
    openai_checkpoints() step 4, OpenAI: validation against training loss, and what dev kept
    style_or_facts()     step 5, every method: did the answers change in style, in facts?
    which_method()       step 6, every method: which method these numbers support, and when

Most take the run's results (results/<method>.json as it stands at the end of the step), so
a test can check each number a notice cites against the file.
"""

from __future__ import annotations

from . import chat_format, scoring
from .data import SYSTEM_PROMPT, by_subject, chat_messages
from .results import fmt_seconds

# DSPy's --optimizer choices by the names of their dspy classes
OPTIMIZERS = {"none": "--optimizer none", "labeled": "LabeledFewShot",
              "bootstrap": "BootstrapFewShot", "random-search": "random search",
              "mipro": "MIPROv2", "gepa": "GEPA"}


def moved(before: float, after: float, digits: int = 3) -> str:
    """'fell 0.050 (1.200 -> 1.150)', 'rose ...' or 'stayed at 1.200', as the numbers show
    them when rounded to digits."""
    a, b = round(before, digits), round(after, digits)
    if a == b:
        return f"stayed at {a:.{digits}f}"
    return f"{'fell' if b < a else 'rose'} {abs(b - a):.{digits}f} ({a:.{digits}f} -> " \
           f"{b:.{digits}f})"


# ---- step 1 -----------------------------------------------------------------------------------

def splits(results: dict) -> str:
    """What each split is for, with this run's sizes, and what one test question weighs."""
    sizes, used = results["dataset"]["split_sizes"], results["dataset"]["train_used"]
    train = str(used) if used == sizes["train"] else f"{used} of {sizes['train']}"
    judged = results["config"].get("judge_on_dev", True)  # only LoRA can switch it off
    dev = f"chooses what to keep on dev ({sizes['dev']})" if judged else \
        f"only measures its loss on dev ({sizes['dev']}; --no-judge-on-dev)"
    return (f"the method adapts to train ({train} examples), {dev}, and is "
            f"only scored on test ({sizes['test']}): one test question is "
            f"{1 / sizes['test']:.2g} of accuracy, so a change of a few questions can be noise")


# ---- step 2 -----------------------------------------------------------------------------------

def loss_tokens(answer_tokens: int, all_tokens: int, max_length: int) -> str:
    """LoRA: of the example shown, the tokens the loss counts (its answer) and the rest."""
    prompt = all_tokens - answer_tokens
    if answer_tokens == 0:
        return (f"the example above was cut at --max-length {max_length} before its answer: "
                f"all {all_tokens} tokens are prompt, labelled -100, so it carries no loss and "
                "teaches nothing; raise --max-length")
    return (f"in the example above the loss counts only the {answer_tokens} tokens of its "
            f"answer turn; its {prompt} prompt tokens are labelled -100: context the model is "
            "given, not text it must produce")


def dspy_messages(messages: list[dict], question: str) -> str:
    """DSPy: are these messages the plain prompt, or DSPy's field markers?"""
    n = len(messages)
    if messages == chat_messages(question):
        return (f"these {n} messages are the plain chat prompt, word for word: the zero-shot "
                "program IS the baseline, so whatever changes comes from the demos and "
                "instructions the optimizer adds")
    if any("[[ ## answer ## ]]" in str(m.get("content")) for m in messages):
        return (f"these {n} messages carry DSPy's field markers: the model must write "
                "'[[ ## answer ## ]]' before its answer, or the reply fails to parse")
    return (f"these {n} messages are not the plain chat prompt, so even the zero-shot program "
            "differs from the baseline before any optimization")


def chat_tokens(stats: dict) -> str:
    """OpenAI: every token of the file is billed; the assistant turns are what it learns."""
    total, answers = sum(stats["lengths"]), stats["assistant_tokens"]
    return (f"OpenAI bills all {total:,} tokens of the {len(stats['lengths'])} training lines "
            f"for each epoch, but the model learns from the {answers:,} tokens of their "
            f"assistant turns ({answers / total:.0%}), the reference answers; the system prompt "
            "and the questions are context")


# ---- step 3 -----------------------------------------------------------------------------------

def trainable(results: dict) -> str:
    """LoRA: how few of the parameters train."""
    n, total, cfg = results["trainable_params"], results["total_params"], results["config"]
    return (f"only {n / total:.2%} of the parameters train ({n:,} of {total:,}): the rank-"
            f"{cfg['lora_r']} LoRA matrices (--target-modules {cfg['target_modules']}); the base "
            "model's weights stay frozen, so what training saves is a small adapter")


def dspy_program(results: dict) -> str:
    """DSPy: the weights are frozen; what this optimizer may put into the prompt."""
    cfg, sizes = results["config"], results["dataset"]["split_sizes"]
    k, n, dev = cfg["max_demos"], results["dataset"]["train_used"], sizes["dev"]
    plan = {
        "none": "--optimizer none leaves its prompt as it is, zero-shot",
        "labeled": f"LabeledFewShot will put {min(k, n)} of the {n} training pairs into its "
                   "prompt as demos, with no LM calls",
        "bootstrap": f"BootstrapFewShot will run it on the {n} training questions and keep up "
                     f"to {k} demos, its own answers that state the key fact first, topped up "
                     "with reference pairs",
        "random-search": f"random search will build {cfg.get('candidates')} demo sets of up to "
                         f"{k} demos from the {n} training examples, besides zero-shot, labeled "
                         f"and one bootstrap, and keep the best on the {dev} dev questions",
        "mipro": f"MIPROv2 will propose instructions and demo sets of up to {k} demos from the "
                 f"{n} training examples, chosen on the {dev} dev questions",
        "gepa": f"GEPA's reflection LM ({cfg.get('reflection_lm')}) will rewrite the instruction "
                f"from the program's failures, judged on the {dev} dev questions",
    }[cfg["optimizer"]]
    return ("0 trainable parameters: the model stays frozen and the program is one "
            f"dspy.Predict (question -> answer), so only its prompt can change; {plan}")


def epochs_rule(n: int) -> tuple[int, str]:
    """OpenAI's n_epochs='auto' for n examples, and how the rule got there, in words."""
    target, floor = chat_format.TARGET_EPOCHS, chat_format.MIN_TARGET_EXAMPLES
    ceiling, cap = chat_format.MAX_TARGET_EXAMPLES, chat_format.MAX_DEFAULT_EPOCHS
    epochs, passes = chat_format.default_epochs(n), n * target
    rule = f"OpenAI's rule aims at {target} epochs; {n} examples x {target} = {passes:,} " \
           "example-passes"
    if passes < floor and epochs > target:
        capped = f", at most {cap}" if epochs == cap and floor // n > cap else ""
        return epochs, (f"{rule} is under its floor of {floor}, so it raises the epochs to "
                        f"{epochs} ({floor} // {n}{capped}): fewer examples, more passes over "
                        "each")
    if passes < floor:
        return epochs, (f"{rule} is under its floor of {floor}, but {floor} // {n} is still "
                        f"{epochs}, so it keeps {epochs}")
    if passes > ceiling:
        return epochs, (f"{rule} is over its ceiling of {ceiling:,}, so it lowers the epochs "
                        f"to {epochs}: more examples, fewer passes over each")
    return epochs, f"{rule}, within its {floor} to {ceiling:,}, so it keeps {epochs}"


def openai_epochs(results: dict) -> str:
    """OpenAI: the epochs this job trains for (OpenAI's rule or --epochs), and the cost."""
    n, epochs = results["dataset"]["train_used"], results["extra"]["epochs"]
    rule_epochs, rule = epochs_rule(n)
    text = rule if not results["config"].get("epochs") else (
        f"--epochs {epochs} was given; OpenAI's rule would give {n} examples {rule_epochs}")
    where = {"local": "; this run: the local service, $0", "plan": "; this run: a plan only, $0"}
    return (f"{text}. This job: {n} examples x {epochs} epochs = {n * epochs:,} example-passes, "
            f"about ${results['extra']['openai_estimate_usd']:.4f} at OpenAI, the dev and test "
            "answers included" + where.get(results["extra"].get("service"), ""))


# ---- step 4 -----------------------------------------------------------------------------------

def epoch_rows(train_log: list[dict]) -> list[dict]:
    """Trainer's log as one row per evaluation: its epoch, the last training loss logged
    before it, and the dev loss (what the judge's epoch table holds, without its answers)."""
    rows, last = [], None
    for entry in train_log:
        if "loss" in entry:
            last = entry["loss"]
        if "eval_loss" in entry:
            rows.append({"epoch": round(entry.get("epoch") or 0), "train_loss": last,
                         "dev_loss": entry["eval_loss"]})
    return rows


def lora_epochs(results: dict) -> str:
    """LoRA: training and dev loss from one epoch to the next, and what the answers kept."""
    extra = results["extra"]
    rows = extra.get("epochs") or epoch_rows(extra.get("train_log") or [])
    trained = [r for r in rows if r.get("train_loss") is not None
               and r.get("dev_loss") is not None]
    base = next((r for r in rows if r["epoch"] == 0 and r.get("dev_loss") is not None), None)
    if len(trained) >= 2:
        pairs = list(zip(trained, trained[1:]))
        a, b = next(((a, b) for a, b in pairs if overfits(a, b)), pairs[-1])
        text = (f"from epoch {a['epoch']} to {b['epoch']} training loss "
                f"{moved(a['train_loss'], b['train_loss'])} and dev loss "
                f"{moved(a['dev_loss'], b['dev_loss'])}")
        if overfits(a, b):
            text += (": better on its training answers, worse on new questions, which is "
                     "overfitting")
        elif falls(a, b, "train_loss") and falls(a, b, "dev_loss"):
            text += ": both fell, so what it learned still carries over to new questions"
    elif trained:
        one = trained[0]
        text = (f"from the untrained model to epoch {one['epoch']} dev loss "
                f"{moved(base['dev_loss'], one['dev_loss'])}; " if base else
                f"after epoch {one['epoch']} dev loss is {one['dev_loss']:.3f}; ")
        text += (f"training loss is logged only while training ({one['train_loss']:.3f} at the "
                 "end), so one epoch has no next one to compare: overfitting shows when dev "
                 "loss rises from one epoch to the next while training loss falls")
    else:
        text = "no epoch ended with both a training and a dev loss, so there is nothing to compare"
    kept = extra.get("kept") or "last epoch"
    return text + ". " + (
        "Kept: the base model, by its dev answers (no epoch answered better)" if kept == "base"
        else "Kept: the last epoch, unjudged (--no-judge-on-dev)" if kept == "last epoch"
        else f"Kept: {kept}, by its dev answers, not by its loss") + "."


def falls(a: dict, b: dict, key: str) -> bool:
    return round(b[key], 3) < round(a[key], 3)


def overfits(a: dict, b: dict) -> bool:
    """Training loss fell while the dev loss rose (as shown, to 3 decimals)."""
    return falls(a, b, "train_loss") and round(b["dev_loss"], 3) > round(a["dev_loss"], 3)


def dspy_demos(results: dict) -> str:
    """DSPy: what the optimizer put into the prompt, and which program dev kept."""
    extra = results["extra"]
    report, dev, kept = extra["optimizer_report"], extra["dev"], extra["kept"]
    demos, name = report["demos"], OPTIMIZERS.get(report["optimizer"], report["optimizer"])
    boot = sum(d["kind"].startswith("boot") for d in demos)
    new_instruction = report["instruction"] != SYSTEM_PROMPT
    if not demos and not new_instruction:
        text = f"{name} added nothing to the prompt (no demos, the same instruction)"
    else:
        text = (f"{name} put {len(demos)} demos in the prompt ("
                + ", ".join(f"{s} {n}" for s, n in by_subject(demos).items()) + ")"
                + (f", {boot} of them the model's own answers" if boot else "")
                + (" and a new instruction" if new_instruction else ""))
    z, o = dev["zero-shot"], dev["optimized"]
    return (f"{text}; on dev the optimized program scored accuracy {o['accuracy']:.2f} (F1 "
            f"{o['f1']:.2f}) and the zero-shot one {z['accuracy']:.2f} (F1 {z['f1']:.2f}), so "
            + ("the optimized program is kept" if kept == "optimized" else
               "the zero-shot program is kept (the optimized one must score higher)")
            + ". No weight changed: only the prompt")


def openai_checkpoints(results: dict) -> str:
    """OpenAI: validation loss against training loss at the job's checkpoints, and the
    model kept by its dev answers (or, in a dry run, what --execute would send)."""
    extra = results["extra"]
    if results["config"].get("dry_run"):
        return (f"a dry run sends nothing: with --execute the requests above upload "
                f"{results['dataset']['train_used']} training and "
                f"{results['dataset']['split_sizes']['dev']} validation examples and start one "
                f"job, which OpenAI would charge about ${extra['openai_estimate_usd']:.4f}, "
                "the dev and test answers included")
    cps = [{"step": c.get("step"), "train": c.get("train_loss"),
            "valid": c.get("full_valid_loss", c.get("valid_loss"))}
           for c in extra.get("checkpoints") or []]
    both = [dict(c, train=round(c["train"], 3), valid=round(c["valid"], 3)) for c in cps
            if isinstance(c["train"], (int, float)) and isinstance(c["valid"], (int, float))]
    low = min(both, key=lambda c: c["valid"]) if both else None
    if "checkpoints" not in extra:
        text = "this run recorded no checkpoint losses, so there are none to compare"
    elif not cps:
        text = "the service listed no checkpoints, so there are no losses to compare"
    elif not both:
        text = (f"the service reported no training and validation loss together for its "
                f"{len(cps)} checkpoint(s), so they cannot be compared")
    elif len(both) == 1:
        text = (f"one checkpoint (step {low['step']}): training loss {low['train']:.3f}, "
                f"validation loss {low['valid']:.3f}; one point shows no trend: overfitting is "
                "validation loss rising from its lowest while training loss falls")
    elif both[-1]["valid"] > low["valid"]:
        last = both[-1]
        losses = (f"from step {low['step']} to step {last['step']} training loss "
                  f"{moved(low['train'], last['train'])} while validation loss rose from its "
                  f"lowest ({low['valid']:.3f} -> {last['valid']:.3f})")
        text = (f"overfitting: {losses}: better on its training answers, worse on new ones"
                if last["train"] < low["train"] else
                f"{losses}; training loss did not fall, so this is not the overfitting pattern")
    else:
        first, last = both[0], both[-1]
        text = (f"validation loss did not rise from its lowest: from step {first['step']} to "
                f"step {last['step']} it {moved(first['valid'], last['valid'])} and training "
                f"loss {moved(first['train'], last['train'])}, so no overfitting shows")
    kept = extra.get("kept")
    lowest = f"step {low['step']}" if low else None
    return text + ". " + (
        "Kept: the base model, by its dev answers (no checkpoint answered better)"
        if kept == "base" else
        f"Kept: {kept}, by its dev ANSWERS, not by the lowest validation loss ({lowest})"
        if lowest and str(kept).startswith("step ") and kept != lowest else
        f"Kept: {kept}, which has both the best dev answers and the lowest validation loss"
        if lowest and kept == lowest else f"Kept: {kept}, by its dev answers") + "."


# ---- step 5 -----------------------------------------------------------------------------------

def style_or_facts(results: dict) -> str:
    """Did the method change how the model answers, how many answers are right, or both?
    DSPy changes no weight: what it changes is what the prompt draws out (elicitation)."""
    before, after, rows = results.get("before"), results.get("after"), results.get("predictions")
    if not (before and after and rows):
        return ("a dry run answers nothing, so there is no before and after to compare: run "
                "without --dry-run to measure both, free, on the local service")
    change = scoring.compare(rows)
    first = [s.get("answer_first") for s in (before, after)]
    text = (f"answers went from {before['words_per_answer']:.0f} to "
            f"{after['words_per_answer']:.0f} words")
    if None not in first:
        text += f", and right answers give the key fact first {first[0]:.0%} -> {first[1]:.0%}"
    style = abs(after["words_per_answer"] - before["words_per_answer"]) >= 5 or \
        (None not in first and abs(first[1] - first[0]) >= 0.1)
    text += ": the style changed" if style else ": the style changed little"
    text += (f"; accuracy {before['accuracy']:.2f} -> {after['accuracy']:.2f} "
             f"({len(change['fixed'])} fixed, {len(change['broken'])} broken)")
    more = "more" if len(change["fixed"]) > len(change["broken"]) else "fewer"
    dspy = results["method"] == "dspy"
    if all(r["before"] == r["after"] for r in rows):
        text += ": the same answers, word for word" + (
            ", as step 4 kept the untrained one" if results["extra"].get("kept") in
            ("base", "zero-shot") else "")
    elif change["accuracy_beyond_noise"] and dspy:
        text += (f", more than noise: the prompt drew {more} right answers out of the same "
                 "frozen weights (elicitation: DSPy changes no weight, so it taught no new "
                 "facts)")
    elif change["accuracy_beyond_noise"]:
        text += f", more than noise: the tuned weights give {more} right answers"
    else:
        text += ", within noise" + (": DSPy changes no weight, only what the prompt draws out"
                                    if dspy else "")
    return text + "."


# ---- step 6 -----------------------------------------------------------------------------------

def which_method(columns: list[dict], results: dict | None = None) -> str:
    """Step 6: which method these numbers support, and when to use which (time, cost, what
    left the machine), from the scoreboard's columns; this run's results, if it was a dry run,
    say what --execute would do."""
    done = [c for c in columns if c.get("scores") and c.get("change") and not c["dry_run"]]
    text = ""
    if results and results.get("dry_run"):
        text = (f"this run was a dry run: nothing was trained or scored; with --execute OpenAI "
                f"would charge about ${results['cost_usd']['amount']:.4f} "
                f"({results['cost_usd']['kind']}) and receive the training file. ")
        if not done:
            return text + ("Run without --dry-run to train and score it, free, on the local "
                           "service, and get a row to compare")
    if not done:
        return text
    by_accuracy = sorted(done, key=lambda c: -c["scores"]["accuracy"])
    text += "highest accuracy: " + ", ".join(f"{c['short']} {c['scores']['accuracy']:.2f}"
                                             for c in by_accuracy)
    passed = [c["short"] for c in by_accuracy if c["change"]["accuracy_beyond_noise"]]
    passed_f1 = [c["short"] for c in done if c["change"]["f1_beyond_noise"]]
    text += (f"; accuracy gain over the plain prompt more than noise: "
             f"{', '.join(passed) or 'none'} (F1: {', '.join(passed_f1) or 'none'})")
    timed = [c for c in done if c.get("tune_s") is not None]
    if timed:
        text += "; tuning time: " + ", ".join(f"{c['short']} {fmt_seconds(c['tune_s'])}"
                                              for c in timed)
    text += "; cost: " + ", ".join(f"{c['short']} {c['cost']}" for c in done)
    sent = [c["short"] for c in done if c["left_machine"]]
    text += f"; data sent off this machine: {', '.join(sent) or 'none'}. "
    if passed:
        best = passed[0]
        fastest = min(timed, key=lambda c: c["tune_s"])["short"] if timed else best
        return text + (f"The data supports {' and '.join(passed)} on accuracy: use {best} when "
                       "that gain is worth its time and cost"
                       + (f", {fastest} when tuning time matters more" if fastest != best else "")
                       + (f", and not {best} when the data must stay on this machine"
                          if best in sent else ""))
    return text + ("No method's accuracy gain is more than noise here, so choose by what each "
                   "needs: DSPy only LM calls on unchanged weights, LoRA your own hardware with "
                   "the data staying on it, OpenAI's service an upload of your training file")
