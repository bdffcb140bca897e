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


def tiny_setup(tiny_model, out, **overrides):
    """The LoRA recipe's steps 1-3 on the tiny test model: ready to tune()."""
    import huggingface_lora as lora
    cfg = lora.Config(model=str(tiny_model), output_dir=str(out), train_size=16, batch_size=4,
                      learning_rate=3e-3, verify_reload=False, **overrides)
    console = edu_qa.console()
    data, train, dev, test, env = lora.prepare_data(cfg, console)
    tok = edu_qa.load_tokenizer(cfg.model)
    train_ds, dev_ds = lora.convert_format(cfg, tok, train, dev[:4], console)
    lora_config, _, _ = lora.configure_model(cfg, env, train_ds, console)
    model, tok, _, _ = lora.load_model(cfg, env, lora_config, console)
    return cfg, env, model, tok, train_ds, dev_ds, console
