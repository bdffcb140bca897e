"""QLoRA training speed and memory for a model of a real shape, with random weights: nothing to
download, no tokenizer. On CUDA when a GPU is present, else on the CPU.

    python benchmarks/qlora.py                          # ~1.1B llama (TinyLlama's shape)
    python benchmarks/qlora.py --shape tiny --steps 2   # seconds on a CPU: checks the path

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
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edu_qa  # noqa: E402

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
    args = parser.parse_args(argv)

    import torch
    from transformers import (AutoModelForCausalLM, DataCollatorWithFlattening, LlamaConfig,
                              LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments,
                              default_data_collator)

    from peft import LoraConfig, get_peft_model

    from edu_qa import training, training_plan
    edu_qa.quiet_transformers()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = torch.cuda.is_bf16_supported() if device == "cuda" else training.cpu_has_native_bf16()
    env = training.Device(device=device, precision="bf16" if bf16 else "fp32",
                          quantization=args.quantization)
    from edu_qa.recipe import LORA as cfg  # the script's LoRA settings
    config = LlamaConfig(**SHAPES[args.shape], max_position_embeddings=max(2048, args.seq_len))
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        base = LlamaForCausalLM(config)
        linear = sum(m.weight.numel() for m in base.modules() if isinstance(m, torch.nn.Linear))
        params = sum(p.numel() for p in base.parameters())
        lora_params = cfg.lora_r * sum(m.in_features + m.out_features
                                       for name, m in base.named_modules()
                                       if isinstance(m, torch.nn.Linear) and "lm_head" not in name)
        base.save_pretrained(folder)
        del base
        # the settings the script would choose on this device (training_plan.choose)
        shape = {"params": params, "hidden": config.hidden_size,
                 "layers": config.num_hidden_layers, "vocab": config.vocab_size,
                 "intermediate": config.intermediate_size}
        chosen = training_plan.choose(
            device=device, effective_batch=args.batch_size, seq_len=args.seq_len, shape=shape,
            quantization=args.quantization, precision=env.precision,
            lora_params=lora_params, steps=args.run_steps,
            free_bytes=torch.cuda.mem_get_info()[0] if device == "cuda" else None)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        attention = {"attn_implementation": chosen["attention"]} if chosen["attention"] else {}
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                     **training.quantization(env), **attention)
        model = get_peft_model(training.place_for_training(model, env, chosen["checkpointing"]),
                               LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                          lora_dropout=cfg.lora_dropout,
                                          target_modules=cfg.target_modules,
                                          task_type="CAUSAL_LM"))
        weights = model.get_base_model().get_memory_footprint()

        n = (args.steps + 2) * args.batch_size
        ids = torch.randint(0, config.vocab_size, (n, args.seq_len)).tolist()
        data = [{"input_ids": row, "labels": row} for row in ids]  # no `datasets` needed
        times = []

        class Clock(TrainerCallback):
            def on_step_end(self, *_, **__):
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter())

        trainer = Trainer(
            model=model, train_dataset=data, callbacks=[Clock()],
            data_collator=DataCollatorWithFlattening() if chosen["padding_free"]
            else default_data_collator,
            args=TrainingArguments(
                output_dir=str(Path(folder) / "out"),
                per_device_train_batch_size=chosen["per_device_batch"],
                gradient_accumulation_steps=chosen["accumulation"],
                activation_checkpointing=chosen["checkpointing"]
                and args.quantization != "4bit",
                activation_checkpointing_kwargs={"use_reentrant": False},
                torch_compile=chosen["compile"],
                max_steps=args.steps + 2, learning_rate=cfg.learning_rate, save_strategy="no",
                logging_steps=args.steps + 2, bf16=bf16, use_cpu=device == "cpu",
                report_to="none", disable_tqdm=True))
        trainer.train()

    tokens_per_s = args.steps * args.batch_size * args.seq_len / (times[-1] - times[1])
    peak = training.measure_matmul_flops(device, env.precision)
    mfu = tokens_per_s * 4 * linear / peak
    memory = (torch.cuda.max_memory_allocated() if device == "cuda"
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    where = torch.cuda.get_device_name(0) if device == "cuda" else edu_qa.machine()["cpu"]
    rows = [
        ("model", f"llama '{args.shape}' shape, random weights, {params:,} parameters"),
        ("recipe", f"{'QLoRA 4-bit NF4' if args.quantization == '4bit' else 'LoRA'} base, "
                   f"LoRA r={cfg.lora_r} {cfg.target_modules}, compute {env.precision}, "
                   f"batch {args.batch_size} x {args.seq_len} tokens"),
        ("settings chosen (training_plan.choose)",
         f"per-device batch {chosen['per_device_batch']} x {chosen['accumulation']} "
         f"accumulation, checkpointing {'on' if chosen['checkpointing'] else 'off'}, "
         f"torch.compile {'on' if chosen['compile'] else 'off'}, attention "
         f"{chosen['attention'] or 'default'}, padding-free "
         f"{'on' if chosen['padding_free'] else 'off'}"),
        ("why", "; ".join(chosen["reasons"])),
        ("base weights in memory", f"{weights / 2**20:,.0f} MiB"),
        ("training", f"{tokens_per_s:,.0f} tokens/s (mean of {args.steps} steps after 2 "
                     "warm-up)"),
        (f"peak {'GPU' if device == 'cuda' else 'resident'} memory", f"{memory / 2**20:,.0f} MiB"),
        (f"matmul peak, {env.precision} (measured)", f"{peak / 1e9:,.0f} GFLOP/s"),
        ("MFU (4 x linear weights FLOPs/token)", f"{100 * mfu:.1f}%"),
    ]
    text = (f"QLoRA benchmark on {where}, {time.strftime('%Y-%m-%d')} (`python "
            f"benchmarks/qlora.py {' '.join(argv if argv is not None else sys.argv[1:])}`)\n\n"
            "| figure | measured |\n|---|---|\n"
            + "".join(f"| {a} | {b} |\n" for a, b in rows))
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    sys.exit(edu_qa.run(main))
