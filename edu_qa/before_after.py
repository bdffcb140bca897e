"""Step 5's report: the test answers before and after a method, graded and compared.

    report_test_answers()     both sets scored with 95% intervals, the change and whether it
                              is more than noise, the questions fixed and broken
    show_changed_examples()   one fixed and one broken answer in full, before beside after

The step's notice (style or facts?) is notices.style_or_facts, the script's last line.
"""

from __future__ import annotations

from . import scoring
from .cli import say
from .data import QA
from .results import prediction_rows
from .scoring import score

def report_test_answers(console, test: list[QA], before: list[str], after: list[str],
                        title: str, parse_failures: dict | None = None):
    """Score both sets of answers, say whether the change is more than noise, list the
    questions fixed and broken, and show one fixed and one broken answer in full.
    Returns (scores, rows, change)."""
    failures = parse_failures or {}
    scores = {"before": score(test, before, failures.get("before")),
              "after": score(test, after, failures.get("after"))}
    rows = prediction_rows(test, before, after)
    change = scoring.compare(rows)
    console.print(f"test, {len(test)} questions (95% intervals; F1: word overlap with the "
                  "reference):")
    for when, label in (("before", "before (plain prompt)"), ("after", "after")):
        sc = scores[when]
        note = f" | parse failures {sc['parse_failures']}/{sc['n']}" \
            if sc.get("parse_failures") is not None else ""
        console.print(f"  {label:21}: accuracy {scoring.fmt_ci(sc['accuracy'], sc['accuracy_ci'])}"
                      f" | strict {sc['strict_accuracy']:.2f} | F1 "
                      f"{scoring.fmt_ci(sc['f1'], sc['f1_ci'])}{note}")
    console.print("change in accuracy: " + scoring.change_in_words(change))
    console.print("change in word-overlap F1: " + scoring.change_in_words(change, "f1"))
    print_changed_questions(console, change)
    show_changed_examples(console, rows, title)
    return scores, rows, change


SHOWN = 4  # changed questions named in step 5; the results file lists them all


def print_changed_questions(console, change: dict) -> None:
    """The questions the method fixed and broke; how many stay wrong (results/<method>.json
    and the README's results list them)."""
    def first(questions: list[str]) -> str:
        more = f"; ... {len(questions) - SHOWN} more" if len(questions) > SHOWN else ""
        return "; ".join(questions[:SHOWN]) + more if questions else "none"
    say(console, f"fixed ({len(change['fixed'])}): ", first(change["fixed"]))
    say(console, f"broken ({len(change['broken'])}): ", first(change["broken"])
        + f" | still wrong: {len(change['still_wrong'])} (all of them: the results file)")


def mark(correct) -> str:
    return "" if correct is None else "✓ " if correct else "✗ "


def show_changed_examples(console, rows: list[dict], title: str = "") -> None:
    """Step 5: one fixed and one broken question (else the first), the answer before and
    after in full (✓ key found, ✗ not): what the change looks like, not only its count."""
    picks = [(label, next((r for r in rows if r.get("before_correct") is not None
                           and (r["before_correct"], r["after_correct"]) == pair), None))
             for label, pair in (("fixed", (False, True)), ("broken", (True, False)))]
    picks = [(label, r) for label, r in picks if r] or [("first question", rows[0])]
    if title:
        say(console, f"{title} (✓ key fact found, ✗ not):")
    for label, r in picks:
        say(console, f"{label}: ", f"{r['question']} (key: {r['key'] or 'the whole answer'})")
        for when in ("before", "after"):
            say(console, f"  {when:6} ", mark(r.get(f"{when}_correct")) + (r[when] or "–"))
