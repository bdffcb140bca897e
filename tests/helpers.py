"""Helpers more than one test file uses: hand-made results files."""

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
