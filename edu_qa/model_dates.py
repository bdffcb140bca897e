"""Hosted models with their shutdown dates: a plan warns before the date, --execute refuses after.

    shutdown()           (date, source) for a model name, or None where none is known
    fine_tuning_closed() OpenAI's last day for new fine-tuning jobs, and whether it has passed
    check_model()        the plan's line about a model's date; UserError (exit 2) for --execute
                         on or after it

Dates are OpenAI's API deprecations page as reported in the project's issue of 2026-11-30;
a fine-tuned model shuts down with its base. A model not listed has no known date: the plan
says so rather than guess. EDU_QA_TODAY (YYYY-MM-DD) stands in for today in tests.
"""

from __future__ import annotations

import datetime
import os

from .cli import UserError

SOURCE = "OpenAI API deprecations page, as of 2026-11-30"
# the day self-serve fine-tuning takes no new job from anyone (earlier for most organizations:
# since 2026-05-07 for those that never fine-tuned, since 2026-07-02 for those without a
# fine-tuned model used in 60 days)
FINE_TUNING_CLOSES = datetime.date(2027, 1, 6)
SHUTDOWN = {  # model (and the names it goes by) -> the day it stops answering
    "gpt-4.1-nano-2025-04-14": datetime.date(2026, 10, 23),
    "gpt-4.1-nano": datetime.date(2026, 10, 23),
    "gpt-4o-mini-2024-07-18": datetime.date(2027, 1, 14),
    "gpt-4o-mini": datetime.date(2027, 1, 14),  # the alias has no other snapshot
    "gpt-4o-2024-08-06": datetime.date(2027, 1, 14),
    "gpt-4.1-2025-04-14": datetime.date(2027, 1, 14),
    "gpt-4.1": datetime.date(2027, 1, 14),
    "gpt-4.1-mini-2025-04-14": datetime.date(2027, 1, 14),
    "gpt-4.1-mini": datetime.date(2027, 1, 14),
}


def today() -> datetime.date:
    forced = os.environ.get("EDU_QA_TODAY")
    return datetime.date.fromisoformat(forced) if forced else datetime.date.today()


def shutdown(model: str) -> tuple[datetime.date, str] | None:
    """The shutdown date of a model name as OpenAI's API or LiteLLM ('openai/...') spells it;
    a fine-tuned 'ft:BASE:...' model shuts down with its base."""
    name = model.removeprefix("openai/")
    if name.startswith("ft:"):
        name = name.split(":")[1]
    date = SHUTDOWN.get(name)
    return (date, SOURCE) if date else None


def fine_tuning_closed() -> tuple[datetime.date, bool]:
    return FINE_TUNING_CLOSES, today() >= FINE_TUNING_CLOSES


def check_model(model: str, execute: bool, what: str = "model") -> str:
    """The plan's line about a model's date. --execute on or after the date: UserError."""
    known = shutdown(model)
    if known is None:
        return f"{what} {model}: no shutdown date known (check the provider's deprecations page)"
    date, source = known
    if today() >= date:
        if execute:
            raise UserError(f"{what} {model} shut down on {date} ({source}); choose another "
                            "model (nothing was sent)")
        return f"{what} {model}: SHUT DOWN on {date} ({source}); --execute will refuse it"
    return f"{what} {model}: shuts down on {date} ({(date - today()).days} days from now; " \
           f"{source})"
