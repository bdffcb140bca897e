"""Helpers more than one test file uses: hand-made results files, the tiny LoRA setup."""

import dataclasses

import edu_qa


@dataclasses.dataclass(frozen=True)
class FakeConfig:
    data: str = "x.jsonl"
    seed: int = 0


def answers(test, n_right: int) -> list[str]:
    """The reference answer for the first n_right questions, a wrong one for the rest."""
    return [ex.answer if i < n_right else "I do not know." for i, ex in enumerate(test)]


def make_results(data, method, *, dry_run=False, sha=None, before_right=6, after_right=12):
    """A results file as a script writes it: answers, their scores, a tuning time."""
    res = edu_qa.new_results(method, FakeConfig(), data, model="m", dry_run=dry_run)
    if sha:
        res["dataset"]["sha256"] = sha
    if dry_run:
        res["cost_usd"] = {"amount": 0.02, "kind": "estimated"}
        return res
    test = data.split("test")
    before, after = answers(test, before_right), answers(test, after_right)
    res.update(before=edu_qa.score(test, before), after=edu_qa.score(test, after),
               predictions=edu_qa.prediction_rows(test, before, after))
    res["wall_time_s"]["tune"] = 95.0
    return res


def tiny_setup(tiny_model, out, dev_questions: int = 4, **overrides):
    """The LoRA recipe's steps 1-3 on the tiny test model, as the script runs them: a
    namespace ready for tune(s) below (cfg, device, configured, model, tok, formatted, dev,
    console, run)."""
    import types

    import huggingface_lora as lora
    cfg = lora.Config(model=str(tiny_model), output_dir=str(out), train_size=16, batch_size=4,
                      learning_rate=3e-3, verify_reload=False, results_dir=str(out / "results"),
                      **overrides)
    console = edu_qa.console()
    prepared = lora.prepare_data(cfg, console)
    run = edu_qa.Run.start(lora.METHOD, cfg, prepared.data, prepared.train, cfg.model)
    tok = edu_qa.load_tokenizer(cfg.model)
    dev = prepared.dev[:dev_questions]
    formatted = lora.convert_format(cfg, tok, prepared.train, dev, console)
    configured = lora.configure_model(cfg, prepared.where, formatted.train, console)
    model, tok, _, _ = lora.load_model(cfg, prepared.where, configured, console)
    return types.SimpleNamespace(cfg=cfg, device=prepared.where, configured=configured,
                                 model=model, tok=tok, formatted=formatted, dev=dev,
                                 console=console, run=run, prepared=prepared)


def tune(s):
    """huggingface_lora.tune on a tiny_setup namespace: the Tuned record."""
    import huggingface_lora as lora
    return lora.tune(s.cfg, s.device, s.configured, s.model, s.tok, s.formatted, s.dev,
                     s.console, s.run)


def train_losses(s) -> list[float]:
    return [r["loss"] for r in s.run.results["extra"]["train_log"] if "loss" in r]
