"""How the LoRA / QLoRA recipe uses a GPU: settings chosen from the model's shape and the GPU's
free memory, each with its reason (huggingface_lora.py step 3 prints them).

    choose()        per-device batch, gradient accumulation, gradient checkpointing,
                    torch.compile, attention kernel, padding-free batches, Liger kernels,
                    the per-step NaN check
    memory()        the bytes one training step needs, by the model's shape
    time_step()     seconds of one real training step, for an honest time estimate

On a CPU: the batch you ask for, no accumulation, no compile, gradient checkpointing only
where QLoRA's recipe has always had it, and logits only at the positions that predict an answer
token (training.AnswerLogitsOnly: the same gradients, a shorter step), and the system prompt
every row of a batch begins with computed once for the batch (shared_prompt.py: the same loss
and gradients rounded differently, a 1.15x to 1.3x shorter step; not with QLoRA's gradient
checkpointing, which keeps no keys and values, nor with dropout); its frozen fp32 layers
multiply through oneDNN whatever the plan (onednn.py, set by load_local_model). On CUDA:
- the batch you ask for (--batch-size) is the EFFECTIVE batch: per-device batch times
  accumulation steps, so the optimization is the same whatever the card;
- gradient checkpointing only when the batch does not fit without it (it recomputes the
  forward pass: about a third more compute, for a fraction of the activation memory);
- the largest per-device batch that fits, up to the effective batch; accumulation for the rest;
- torch.compile when the run is long enough to repay compiling (and the base is not 4-bit,
  whose bitsandbytes kernels break the compiled graph);
- FlashAttention-2 where the flash-attn package is installed (it also makes padding-free
  batches possible: DataCollatorWithFlattening packs a batch into one row), else PyTorch's SDPA;
- Liger's Triton kernels where liger-kernel is installed (requirements-gpu.txt): the loss
  computed from the last hidden states in chunks, never the whole logits tensor, and fused
  RMSNorm, SwiGLU and RoPE; they matter most where nothing is compiled (QLoRA, short runs);
- no per-step NaN check of the loss (TrainingArguments' logging_nan_inf_filter): reading each
  step's loss back makes the CPU wait for the GPU instead of queueing the next step's work.
Each of these was measured on its own (benchmarks/README.md, "The recipe on a GPU").
The memory model is deliberately simple (counted tensors per token and layer, plus the logits
the loss needs, with 10% of the free memory kept spare); benchmarks/qlora.py measures what it
gives.
"""

from __future__ import annotations

import importlib.util

HEADROOM = 0.9  # plan to use at most 90% of the free memory: the allocator fragments
COMPILE_MIN_STEPS = 50  # compiling takes tens of seconds; a shorter run does not repay it


def memory(shape: dict, *, batch: int, seq_len: int, quantization: str, precision: str,
           lora_params: int, checkpointing: bool) -> dict:
    """Bytes for one training step of `batch` examples of `seq_len` tokens, by part.

    Activations kept for the backward pass, per token and layer, for a llama-style layer with
    LoRA on every linear: ~16 hidden-sized and ~6 intermediate-sized tensors (norms, q/k/v/o,
    the MLP's gate/up/product, dropout copies). With gradient checkpointing only each layer's
    input is kept, plus one layer's activations while it is recomputed. The loss needs the
    logits over the vocabulary (bf16 out, fp32 for the loss, and their gradient)."""
    act_bytes = 2 if precision == "bf16" else 4
    hidden, layers = shape["hidden"], shape["layers"]
    per_layer = (16 * hidden + 6 * shape.get("intermediate", 4 * hidden)) * act_bytes
    if checkpointing:
        per_token = layers * hidden * act_bytes + per_layer
    else:
        per_token = layers * per_layer
    weight_bytes = {"4bit": 0.55, "none": act_bytes}[quantization]
    parts = {"weights": shape["params"] * weight_bytes,
             "lora_and_adam": lora_params * 16,  # fp32 weight, gradient, two moments
             "activations": batch * seq_len * per_token,
             "logits": batch * seq_len * shape.get("vocab", 32_000) * (act_bytes + 8)}
    parts["total"] = sum(parts.values())
    return parts


def choose(*, device: str, effective_batch: int, seq_len: int, shape: dict | None,
           quantization: str, precision: str, lora_params: int, steps: int,
           free_bytes: int | None) -> dict:
    """The settings for this run, and why. free_bytes: the GPU's free memory
    (torch.cuda.mem_get_info), given so that tests can pretend any card."""
    settings = {"per_device_batch": effective_batch, "accumulation": 1,
                "checkpointing": quantization == "4bit", "compile": False,
                "attention": None, "padding_free": False, "liger": False, "nan_filter": True,
                "answer_logits": True, "shared_prompt": quantization != "4bit", "reasons": []}
    if device != "cuda" or shape is None or not free_bytes:
        settings["reasons"].append(
            "CPU (or unknown memory): the batch as given, no compile, logits only where an "
            "answer token is predicted" + (", the rows' shared system prompt computed once "
                                           "per batch" if settings["shared_prompt"] else ""))
        return settings
    budget = free_bytes * HEADROOM

    def need(batch, checkpointing):
        return memory(shape, batch=batch, seq_len=seq_len, quantization=quantization,
                      precision=precision, lora_params=lora_params,
                      checkpointing=checkpointing)["total"]

    gib = 2 ** 30
    reasons = settings["reasons"]
    if need(effective_batch, False) <= budget:
        per_device, checkpointing = effective_batch, False
        reasons.append(f"batch {effective_batch} fits without gradient checkpointing "
                       f"({need(effective_batch, False) / gib:.1f} of {budget / gib:.1f} GiB "
                       "usable): no recomputation")
    else:
        checkpointing = True
        per_device = max((b for b in range(1, effective_batch + 1) if need(b, True) <= budget),
                         default=1)
        reasons.append(f"batch {effective_batch} needs {need(effective_batch, False) / gib:.1f}"
                       f" GiB without checkpointing, {budget / gib:.1f} usable: gradient "
                       f"checkpointing on; {per_device} per step fits "
                       f"({need(per_device, True) / gib:.1f} GiB)")
    accumulation = -(-effective_batch // per_device)
    per_device = -(-effective_batch // accumulation)  # even steps: 8 = 4 x 2, not 7 + 1
    if accumulation > 1:
        reasons.append(f"{accumulation} accumulation steps of {per_device} keep the effective "
                       f"batch of {effective_batch}")
    compile_ = quantization != "4bit" and steps >= COMPILE_MIN_STEPS
    reasons.append("torch.compile on: the run is long enough to repay compiling" if compile_
                   else "torch.compile off: " + ("4-bit kernels break the compiled graph"
                                                 if quantization == "4bit"
                                                 else f"under {COMPILE_MIN_STEPS} steps"))
    flash = importlib.util.find_spec("flash_attn") is not None and precision == "bf16"
    reasons.append("attention: FlashAttention-2 with padding-free batches" if flash
                   else "attention: PyTorch SDPA (flash-attn is not installed)")
    liger = importlib.util.find_spec("liger_kernel") is not None
    reasons.append("Liger kernels: the loss without a logits tensor, fused RMSNorm, SwiGLU and "
                   "RoPE" if liger else "Liger kernels off: liger-kernel is not installed "
                   "(requirements-gpu.txt)")
    reasons.append("no per-step NaN check of the loss: the CPU queues the next step instead of "
                   "waiting for this one")
    reasons.append("logits at every position, as measured on a GPU (answer-only logits were "
                   "measured on a CPU only" + ("; Liger's loss makes no logits tensor at all)"
                                              if liger else ")"))
    settings.update(per_device_batch=per_device, accumulation=accumulation,
                    checkpointing=checkpointing, compile=compile_,
                    attention="flash_attention_2" if flash else "sdpa", padding_free=flash,
                    liger=liger, nan_filter=False, answer_logits=False, shared_prompt=False)
    return settings


def time_step(model, batch: dict) -> float:
    """Seconds of one forward and backward pass on a real batch (the second of two: the first
    warms up kernels); gradients are cleared afterwards, nothing is learned."""
    import time

    import torch
    model.train()
    seconds = 0.0
    for _ in range(2):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(**batch).loss.backward()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds
