"""The machinery around a LoRA training run that a student need not read to learn the method:
device and precision, tokenized chats with the prompt masked, size and time estimates, the
4-bit weight format, and the judge that scores the dev answers after every epoch.

huggingface_lora.py holds the method (LoraConfig, get_peft_model, Trainer) and calls these;
the local fine-tuning service trains through the same recipe.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from . import training_plan
from .cli import UserError, notice, say, visible
from .data import HERE, chat_messages
from .local_model import disk_size, generate, load_local_model, machine, model_source
from .scoring import score


def choose_device(execute: bool, precision: str, quantization: str) -> dict:
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
    elif device == "cpu":
        chosen = cpu_precision()
        precision, why = chosen["precision"], f" ({chosen['why']})"
    else:
        precision = "fp32"
    if quantization == "auto":
        quantization = "4bit" if device == "cuda" else "none"
    note = " (a GPU is present: --execute uses it)" \
        if not execute and torch.cuda.is_available() else ""
    return {"device": device, "precision": precision, "quantization": quantization,
            "note": note, "precision_why": why}


BF16_MUST_WIN = 1.3  # bf16 changes the numerics: only worth it when clearly faster


def cpu_precision() -> dict:
    """{"precision", "why"} for training on this CPU, measured once per machine and torch.

    bf16 halves the bytes moved, but whether it is faster depends on the chip: PyTorch
    emulates it where the CPU has no bf16 instructions (~100x slower than fp32), and even with
    AVX512-BF16 some chips multiply bf16 slower than fp32 (an Intel Xeon with AVX512-BF16 and
    no AMX trained this recipe 0.7x as fast in bf16; the AMD EPYC the benchmark first ran on,
    1.3x: benchmarks/README.md). So a short
    matrix multiply in both decides, and the choice is kept in outputs/cpu_precision.json:
    the same machine always trains the same way, so the same command gives the same numbers."""
    import json
    import platform

    import torch
    cache = HERE / "outputs" / "cpu_precision.json"
    key = f"{machine()['cpu']} | {platform.machine()} | torch {torch.__version__} | " \
          f"{torch.get_num_threads()} threads"
    try:
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return saved
    except (OSError, ValueError):
        pass
    if not cpu_has_native_bf16():
        choice = {"precision": "fp32", "why": "no bf16 instructions on this CPU"}
    else:
        fp32 = max(measure_matmul_flops("cpu", "fp32", 512) for _ in range(3))
        bf16 = max(measure_matmul_flops("cpu", "bf16", 512) for _ in range(3))
        choice = {"precision": "bf16" if bf16 >= BF16_MUST_WIN * fp32 else "fp32",
                  "why": f"measured once on this CPU: bf16 {bf16 / 1e9:.0f}, fp32 "
                         f"{fp32 / 1e9:.0f} GFLOP/s; bf16 only when {BF16_MUST_WIN}x faster"}
    choice["key"] = key
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(choice) + "\n", encoding="utf-8")
        tmp.replace(cache)
    except OSError:
        pass  # a read-only project: measured again next time
    return choice


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


def estimate(env: dict, shape: dict | None, train_ds, lora_r: int, batch_size: int,
             epochs: float) -> dict:
    """Memory for training, from the model's shape, and how many training tokens. Time is not
    guessed: on a GPU one real step is timed once the model is loaded (time_one_step)."""
    tokens_per_epoch = sum(len(x) for x in train_ds["input_ids"])
    lines = [f"training tokens: {tokens_per_epoch} per epoch x {epochs} epochs"]
    if shape is None:
        return {"lines": lines + ["size unknown until the model is downloaded"]}
    bytes_per_weight = {"4bit": 0.55, "none": 2 if env["precision"] == "bf16" else 4}
    weights = shape["params"] * bytes_per_weight[env["quantization"]]
    lora = lora_r * shape["linear_in_out"]
    lora_bytes = lora * 16  # LoRA weights, their gradients and Adam's two moments, all fp32
    seq = max(len(x) for x in train_ds["input_ids"])
    activations = batch_size * seq * shape["hidden"] * shape["layers"] * 34 * 2
    memory = weights + lora_bytes + activations
    lines += [f"memory estimate: {memory / 2**30:.2f} GiB (weights {weights / 2**30:.2f}, "
              f"LoRA+Adam {lora_bytes / 2**30:.3f}, activations {activations / 2**30:.2f})"]
    if env["device"] == "cuda":
        lines.append("time estimate: from one measured step, once the model is loaded")
    return {"lines": lines, "memory_bytes": memory, "lora_params": lora}


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


def plan_training(env: dict, shape: dict | None, train_ds, batch_size: int, epochs: float,
                  lora_params: int = 0) -> dict:
    """On a GPU: batch, accumulation, checkpointing, compile and attention from its free
    memory (training_plan.choose); on a CPU, the settings as given."""
    return training_plan.choose(
        device=env["device"], effective_batch=batch_size,
        seq_len=max(len(x) for x in train_ds["input_ids"]), shape=shape,
        quantization=env["quantization"], precision=env["precision"], lora_params=lora_params,
        steps=math.ceil(len(train_ds) / batch_size * epochs),
        free_bytes=free_gpu_memory(env["device"]))


def free_gpu_memory(device: str) -> int | None:
    if device != "cuda":
        return None
    import torch
    return torch.cuda.mem_get_info()[0]


def time_one_step(env: dict, model, tok, train_ds, batch_size: int, epochs: float) -> str:
    """On a GPU: one real training step timed, then steps x that."""
    from transformers import DataCollatorForSeq2Seq
    plan = env["train"]
    rows = [train_ds[i] for i in range(min(plan["per_device_batch"], len(train_ds)))]
    batch = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)(rows)
    seconds = training_plan.time_step(model, {k: v.to(env["device"]) for k, v in batch.items()})
    steps = math.ceil(len(train_ds) / batch_size * epochs) * plan["accumulation"]
    return (f"time estimate: {steps * seconds / 60:.1f} min of training steps ({steps} x "
            f"{seconds:.3f} s, one step of {len(rows)} examples measured); each epoch's dev "
            "evaluation and checkpoint, and compiling if on, come on top")


def quantization(env: dict) -> dict:
    """from_pretrained arguments for the base weights: none, or 4-bit NF4 (bitsandbytes)."""
    if env["quantization"] != "4bit":
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
        bnb_4bit_compute_dtype=torch.bfloat16 if env["precision"] == "bf16"
        else torch.float16 if env["device"] == "cuda" else torch.float32)}


def place_for_training(model, env: dict):
    """The loaded base on its device; a 4-bit base prepared for training (norms in fp32 and,
    unless the GPU has room without it, gradient checkpointing: QLoRA's memory recipe)."""
    from peft import prepare_model_for_kbit_training
    if env["quantization"] == "4bit":  # already placed by bitsandbytes
        return prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=env.get("train", {}).get("checkpointing", True),
            gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.to(env["device"]) if env["device"] != "cpu" else model


def judge_answers(trainer, tok, dev, max_new_tokens: int, batch_size: int):
    """With dev questions: a DevAnswers judge on the trainer, run once now (the base model,
    epoch 0) and after every epoch's evaluation. Without: None."""
    if dev is None:
        return None
    judge = DevAnswers(tok, dev, max_new_tokens, batch_size)
    trainer.add_callback(judge_callback(judge))
    trainer.evaluate()
    return judge


def judge_callback(judge):
    """The Trainer callback that runs the judge after every evaluation."""
    from transformers import TrainerCallback

    class Judge(TrainerCallback):
        def on_evaluate(self, args, state, control, **kwargs):
            judge.on_evaluate(args, state, control, **kwargs)
    return Judge()


class DevAnswers:
    """Called by Trainer after each evaluation: generate the dev answers with the model as it
    is now, score them (accuracy and F1, the metric of step 5), and hand Trainer the score it
    keeps the best checkpoint by: dev accuracy, ties broken by dev F1."""

    def __init__(self, tok, dev, max_new_tokens: int, batch_size: int):
        self.tok, self.dev, self.rows = tok, dev, []
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        start, was_training = time.perf_counter(), model.training
        # answer as step 5 will: in the weights' precision, outside bf16 training's autocast
        wrapper = model.__dict__.get("forward")  # accelerate's, while training in bf16
        model.eval()
        try:
            if wrapper is not None and "_original_forward" in model.__dict__:
                model.forward = model._original_forward
            answers, _ = generate(model, self.tok, [chat_messages(ex.question) for ex in self.dev],
                                  self.max_new_tokens, self.batch_size)
        finally:
            if wrapper is not None:
                model.forward = wrapper
            model.train(was_training)
        scores = score(self.dev, answers)
        metrics.update(eval_dev_accuracy=scores["accuracy"], eval_dev_f1=scores["f1"],
                       eval_dev_score=scores["accuracy"] + scores["f1"] / 1000)
        train_loss = [r["loss"] for r in state.log_history if "loss" in r]
        self.rows.append({"epoch": round(state.epoch or 0), "step": state.global_step,
                          "train_loss": train_loss[-1] if train_loss else None,
                          "dev_loss": metrics.get("eval_loss"),
                          "dev_accuracy": scores["accuracy"], "dev_f1": scores["f1"],
                          "seconds": round(time.perf_counter() - start, 1)})

    def choose(self, console) -> str:
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
            notice(console, epochs_in_words(self.rows))
            return "base"
        console.print(f"kept: epoch {best['epoch']}, the best dev accuracy "
                      f"({best['dev_accuracy']:.2f}, F1 {best['dev_f1']:.2f}; base "
                      f"{base['dev_accuracy']:.2f}, F1 {base['dev_f1']:.2f})")
        notice(console, epochs_in_words(self.rows))
        return f"epoch {best['epoch']}"


def epochs_in_words(rows: list[dict]) -> str:
    """What the epoch table shows, in a sentence: do the loss and the answers agree?"""
    base, last = rows[0], rows[-1]
    trained = [r["train_loss"] for r in rows if r["train_loss"] is not None]
    text = (f"training loss fell {trained[0]:.2f} -> {trained[-1]:.2f} and dev loss "
            f"{base['dev_loss']:.2f} -> {last['dev_loss']:.2f}, while dev accuracy went "
            f"{base['dev_accuracy']:.2f} -> {last['dev_accuracy']:.2f}") if trained else ""
    gap = (last["dev_loss"] - trained[-1]) if trained else 0
    if gap > 0.2:
        text += (f"; the gap between dev and training loss ({gap:.2f}) is what the model "
                 "memorized rather than learned")
    return text + ". The answers, not the loss, chose what was kept."


def reload_check(model_name: str, env: dict, adapter_dir: Path, rows: list[dict],
                 max_new_tokens: int, console=None) -> dict:
    """Load the saved adapter into a FRESH base model (as a user would: 4-bit again after
    QLoRA) and check that it gives the same answers as the model just trained."""
    import torch
    from peft import PeftModel
    base, tok = load_local_model(model_name, dtype=torch.float32, **quantization(env))
    reloaded = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    check = rows[:3]
    answers, _ = generate(reloaded, tok, [chat_messages(r["question"]) for r in check],
                          max_new_tokens)
    result = {"checked": len(check),
              "identical": sum(a == r["after"] for a, r in zip(answers, check))}
    if console is not None:
        console.print(f"reload check (PeftModel.from_pretrained on a fresh base): "
                      f"{result['identical']}/{result['checked']} answers identical")
    return result


def merge(model_name: str, env: dict, adapter_dir: Path, output_dir: str, console) -> Path:
    """A standalone model with the adapter folded into the weights. A 4-bit base cannot take
    the merge exactly, so the base is reloaded in bf16 first."""
    import torch
    from peft import PeftModel
    dtype = torch.bfloat16 if env["quantization"] == "4bit" else torch.float32
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
    notice(console, f"the model learns only the {len(answer_ids)} answer tokens of each "
           f"example; the {len(first['input_ids']) - len(answer_ids)} prompt tokens are "
           "context it is given, not text it must produce")


def needs_execute(model: str, shape: dict | None, env: dict, free_max_params: int) -> list[str]:
    """Why this run would cost (a download, a large model, 4-bit loading): empty when free."""
    reasons = []
    if shape is None:
        reasons.append(f"{model!r} is not on this machine; --execute downloads it")
    elif shape["params"] > free_max_params:
        reasons.append(f"{shape['params'] / 1e6:,.0f}M parameters is over the "
                       f"{free_max_params / 1e6:.0f}M free limit")
    if env["quantization"] == "4bit":
        reasons.append("4-bit loading (QLoRA, bitsandbytes)")
    return reasons


def quiet_trainer(trainer, show_progress: bool) -> None:
    """The Trainer's raw log dicts (loss, grad_norm, eval_runtime, ...) are not printed: the
    epoch table after training says what they say. A progress bar stays on a terminal."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, *args, **kwargs):
            pass
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if show_progress:
        trainer.add_callback(BarOnly())


def save_adapter(trainer, model, tok, output_dir: str, seconds: float, tokens: int,
                 console) -> Path:
    """The trained adapter (a few MB) saved once, on the main process, with its tokenizer."""
    # bf16 training leaves forward wrapped in autocast: unwrapped, the model answers in its
    # weights' own precision, exactly as a reloaded adapter does
    trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    adapter_dir = Path(output_dir) / "adapter"
    trainer.save_model(str(adapter_dir))  # on the main process only: one adapter
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(adapter_dir))
    console.print(f"trained in {seconds:.1f} s | {tokens / seconds:.0f} tokens/s | adapter: "
                  f"{adapter_dir} ({disk_size(adapter_dir) / 1e6:.1f} MB)")
    return adapter_dir


def answer(model, tok, chats: list[list[dict]], max_new_tokens: int, batch_size: int,
           adapter: bool = True):
    """(answers, tokens generated), greedy, the LoRA adapter on or off (off: the base model,
    since LoRA only adds to frozen weights)."""
    import contextlib
    with contextlib.nullcontext() if adapter else model.disable_adapter():
        return generate(model, tok, chats, max_new_tokens, batch_size)


def results(method: str, cfg, data, train, env: dict, tok, scores, rows, inference: dict,
            trained: dict, *, trainable: int, total: int, reload, merged, prepared: float,
            start: float) -> dict:
    """results/huggingface_lora.json: what step 6 compares, and what the run did."""
    from .local_model import describe_model
    from .results import artifact, new_results
    name = describe_model(cfg.model)
    use_adapter = trained["kept"] != "base"
    return new_results(
        method, cfg, data, model=name, train=train, scores=scores, rows=rows,
        before_source=inference["source"], trainable_params=trainable, total_params=total,
        tuned_model=f"{name} + LoRA r={cfg.lora_r}" if use_adapter
        else f"{name} (base kept: no epoch beat it on dev)",
        versions=env["versions"], artifact=artifact(trained["adapter_dir"]),
        prompt_template=tok.apply_chat_template(chat_messages("{question}"), tokenize=False,
                                                add_generation_prompt=True),
        wall_time_s={"prepare": prepared, "tune": trained["seconds"],
                     "infer_per_question": inference["per_question"],
                     "total": time.perf_counter() - start},
        tokens={"training": trained["tokens"], "inference": inference["tokens"],
                "training_per_s": round(trained["tokens"] / trained["seconds"], 1)},
        extra={"device": env["device"], "precision": env["precision"],
               "quantization": env["quantization"], "train_log": trained["log"],
               "reload_check": reload, "resumed": trained["resumed"],
               "epochs": trained["epochs"], "kept": trained["kept"],
               "merged_model": str(merged) if merged else None})


def before_and_after(model, tok, data, env: dict, model_name: str, max_new_tokens: int,
                     batch_size: int, use_adapter: bool, console, results_dir):
    """Step 5's answers to the test questions: before = the base (adapter off), shared by
    every method as results/baseline.json, except a 4-bit base, which is another model and
    answers for itself; after = the adapter on (or the base again, if step 4 kept it).
    Returns (before, after, where before came from, tokens generated)."""
    from .results import plain_prompt_baseline
    test = data.split("test")
    model.eval()
    generated = []

    def ask(chats, adapter: bool):
        answers, tokens = answer(model, tok, chats, max_new_tokens, batch_size, adapter)
        generated.append(tokens)
        return answers
    chats = [chat_messages(ex.question) for ex in test]
    if env["quantization"] == "4bit":
        before = ask(chats, adapter=False)
        source = {"kind": "the 4-bit base model, plain prompt", "this_run": True}
    else:
        before, source = plain_prompt_baseline(model_name, data, max_new_tokens,
                                               lambda c: ask(c, adapter=False), console,
                                               results_dir)
    after = ask(chats, adapter=True) if use_adapter else before
    return before, after, source, sum(generated)


def checkpoint_to_resume(resume: bool, output_dir: str, console) -> bool | None:
    """--resume: True when output_dir has a checkpoint to go on from (Trainer finds the
    last); None to start fresh."""
    if not resume:
        return None
    if any(Path(output_dir).glob("checkpoint-*")):
        return True
    console.print(f"--resume: no checkpoint in {output_dir}, starting fresh")
    return None
