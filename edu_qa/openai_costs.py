"""What a fine-tuning job at OpenAI would cost, before anything is sent: OpenAI's format rules,
token counts in its encoding (tiktoken, offline), and a dated price table.

openai_finetune.py's steps 2 and 3 call these; the job's own bookkeeping is openai_jobs.py.
"""

from __future__ import annotations

from .cli import UserError
from .local_model import use_offline_tiktoken


# Per model: (USD per 1M training tokens, USD per 1M input / output tokens of the fine-tuned
# model, USD per 1M input / output tokens of the base model, training context per example).
# From copies of OpenAI's pricing pages (2025-08 to 2026-05); prices change: override with
# --price-training. gpt-4o-mini is the default: the cheapest fine-tunable chat model with good
# quality when checked, and the one OpenAI's own fine-tuning guide uses.
PRICES_CHECKED = "2026-05"


MODELS = {
    "gpt-4o-mini-2024-07-18": (3.00, (0.30, 1.20), (0.15, 0.60), 65_536),
    "gpt-4.1-nano-2025-04-14": (1.50, (0.20, 0.80), (0.10, 0.40), 65_536),
    "gpt-4.1-mini-2025-04-14": (5.00, (0.80, 3.20), (0.40, 1.60), 65_536),
    "gpt-4.1-2025-04-14": (25.00, (3.00, 12.00), (2.00, 8.00), 65_536),
    "gpt-4o-2024-08-06": (25.00, (3.75, 15.00), (2.50, 10.00), 65_536),
}


def encoding_for(model: str):
    import tiktoken
    use_offline_tiktoken()
    try:
        return tiktoken.encoding_for_model(model)
    except KeyError:  # a snapshot tiktoken does not know yet: current chat models use o200k
        return tiktoken.get_encoding("o200k_base")


def num_tokens(enc, messages: list[dict]) -> int:
    """Tokens of a chat as the cookbook counts them: 3 per message, 1 per name, 3 to prime
    the reply."""
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            total += len(enc.encode(value)) if isinstance(value, str) else 0
            total += 1 if key == "name" else 0
    return total


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile: the smallest value with at least q% of values at or below."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n*q/100), at least 1
    return ordered[int(rank) - 1]


def token_stats(examples: list[dict], model: str) -> dict:
    enc = encoding_for(model)
    lengths = [num_tokens(enc, ex["messages"]) for ex in examples]
    assistant = sum(len(enc.encode(m["content"])) for ex in examples for m in ex["messages"]
                    if m["role"] == "assistant")
    return {"encoding": enc.name, "lengths": lengths, "assistant_tokens": assistant,
            "distribution": {"min": min(lengths), "p10": percentile(lengths, 10),
                             "median": percentile(lengths, 50), "p90": percentile(lengths, 90),
                             "max": max(lengths),
                             "mean": round(sum(lengths) / len(lengths), 1)}}


def usage_cost(model: str, which: str, prompt_tokens: float, completion_tokens: float) -> float:
    """USD for tokens of the base or the fine-tuned model, at the dated prices."""
    _, tuned, base, _ = MODELS.get(model, (None, (0, 0), (0, 0), None))
    rates = tuned if which == "tuned" else base
    return (prompt_tokens * rates[0] + completion_tokens * rates[1]) / 1e6


def check_examples(examples: list[dict], train, data_path, model: str, train_size,
                   console) -> dict:
    """OpenAI's own rules, before any file is written: the format (its errors and warnings
    printed), at least MIN_EXAMPLES, each example within the model's training context.
    Returns the token statistics."""
    from . import chat_format
    errors, warnings = chat_format.check_format(examples)
    console.print(f"format errors: {dict(errors) or 'none'} | warnings: "
                  f"{dict(warnings) or 'none'}")
    if errors:
        raise UserError(f"{data_path}: format errors {dict(errors)}; nothing written")
    if len(examples) < chat_format.MIN_EXAMPLES:
        hint = "raise --train-size" if train_size else "add training examples"
        raise UserError(f"{data_path}: {len(examples)} training examples (lines "
                        f"{', '.join(str(ex.line) for ex in train) or 'none'}); OpenAI "
                        f"needs at least {chat_format.MIN_EXAMPLES} ({hint})")
    stats = token_stats(examples, model)
    context = context_of(model)
    over = [ex.line for ex, n in zip(train, stats["lengths"]) if n > context]
    if over:
        raise UserError(f"{data_path}: lines {', '.join(map(str, over))} are longer than "
                        f"{model}'s {context:,}-token training context")
    return stats


def context_of(model: str) -> int:
    return MODELS.get(model, (None, None, None, 65_536))[3]


def print_token_stats(stats: dict, model: str, console) -> None:
    d = stats["distribution"]
    console.print(f"tokens per example: min {d['min']}, p10 {d['p10']}, median {d['median']}, "
                  f"p90 {d['p90']}, max {d['max']}, mean {d['mean']} | assistant tokens: "
                  f"{stats['assistant_tokens']} | over {context_of(model):,}: 0")


def price_job(cfg, stats: dict, epochs: int, n_test: int, n_dev: int) -> dict:
    """What OpenAI would charge: billable training tokens x epochs at the dated price, and
    the chat calls of steps 4 and 5 (the base and each checkpoint on dev, the base and the
    kept model on test)."""
    billable = sum(min(context_of(cfg.model), n) for n in stats["lengths"])
    price = cfg.price_training if cfg.price_training is not None else \
        MODELS.get(cfg.model, (None,))[0]
    if price is None:
        raise UserError(f"no training price for {cfg.model} in the table (checked "
                        f"{PRICES_CHECKED}); give --price-training (USD per 1M tokens)")
    prompt = stats["distribution"]["mean"]
    base = usage_cost(cfg.model, "base", prompt, cfg.max_new_tokens)
    tuned = usage_cost(cfg.model, "tuned", prompt, cfg.max_new_tokens)
    return {"billable_tokens": billable, "trained_tokens": billable * epochs, "price": price,
            "training_cost": billable * epochs * price / 1e6,
            "inference_cost": n_test * (base + tuned) + n_dev * (base + min(3, epochs) * tuned)}
