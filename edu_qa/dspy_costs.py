"""What a hosted LM would cost DSPy, before a call is made: the LM calls an optimizer makes,
their tokens (from the real prompts) and a dated price table; and the API key a paid run
needs (never printed).

dspy_example.py's step 3 calls plan_or_require_key; the local engine is dspy_engine.py.
"""

from __future__ import annotations

import os

from .cli import UserError, redact
from .local_model import use_offline_tiktoken


# USD per 1M tokens (input, output), from OpenAI's and Anthropic's published price pages as
# last checked 2025-06; prices change: override with --price-in / --price-out.
PRICES_CHECKED = "2025-06"


PRICES = {
    "openai/gpt-4o-mini": (0.15, 0.60),
    "openai/gpt-4.1-mini": (0.40, 1.60),
    "openai/gpt-4.1-nano": (0.10, 0.40),
    "openai/gpt-4o": (2.50, 10.00),
    "anthropic/claude-3-5-haiku-20241022": (0.80, 4.00),
}


KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY",
                 "gemini": "GEMINI_API_KEY", "groq": "GROQ_API_KEY",
                 "together_ai": "TOGETHERAI_API_KEY", "mistral": "MISTRAL_API_KEY"}


def estimate_cost(lm_name: str, adapter, signature, train, demos: int, calls: int,
                  price_in: float | None, price_out: float | None) -> dict:
    """Tokens from the real prompts (tiktoken, offline encodings) and a dated price table."""
    import tiktoken
    use_offline_tiktoken()
    enc = tiktoken.get_encoding("o200k_base")
    messages = adapter.format(signature, demos=train[:demos],
                              inputs={"question": train[0].question})
    prompt_tokens = sum(len(enc.encode(m["content"])) + 4 for m in messages)
    output_tokens = 40  # an answer of ~30 words plus any field markers
    table_in, table_out = PRICES.get(lm_name, (None, None))
    price_in = price_in if price_in is not None else table_in
    price_out = price_out if price_out is not None else table_out
    tokens_in, tokens_out = calls * prompt_tokens, calls * output_tokens
    usd = None if price_in is None or price_out is None else \
        (tokens_in * price_in + tokens_out * price_out) / 1e6
    return {"prompt_tokens_per_call": prompt_tokens, "input_tokens": tokens_in,
            "output_tokens": tokens_out, "price_in": price_in, "price_out": price_out,
            "usd": usd}


def plan_lines(lm_name: str, optimizer: str, calls: dict, cost: dict) -> list[str]:
    """What a hosted run would call and cost, for the plan printed without --execute."""
    lines = [f"would leave this machine: every prompt (the training, dev and test questions, "
             f"the demos) goes to {lm_name}",
             f"LM calls, at most: {calls['total']} ({calls['optimize']} to optimize with "
             f"{optimizer}, {calls['evaluate']} to evaluate)",
             f"tokens, estimated: {cost['input_tokens']:,} in ({cost['prompt_tokens_per_call']}"
             f" per call) + {cost['output_tokens']:,} out"]
    if cost["usd"] is None:
        lines.append(f"cost: no price for {lm_name} in the table (checked {PRICES_CHECKED}); "
                     "give --price-in and --price-out (USD per 1M tokens)")
    else:
        lines.append(f"cost, estimated: ${cost['usd']:.4f} at ${cost['price_in']}/"
                     f"${cost['price_out']} per 1M tokens in/out (table checked "
                     f"{PRICES_CHECKED}; override with --price-in/--price-out)")
    return lines


def require_key(lm_name: str, console) -> None:
    """A hosted LM needs its key in the environment; only a redacted form is ever shown."""
    variable = KEY_VARIABLES.get(lm_name.split("/", 1)[0])
    if variable and not os.environ.get(variable):
        raise UserError(f"--lm {lm_name} --execute needs an API key: set {variable} "
                        "(nothing was sent)")
    if variable:
        console.print(f"API key: {variable}={redact(os.environ[variable])}")


def plan_calls(optimizer: str, candidates: int, n_train: int, n_dev: int, n_test: int) -> dict:
    """How many LM calls a run makes, at most (a cache hit costs none)."""
    # dev: zero-shot and optimized; test: baseline, zero-shot and optimized
    evaluate = 2 * n_dev + 3 * n_test
    optimize = {"none": 0, "labeled": 0, "bootstrap": n_train,
                "random-search": n_train * candidates + n_dev * (candidates + 3),
                # light: ~6 instruction proposals + bootstrapped sets + ~10 trials on a dev batch
                "mipro": n_train * 6 + 10 * n_dev + 30,
                # light: a budget of full evaluations on train and dev, plus reflection calls
                "gepa": 6 * (n_train + n_dev)}[optimizer]
    return {"optimize": optimize, "evaluate": evaluate, "total": optimize + evaluate}


def plan_or_require_key(cfg, adapter, signature, train, n_dev: int, n_test: int, console,
                        command: str) -> None:
    """A hosted LM: without --execute, the plan (LM calls, tokens, cost) and stop; with it,
    its API key must be set."""
    from .cli import plan_only
    from .model_dates import check_model
    dated = check_model(cfg.lm, cfg.execute, "--lm")  # after its shutdown: --execute refuses
    if not cfg.execute:
        calls = plan_calls(cfg.optimizer, cfg.candidates, len(train), n_dev, n_test)
        cost = estimate_cost(cfg.lm, adapter, signature, train,
                             0 if cfg.optimizer == "none" else cfg.max_demos, calls["total"],
                             cfg.price_in, cfg.price_out)
        plan_only(console, [dated] + plan_lines(cfg.lm, cfg.optimizer, calls, cost), command)
    console.print(dated)
    require_key(cfg.lm, console)
