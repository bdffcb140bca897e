"""QLoRA training speed and memory for a model of a real shape, with random weights: nothing to
download, no tokenizer. On CUDA when a GPU is present, else on the CPU.

    python benchmarks/qlora.py                          # ~1.1B llama (TinyLlama's shape)
    python benchmarks/qlora.py --shape tiny --steps 2   # seconds on a CPU: checks the path
    python benchmarks/qlora.py --quantization none --no-liger   # one change alone

By default the run uses the settings the recipe chooses (training_plan.choose); the options
below change one thing at a time, so that each change is measured on its own
(benchmarks/gpu_check.sh runs the list): --liger, --nan-check, --compile, --lora-dropout,
--base-dtype, and, on rows of varied length as in real fine-tuning data, --packing pad or
flatten with --attention sdpa or flex_attention.

The recipe is huggingface_lora.py's: its LoRA settings (edu_qa/recipe.py, which the script's
defaults read), the base in
4-bit NF4 with double quantization (edu_qa.training.quantization), prepare_model_for_kbit_training
and transformers' Trainer. The weights are random, so the loss means nothing; tokens/s, memory
and MFU are those of the shape. MFU counts 4 FLOPs per weight of every linear layer per token
(forward 2, input gradient 2; gradient checkpointing's recomputed forward is not counted) against
a measured large matmul in the compute dtype. Prints a markdown table; --out also saves it.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edu_qa  # noqa: E402

# dense bf16 matmul FLOP/s by the vendor's datasheet (SXM parts), for MFU against the spec
SPEC_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}

SHAPES = {
    # TinyLlama-1.1B: a real llama shape, small enough for one GPU in minutes
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
               num_attention_heads=32, num_key_value_heads=4, vocab_size=32000),
    # a few MB: the same code path on a CPU, for the tests
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, vocab_size=1000),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b")
    parser.add_argument("--steps", type=int, default=10, help="timed steps, after 2 warm-up")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--quantization", choices=["4bit", "none"], default="4bit")
    parser.add_argument("--run-steps", type=int, default=1000,
                        help="length of the run the recipe chooses its GPU settings for "
                             "(torch.compile pays off only in a long one)")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--liger", action=argparse.BooleanOptionalAction,
                        help="Liger's Triton kernels (fused linear cross-entropy: no logits "
                             "tensor; RMSNorm, SwiGLU, RoPE) through TrainingArguments("
                             "use_liger_kernel); chosen where CUDA and liger-kernel are there")
    parser.add_argument("--lora-dropout", type=float, default=None,
                        help="default: the recipe's; 0 lets PEFT skip the dropout copy of "
                             "every adapted layer's input")
    parser.add_argument("--compile", choices=["chosen", "on", "off"], default="chosen")
    parser.add_argument("--base-dtype", choices=["fp32", "bf16"], default="fp32",
                        help="the frozen base's weights (fp32 as the script loads them, "
                             "computed in bf16 under autocast; or stored in bf16)")
    parser.add_argument("--lengths", choices=["fixed", "varied"], default="fixed",
                        help="varied: row lengths uniform from seq-len/8 to seq-len, as in "
                             "fine-tuning data; tokens/s then counts real tokens, not padding")
    parser.add_argument("--packing", choices=["chosen", "pad", "flatten"], default="chosen",
                        help="pad each batch to its longest row, or flatten it into one row "
                             "(DataCollatorWithFlattening: no padding, sequences kept apart "
                             "by their position ids)")
    parser.add_argument("--attention", help="override the attention kernel: sdpa, "
                                            "flex_attention, eager")
    parser.add_argument("--base-cache", help="keep the random base in this folder and reuse it "
                                             "(building a 1.1B model is the slow part)")
    parser.add_argument("--profile", help="write the CUDA kernels of 3 timed steps, by time, "
                                          "to this file")
    parser.add_argument("--nan-check", action=argparse.BooleanOptionalAction,
                        help="TrainingArguments(logging_nan_inf_filter): Trainer reads every "
                             "step's loss back from the GPU to check it; chosen off on CUDA")
    parser.add_argument("--jsonl", help="append this run's figures to this file as one line")
    args = parser.parse_args(argv)

    import torch
    from transformers import (AutoModelForCausalLM, DataCollatorWithFlattening, LlamaConfig,
                              LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments,
                              default_data_collator)

    from peft import LoraConfig, get_peft_model

    from edu_qa import training, training_plan
    edu_qa.quiet_transformers()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = torch.cuda.is_bf16_supported() if device == "cuda" else edu_qa.cpu_has_native_bf16()
    env = training.Device(device=device, precision="bf16" if bf16 else "fp32",
                          quantization=args.quantization)
    from edu_qa.recipe import LORA as cfg  # the script's LoRA settings
    dropout = cfg.lora_dropout if args.lora_dropout is None else args.lora_dropout
    config = LlamaConfig(**SHAPES[args.shape], max_position_embeddings=max(2048, args.seq_len))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.base_cache or scratch) / f"{args.shape}-{args.seq_len}"
        if not (folder / "config.json").exists():  # random weights, built once per cache
            torch.manual_seed(0)
            with torch.device(device):  # initializing 1.1B weights is minutes on a CPU
                base = LlamaForCausalLM(config)
            base.save_pretrained(folder)
            del base
            if device == "cuda":
                torch.cuda.empty_cache()  # else choose() below sees the freed memory as taken
        with torch.device("meta"):  # the shape's counts, without weights
            skeleton = LlamaForCausalLM(config)
        linear = sum(m.weight.numel() for m in skeleton.modules()
                     if isinstance(m, torch.nn.Linear))
        params = sum(p.numel() for p in skeleton.parameters())
        lora_params = cfg.lora_r * sum(m.in_features + m.out_features
                                       for name, m in skeleton.named_modules()
                                       if isinstance(m, torch.nn.Linear) and "lm_head" not in name)
        # the settings the script would choose on this device (training_plan.choose)
        shape = {"params": params, "hidden": config.hidden_size,
                 "layers": config.num_hidden_layers, "vocab": config.vocab_size,
                 "intermediate": config.intermediate_size}
        chosen = training_plan.choose(
            device=device, effective_batch=args.batch_size, seq_len=args.seq_len, shape=shape,
            quantization=args.quantization, precision=env.precision,
            lora_params=lora_params, steps=args.run_steps,
            free_bytes=torch.cuda.mem_get_info()[0] if device == "cuda" else None)
        # one change at a time, on top of what the recipe chose
        changed = []
        if args.compile != "chosen":
            chosen["compile"] = args.compile == "on"
            changed.append(f"torch.compile {args.compile}")
        if args.packing != "chosen":
            chosen["padding_free"] = args.packing == "flatten"
            changed.append(f"packing {args.packing}")
        if args.attention:
            chosen["attention"] = args.attention
            changed.append(f"attention {args.attention}")
        if args.liger is not None and args.liger != chosen["liger"]:
            chosen["liger"] = args.liger
            changed.append(f"Liger kernels {'on' if args.liger else 'off'}")
        if args.nan_check is not None and args.nan_check != chosen["nan_filter"]:
            chosen["nan_filter"] = args.nan_check
            changed.append(f"NaN check {'on' if args.nan_check else 'off'}")
        if dropout != cfg.lora_dropout:
            changed.append(f"lora_dropout {dropout}")
        if args.base_dtype != "fp32":
            changed.append(f"base weights {args.base_dtype}")
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        attention = {"attn_implementation": chosen["attention"]} if chosen["attention"] else {}
        base_dtype = torch.bfloat16 if args.base_dtype == "bf16" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=base_dtype,
                                                     **training.quantization(env), **attention)
        model = get_peft_model(training.place_for_training(model, env, chosen["checkpointing"]),
                               LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                          lora_dropout=dropout,
                                          target_modules=cfg.target_modules,
                                          task_type="CAUSAL_LM"))
        weights = model.get_base_model().get_memory_footprint()

        n = (args.steps + 5) * args.batch_size
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(0, config.vocab_size, (n, args.seq_len), generator=generator)
        if args.lengths == "varied":
            lengths = torch.randint(args.seq_len // 8, args.seq_len + 1, (n,),
                                    generator=generator).tolist()
        else:
            lengths = [args.seq_len] * n
        data = [{"input_ids": row[:k], "labels": row[:k]}  # no `datasets` needed
                for row, k in zip(ids.tolist(), lengths)]
        if chosen["padding_free"]:
            collator = DataCollatorWithFlattening()
        elif args.lengths == "varied":
            collator = pad_to_longest
        else:
            collator = default_data_collator
        real_tokens = sum(lengths[2 * args.batch_size:(args.steps + 2) * args.batch_size])
        times = []
        profile = {}

        class Clock(TrainerCallback):  # the profile, if asked, covers 3 steps after the timed ones
            def on_step_begin(self, _args, state, *_, **__):
                if args.profile and state.global_step == args.steps + 2:
                    activity = torch.profiler.ProfilerActivity
                    profile["p"] = torch.profiler.profile(activities=[
                        activity.CUDA if device == "cuda" else activity.CPU])
                    profile["p"].start()

            def on_step_end(self, _args, state, *_, **__):
                # wait for the GPU only where the clock is read: a wait every step would
                # stop the CPU queueing the next step's kernels while the GPU works
                if device == "cuda" and state.global_step in (2, args.steps + 2):
                    torch.cuda.synchronize()
                times.append(time.perf_counter())
                if "p" in profile and state.global_step == args.steps + 5:
                    profile["p"].stop()

        trainer = Trainer(
            model=model, train_dataset=data, callbacks=[Clock()], data_collator=collator,
            args=TrainingArguments(
                output_dir=str(Path(scratch) / "out"),
                per_device_train_batch_size=chosen["per_device_batch"],
                gradient_accumulation_steps=chosen["accumulation"],
                activation_checkpointing=chosen["checkpointing"]
                and args.quantization != "4bit",
                activation_checkpointing_kwargs={"use_reentrant": False},
                torch_compile=chosen["compile"], use_liger_kernel=chosen["liger"],
                max_steps=args.steps + 2 + 3 * bool(args.profile),
                learning_rate=cfg.learning_rate, save_strategy="no",
                logging_steps=args.steps + 2, bf16=bf16, use_cpu=device == "cpu",
                report_to="none", disable_tqdm=True,
                logging_nan_inf_filter=chosen["nan_filter"]))
        started = time.perf_counter()
        trainer.train()
        first_steps = times[1] - started  # compiling and kernel warm-up land here

    if "p" in profile:
        Path(args.profile).write_text(profile["p"].key_averages().table(
            sort_by=f"self_{'cuda' if device == 'cuda' else 'cpu'}_time_total", row_limit=40))
    tokens_per_s = real_tokens / (times[args.steps + 1] - times[1])
    peak = training.measure_matmul_flops(device, env.precision)
    mfu = tokens_per_s * 4 * linear / peak
    memory = (torch.cuda.max_memory_allocated() if device == "cuda"
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    where = torch.cuda.get_device_name(0) if device == "cuda" else edu_qa.machine()["cpu"]
    spec = next((flops for card, flops in SPEC_BF16.items() if card in where), None)
    rows = [
        ("model", f"llama '{args.shape}' shape, random weights, {params:,} parameters"),
        ("recipe", f"{'QLoRA 4-bit NF4' if args.quantization == '4bit' else 'LoRA'} base, "
                   f"LoRA r={cfg.lora_r} {cfg.target_modules}, compute {env.precision}, "
                   f"batch {args.batch_size} x {args.seq_len} tokens"
                   + (", row lengths varied" if args.lengths == "varied" else "")),
        ("settings chosen (training_plan.choose)",
         f"per-device batch {chosen['per_device_batch']} x {chosen['accumulation']} "
         f"accumulation, checkpointing {'on' if chosen['checkpointing'] else 'off'}, "
         f"torch.compile {'on' if chosen['compile'] else 'off'}, attention "
         f"{chosen['attention'] or 'default'}, padding-free "
         f"{'on' if chosen['padding_free'] else 'off'}, Liger "
         f"{'on' if chosen['liger'] else 'off'}, NaN check "
         f"{'on' if chosen['nan_filter'] else 'off'}"),
        ("why", "; ".join(chosen["reasons"])),
        ("changed from the chosen settings", ", ".join(changed) or "nothing"),
        ("base weights in memory", f"{weights / 2**20:,.0f} MiB"),
        ("training", f"{tokens_per_s:,.0f} tokens/s (mean of {args.steps} steps after 2 "
                     "warm-up)"),
        ("first 2 steps (compiling, warm-up)", f"{first_steps:.1f} s"),
        (f"peak {'GPU' if device == 'cuda' else 'resident'} memory", f"{memory / 2**20:,.0f} MiB"),
        (f"matmul peak, {env.precision} (measured)", f"{peak / 1e9:,.0f} GFLOP/s"),
        ("MFU (4 x linear weights FLOPs/token)", f"{100 * mfu:.1f}%"),
    ]
    if spec and env.precision == "bf16":
        rows.append(("MFU against the card's spec (dense bf16)",
                     f"{100 * tokens_per_s * 4 * linear / spec:.1f}% of {spec / 1e12:,.0f} "
                     "TFLOP/s"))
    command = " ".join(argv if argv is not None else sys.argv[1:])
    text = (f"QLoRA benchmark on {where}, {time.strftime('%Y-%m-%d')} (`python "
            f"benchmarks/qlora.py {command}`)\n\n"
            "| figure | measured |\n|---|---|\n"
            + "".join(f"| {a} | {b} |\n" for a, b in rows))
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.jsonl:
        with open(args.jsonl, "a") as out:
            out.write(json.dumps({
                "command": command, "device": where, "quantization": args.quantization,
                "changed": changed, "tokens_per_s": round(tokens_per_s),
                "mfu_measured": round(mfu, 4), "matmul_peak_flops": peak,
                "mfu_spec": round(tokens_per_s * 4 * linear / spec, 4) if spec else None,
                "first_steps_s": round(first_steps, 1), "peak_memory_bytes": memory,
                "settings": {k: v for k, v in chosen.items() if k != "reasons"}}) + "\n")


def pad_to_longest(rows: list[dict]) -> dict:
    """A batch of rows of unequal length, padded to its longest (labels -100 on padding, and
    an attention mask): what the script's DataCollatorForSeq2Seq does, without a tokenizer."""
    import torch
    longest = max(len(r["input_ids"]) for r in rows)

    def pad(values, fill):
        return torch.tensor([v + [fill] * (longest - len(v)) for v in values])
    return {"input_ids": pad([r["input_ids"] for r in rows], 0),
            "labels": pad([r["labels"] for r in rows], -100),
            "attention_mask": pad([[1] * len(r["input_ids"]) for r in rows], 0)}

if __name__ == "__main__":
    sys.exit(edu_qa.run(main))
