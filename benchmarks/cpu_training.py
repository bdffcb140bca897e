"""Where a LoRA training step goes on a CPU, and what each change of the recipe's numerics
would buy: the embedded model, the real training examples, batches of 8 padded to their longest.

    python benchmarks/cpu_training.py              # ~3 min on 2 cores
    python benchmarks/cpu_training.py --profile    # + the step's top operations, per variant

Each row changes one thing from the one above it, on the same batches, and times --steps
optimizer steps after one warm-up: LoRA dropout off, logits only where an answer token is
predicted, bf16 autocast, the frozen base stored in bf16 (no fp32 copy cast every step), eager
attention instead of SDPA. The first row is the recipe until 2026-12-01 (dropout 0.05); the
third is the recipe of 2026-12-01: dropout 0 (its random masks cost a fifth of the step, and the
dev-judged quality stayed within the seed spread) and answer-only logits
(training.AnswerLogitsOnly: the same gradients, bit for bit with PyTorch's linear layers); the
fourth is the recipe of 2026-12-02's morning: the system prompt every row begins with through
the model once per batch (shared_prompt.py: the same loss, rounded differently; the committed
results were run again with it); the fifth is the recipe since the same day's afternoon: the
frozen base layers multiply through oneDNN instead of PyTorch's default MKL (onednn.py: the same
products summed in another order; every committed answer the same). The others are not the
scripts' default: bf16 changes the arithmetic more, and would make every committed LoRA and
OpenAI-style result depend on the CPU (benchmarks/README.md, "A CPU training step"). The bf16
rows run only where the CPU has bf16 instructions (elsewhere it is emulated, ~100x slower).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edu_qa  # noqa: E402

# label, LoRA dropout, answer-only logits, the shared prompt once, frozen layers through
# oneDNN, bf16 autocast, base weights in bf16, attention
VARIANTS = [
    ("fp32, LoRA dropout 0.05, SDPA, logits at every position (the recipe until 2026-12-01)",
     0.05, False, False, False, False, False, None),
    ("LoRA dropout 0", 0.0, False, False, False, False, False, None),
    ("LoRA dropout 0, logits only at answer tokens (the recipe 2026-12-01 to 02)",
     0.0, True, False, False, False, False, None),
    ("and the system prompt once per batch (the recipe of 2026-12-02 morning)",
     0.0, True, True, False, False, False, None),
    ("the recipe: and the frozen layers through oneDNN (since 2026-12-02)",
     0.0, True, True, True, False, False, None),
    ("the recipe, eager attention", 0.0, True, True, True, False, False, "eager"),
    ("LoRA dropout 0.05, bf16 autocast", 0.05, False, False, False, True, False, None),
    ("LoRA dropout 0, bf16 autocast", 0.0, False, False, False, True, False, None),
    ("the recipe, bf16 autocast", 0.0, True, True, False, True, False, None),
    ("the recipe, bf16 autocast, bf16 base", 0.0, True, True, False, True, True, None),
    ("the recipe, bf16 autocast, bf16 base, eager attention", 0.0, True, True, False, True,
     True, "eager"),
]


def training_rows(tok, n: int) -> list[dict]:
    """n training examples (seed 0's subset) tokenized as the recipe trains on them: input_ids,
    and labels with the prompt labelled -100 (benchmarks/run.py's plain loop reads them too)."""
    from edu_qa import training
    from edu_qa.recipe import LORA
    train = edu_qa.training_subset(edu_qa.load_qa().split("train"), n, 0)
    ds, _ = training.chat_dataset(
        tok, [edu_qa.chat_messages(ex.question) + [{"role": "assistant", "content": ex.answer}]
              for ex in train], LORA.max_length)
    return list(ds)


def batches(tok, n_batches: int, batch_size: int = 8) -> list[dict]:
    """The first training examples as the script tokenizes them (prompt labelled -100), in
    batches padded to their longest row by the script's own collator: with logits_to_keep,
    shift_labels and the shared prompt's length, which the variants without them leave out."""
    from transformers import DataCollatorForSeq2Seq

    from edu_qa.training import AnswerLogitsOnly
    collate = AnswerLogitsOnly(DataCollatorForSeq2Seq(tok, padding=True,
                                                      label_pad_token_id=-100), share_prompt=True)
    rows = training_rows(tok, n_batches * batch_size)
    return [collate(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


def measure(model_name: str, data: list[dict], dropout: float, answer_logits: bool,
            shared: bool, onednn: bool, autocast: bool, bf16_base: bool, attention: str | None,
            profile: bool) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from edu_qa.recipe import LORA
    from edu_qa.shared_prompt import through_once
    torch.manual_seed(0)
    base, _ = edu_qa.load_local_model(
        model_name, dtype=torch.bfloat16 if bf16_base else torch.float32, onednn=onednn,
        **({"attn_implementation": attention} if attention else {}))
    model = get_peft_model(base, LoraConfig(
        r=LORA.lora_r, lora_alpha=LORA.lora_alpha, lora_dropout=dropout,
        target_modules=LORA.target_modules, task_type="CAUSAL_LM"))
    for p in model.parameters():  # LoRA's own weights stay fp32, as Trainer keeps them
        if p.requires_grad:
            p.data = p.data.float()
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch):
        batch = {k: v for k, v in batch.items() if (answer_logits or k not in (
            "logits_to_keep", "shift_labels")) and (shared or k != "shared_prompt")}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(**through_once(model, batch)).loss
        loss.backward()
        optim.step()
        optim.zero_grad()

    step(data[0])  # warm-up: kernels chosen, memory allocated
    start = time.perf_counter()
    for batch in data[1:]:
        step(batch)
    seconds = time.perf_counter() - start
    tokens = sum(int(batch["attention_mask"].sum()) for batch in data[1:])
    top = None
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as profiler
        with profiler(activities=[ProfilerActivity.CPU]) as prof:
            step(data[1])
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        top = [(e.key, e.count, e.self_cpu_time_total / total) for e in events[:5]]
    return {"tokens_per_s": tokens / seconds, "top": top}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps, after 1 warm-up")
    parser.add_argument("--model", default=edu_qa.EMBEDDED_MODEL,
                        help="a local model folder (the tests use a tiny one)")
    parser.add_argument("--profile", action="store_true",
                        help="also the top 5 operations of one step, by their own CPU time")
    parser.add_argument("--out", help="also save the table to this file")
    args = parser.parse_args(argv)

    import torch

    data = batches(edu_qa.load_tokenizer(args.model), args.steps + 1)
    native_bf16 = edu_qa.cpu_has_native_bf16()
    lines = ["| variant | real tokens/s | vs the first row |"
             + (" top operations |" * args.profile), "|---|---|---|" + ("---|" * args.profile)]
    first = None
    for label, dropout, answer_logits, shared, onednn, autocast, bf16_base, attention \
            in VARIANTS:
        if (autocast or bf16_base) and not native_bf16:
            lines.append(f"| {label} | not run: no bf16 instructions on this CPU | – |"
                         + (" – |" * args.profile))
            continue
        got = measure(args.model, data, dropout, answer_logits, shared, onednn, autocast,
                      bf16_base, attention, args.profile)
        first = first or got["tokens_per_s"]
        row = f"| {label} | {got['tokens_per_s']:.0f} | {got['tokens_per_s'] / first:.2f}x |"
        if args.profile:
            row += " " + "; ".join(f"{name} x{count} {100 * share:.0f}%"
                                   for name, count, share in got["top"]) + " |"
        lines.append(row)
        print(row, flush=True)
    m = edu_qa.machine()
    text = (f"LoRA training steps on {m['cpu']}, {m['cores']} cores, torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d')}: {args.steps} steps of 8 examples "
            f"(`python benchmarks/cpu_training.py{' --profile' if args.profile else ''}`)\n\n"
            + "\n".join(lines) + "\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
