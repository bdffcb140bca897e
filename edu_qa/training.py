"""The machinery around a LoRA training run that a student need not read to learn the method:
device and precision, size and time estimates, the 4-bit weight format, and tokenized
multi-turn chats (the local service's files). The dev judge is dev_judge.py.

huggingface_lora.py makes the method's library calls itself (LoraConfig, get_peft_model,
TrainingArguments, Trainer, generate, save_pretrained, PeftModel.from_pretrained) and calls
these for the rest; the local fine-tuning service (edu_qa/service) trains with the same
settings, edu_qa/recipe.py.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import notices, training_plan
from .cli import UserError, notice, say, visible
from .local_model import load_local_model, model_source
from .machine_facts import disk_size


@dataclass(frozen=True)
class Device:
    """Where training and answering run, decided once in step 1: device (cpu, cuda, mps),
    precision (fp32, bf16), quantization (none, 4bit), and why, in words."""
    device: str
    precision: str
    quantization: str
    note: str = ""
    precision_why: str = ""


def choose_device(execute: bool, precision: str, quantization: str) -> Device:
    """Device, precision and weight format, decided once: a GPU only with --execute."""
    import torch
    device, why = "cpu", ""
    if execute and torch.cuda.is_available():
        device = "cuda"
    elif execute and torch.backends.mps.is_available():
        device = "mps"
    if precision != "auto":
        pass
    elif device == "cuda":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    else:
        precision = "fp32"
        if device == "cpu":
            why = f" ({CPU_FP32_WHY})"
    if quantization == "auto":
        quantization = "4bit" if device == "cuda" else "none"
    note = " (a GPU is present: --execute uses it)" \
        if not execute and torch.cuda.is_available() else ""
    return Device(device, precision, quantization, note, why)


# Why `--precision auto` is fp32 on every CPU, even one that multiplies bf16 natively: bf16
# changes the numbers, so a bf16 run would not give the README's results (an Intel Xeon with
# AMX, 2026-12-01: 92 of 152 LoRA answers the same in bf16, 152 of 152 in fp32), and over a
# whole default run it was not faster. Its matmul was 3.6x fp32's (959 against 266 GFLOP/s),
# but a training epoch only 1.15x (157 against 136 tokens/s) and the dev answers generated
# under bf16 autocast slower, so the run's training took 110.8 s against 83.8 s in fp32.
# On a CPU without bf16 instructions it is emulated and ~100x slower. benchmarks/README.md,
# Precision, has the figures; --precision bf16 tries it.
CPU_FP32_WHY = "on a CPU: the README's results are fp32, and bf16 was not faster over a run"


def chat_dataset(tok, chats: list[list[dict]], max_length: int):
    """(the tokenized chats, cut at max_length; the positions of those that were cut)."""
    from datasets import Dataset
    whole = [tokenize_chat(tok, chat, max_length=None) for chat in chats]
    cut = [i for i, row in enumerate(whole) if len(row["input_ids"]) > max_length]
    return Dataset.from_list([{k: v[:max_length] for k, v in row.items()}
                              for row in whole]), cut


class AnswerLogitsOnly:
    """A padding collator's batches, with the model asked for logits only where the loss reads
    them: at the positions that predict an answer token.

    The loss ignores the prompt (labels -100), yet a causal LM computes logits at every
    position: a hidden x vocabulary projection (576 x 49,152 for SmolLM2) and a log-softmax
    over the vocabulary per token, thrown away on the prompt and the padding, about two thirds
    of the positions here. transformers' models take a boolean `logits_to_keep` (batch x
    length) and return the logits of the kept positions only, flattened in order; Trainer and
    the loss read their targets from `shift_labels`. The gradients are those of the full
    logits, bit for bit with PyTorch's linear layers and to rounding through oneDNN
    (tests/test_lora.py), and a CPU step is ~13% shorter
    (benchmarks/cpu_training.py).

    share_prompt: also mark how many first tokens every row shares (the system prompt), for
    shared_prompt.SharedPromptTrainer to compute once per batch."""

    def __init__(self, pad, share_prompt: bool = False):
        self.pad = pad  # DataCollatorForSeq2Seq: each batch padded to its longest row
        self.share_prompt = share_prompt

    def __call__(self, rows: list[dict]) -> dict:
        import torch
        batch = self.pad(rows)
        # the logits at position i predict the token at i + 1
        targets = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=-100)
        batch["logits_to_keep"] = targets != -100
        batch["shift_labels"] = targets[batch["logits_to_keep"]]
        if self.share_prompt:
            from .shared_prompt import shared_length
            batch["shared_prompt"] = shared_length(batch)
        return batch


def tokenize_chat(tok, messages: list[dict], max_length: int | None) -> dict:
    """input_ids of the whole chat in the model's template, cut at max_length; labels copy
    them on the assistant replies (weight 0 leaves a reply out, as in OpenAI's format) and
    are -100 everywhere else."""
    full_ids = tok(tok.apply_chat_template(messages, tokenize=False),
                   add_special_tokens=False)["input_ids"]
    labels = [-100] * len(full_ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("weight", 1) == 0:
            continue
        prompt_ids = tok(tok.apply_chat_template(messages[:i], tokenize=False,
                                                 add_generation_prompt=True),
                         add_special_tokens=False)["input_ids"]
        upto_ids = tok(tok.apply_chat_template(messages[:i + 1], tokenize=False),
                       add_special_tokens=False)["input_ids"]
        if full_ids[:len(prompt_ids)] != prompt_ids or full_ids[:len(upto_ids)] != upto_ids:
            raise UserError("the chat template does not render the prompt as a prefix of "
                            "prompt+answer; label masking would be wrong for this --model")
        labels[len(prompt_ids):len(upto_ids)] = upto_ids[len(prompt_ids):]
    return {"input_ids": full_ids[:max_length],
            "attention_mask": [1] * len(full_ids[:max_length]), "labels": labels[:max_length]}


def model_shape(name: str) -> dict | None:
    """Parameter and LoRA-target counts from the model's config on an empty (meta) device,
    without loading weights or touching the network. None if the config is not local."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    try:
        config = AutoConfig.from_pretrained(model_source(name), local_files_only=True)
    except (OSError, ValueError):
        return None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linears = [m for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and "lm_head" not in n]
    return {"params": sum(p.numel() for p in model.parameters()),
            "linear_in_out": sum(m.in_features + m.out_features for m in linears),
            "hidden": config.hidden_size, "layers": config.num_hidden_layers,
            "intermediate": getattr(config, "intermediate_size", 4 * config.hidden_size),
            "vocab": config.vocab_size}


def estimate(device: Device, shape: dict | None, train_ds, lora_r: int, batch_size: int,
             epochs: float) -> dict:
    """Memory for training, from the model's shape, and how many training tokens. Time is not
    guessed: on a GPU one real step is timed once the model is loaded (time_one_step)."""
    tokens_per_epoch = sum(len(x) for x in train_ds["input_ids"])
    lines = [f"training tokens: {tokens_per_epoch} per epoch x {epochs} epochs"]
    if shape is None:
        return {"lines": lines + ["size unknown until the model is downloaded"]}
    bytes_per_weight = {"4bit": 0.55, "none": 2 if device.precision == "bf16" else 4}
    weights = shape["params"] * bytes_per_weight[device.quantization]
    lora = lora_r * shape["linear_in_out"]
    lora_bytes = lora * 16  # LoRA weights, their gradients and Adam's two moments, all fp32
    seq = max(len(x) for x in train_ds["input_ids"])
    activations = batch_size * seq * shape["hidden"] * shape["layers"] * 34 * 2
    memory = weights + lora_bytes + activations
    lines += [f"memory estimate: {memory / 2**30:.2f} GiB (weights {weights / 2**30:.2f}, "
              f"LoRA+Adam {lora_bytes / 2**30:.3f}, activations {activations / 2**30:.2f})"]
    if device.device == "cuda":
        lines.append("time estimate: from one measured step, once the model is loaded")
    return {"lines": lines, "memory_bytes": memory, "lora_params": lora}


def measure_matmul_flops(device: str, precision: str, n: int | None = None,
                         reps: int = 5, onednn: bool = False) -> float | None:
    """FLOP/s of a large n x n matrix multiply on this device (~0.3 s at the default n).
    onednn: fp32 on a CPU through oneDNN with the weight packed, as the scripts' linear layers
    multiply (edu_qa/onednn.py); None where this PyTorch has no oneDNN."""
    import torch
    if device == "mps":
        return None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n = n or (1024 if device == "cpu" else 8192)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    multiply = lambda: a @ b  # noqa: E731
    if onednn:
        from . import onednn as library
        if not library.available():
            return None
        packed = torch.ops.mkldnn._reorder_linear_weight(b, None)
        multiply = lambda: library._pointwise(a, packed, None)  # noqa: E731
    multiply()
    if device == "cuda":
        torch.cuda.synchronize()  # the warm-up product must not run into the timed ones
    start = time.perf_counter()
    for _ in range(reps):
        multiply()
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def plan_training(device: Device, shape: dict | None, train_ds, batch_size: int, epochs: float,
                  lora_params: int = 0) -> dict:
    """On a GPU: batch, accumulation, checkpointing, compile and attention from its free
    memory (training_plan.choose); on a CPU, the settings as given."""
    return training_plan.choose(
        device=device.device, effective_batch=batch_size,
        seq_len=max(len(x) for x in train_ds["input_ids"]), shape=shape,
        quantization=device.quantization, precision=device.precision, lora_params=lora_params,
        steps=math.ceil(len(train_ds) / batch_size * epochs),
        free_bytes=free_gpu_memory(device.device))


def free_gpu_memory(device: str) -> int | None:
    if device != "cuda":
        return None
    import torch
    return torch.cuda.mem_get_info()[0]


def time_one_step(device: Device, plan: dict, model, tok, train_ds, batch_size: int,
                  epochs: float) -> str:
    """On a GPU: one real training step timed, then steps x that."""
    from transformers import DataCollatorForSeq2Seq
    rows = [train_ds[i] for i in range(min(plan["per_device_batch"], len(train_ds)))]
    batch = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)(rows)
    seconds = training_plan.time_step(model, {k: v.to(device.device) for k, v in batch.items()})
    steps = math.ceil(len(train_ds) / batch_size * epochs) * plan["accumulation"]
    return (f"time estimate: {steps * seconds / 60:.1f} min of training steps ({steps} x "
            f"{seconds:.3f} s, one step of {len(rows)} examples measured); each epoch's dev "
            "evaluation and checkpoint, and compiling if on, come on top")


def quantization(device: Device) -> dict:
    """from_pretrained arguments for the base weights: none, or 4-bit NF4 (bitsandbytes)."""
    if device.quantization != "4bit":
        return {}
    import torch
    from transformers import BitsAndBytesConfig
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError("4-bit QLoRA needs bitsandbytes: pip install bitsandbytes==0.50.2 "
                        "(or --quantization none)") from None
    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",             # NF4 suits normally distributed weights
        bnb_4bit_use_double_quant=True,        # also quantize the scales: ~0.4 bit/param
        # the dtype the 4-bit weights are unpacked to for each matmul: bf16 where native,
        # fp16 on older GPUs, fp32 on a CPU without bf16 (fp16 is emulated there too)
        bnb_4bit_compute_dtype=torch.bfloat16 if device.precision == "bf16"
        else torch.float16 if device.device == "cuda" else torch.float32)}


def place_for_training(model, device: Device, checkpointing: bool = True):
    """The loaded base on its device; a 4-bit base prepared for training (norms in fp32 and,
    unless the GPU has room without it, gradient checkpointing: QLoRA's memory recipe)."""
    from peft import prepare_model_for_kbit_training
    if device.quantization == "4bit":  # already placed by bitsandbytes
        return prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.to(device.device) if device.device != "cpu" else model


def merge(model_name: str, device: Device, adapter_dir: Path, output_dir: str, console) -> Path:
    """A standalone model with the adapter folded into the weights. A 4-bit base cannot take
    the merge exactly, so the base is reloaded in bf16 first."""
    import torch
    from peft import PeftModel
    dtype = torch.bfloat16 if device.quantization == "4bit" else torch.float32
    out = Path(output_dir) / "merged"
    base, tok = load_local_model(model_name, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    console.print(f"merged model: {out} ({disk_size(out) / 1e6:.0f} MB, {dtype})")
    return out


def show_example(console, tok, train_ds, cut_lines: list[int], max_length: int,
                 data_path) -> None:
    """Step 2: one tokenized training example as the model sees it, the tokens that carry
    loss, and which examples --max-length cuts."""
    first = train_ds[0]
    say(console, "One training example, exactly as the model sees it:")
    console.print(visible(tok.decode(first["input_ids"])), soft_wrap=True)
    answer_ids = [t for t, label in zip(first["input_ids"], first["labels"]) if label != -100]
    say(console, "Tokens that carry loss", f" ({len(answer_ids)} of {len(first['input_ids'])}; "
        "the rest are labelled -100, which the loss ignores):")
    console.print(repr(tok.decode(answer_ids)), soft_wrap=True)
    if cut_lines:
        console.print(f"{len(cut_lines)} examples are longer than --max-length {max_length} "
                      f"tokens and are cut there (lines {', '.join(map(str, cut_lines[:20]))}"
                      f"{', ...' if len(cut_lines) > 20 else ''} of {data_path})")
    notice(console, notices.loss_tokens(len(answer_ids), len(first["input_ids"]), max_length))


def needs_execute(model: str, shape: dict | None, device: Device,
                  free_max_params: int) -> list[str]:
    """Why this run would cost (a download, a large model, 4-bit loading): empty when free."""
    reasons = []
    if shape is None:
        reasons.append(f"{model!r} is not on this machine; --execute downloads it")
    elif shape["params"] > free_max_params:
        reasons.append(f"{shape['params'] / 1e6:,.0f}M parameters is over the "
                       f"{free_max_params / 1e6:.0f}M free limit")
    if device.quantization == "4bit":
        reasons.append("4-bit loading (QLoRA, bitsandbytes)")
    return reasons


def quiet_trainer(trainer, show_progress: bool) -> None:
    """The Trainer's raw log dicts (loss, grad_norm, eval_runtime, ...) are not printed: the
    epoch table after training says what they say. A progress bar stays on a terminal, not in
    a log or a notebook (edu_qa.console() sets TQDM_DISABLE there: a rendered notebook would
    keep an empty progress widget)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, *args, **kwargs):
            pass
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if show_progress and os.environ.get("TQDM_DISABLE", "0").lower() not in ("1", "true"):
        trainer.add_callback(BarOnly())


def is_main_process() -> bool:
    """False in all but one of the processes `accelerate launch` starts."""
    from accelerate import PartialState
    return PartialState().is_main_process


def checkpoint_to_resume(resume: bool, output_dir: str, console) -> bool | None:
    """--resume: True when output_dir has a checkpoint to go on from (Trainer finds the
    last); None to start fresh."""
    if not resume:
        return None
    if any(Path(output_dir).glob("checkpoint-*")):
        return True
    console.print(f"--resume: no checkpoint in {output_dir}, starting fresh")
    return None
