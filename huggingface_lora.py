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

As a notebook (jupytext --to notebook huggingface_lora.py): one cell per step, NOTEBOOK_ARGS
holds the settings.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import edu_qa
from edu_qa import training

METHOD = "huggingface_lora"
FREE_MAX_PARAMS = 500_000_000  # above this, training needs --execute even on the CPU
NOTEBOOK_ARGS: list[str] = []  # in a notebook, the settings: e.g. ["--train-size", "20"]


@dataclass(frozen=True)
class Config(edu_qa.SharedConfig):  # data, model, seed, train size...: edu_qa/settings.py
    output_dir: str = field(default="outputs/huggingface_lora", metadata={
        "help": "checkpoints and the trained adapter go here"})
    execute: bool = field(default=False, metadata={
        "help": "allow what costs: a GPU, 4-bit loading, a model over 500M parameters"})
    # LoRA: which small matrices are added, and how big
    lora_r: int = field(default=16, metadata={
        "help": "rank of each LoRA update; small ranks suffice for a narrow task like ours"})
    lora_alpha: int = field(default=32, metadata={"help": "update scaled by alpha/r; 2*r is usual"})
    lora_dropout: float = field(default=0.05, metadata={"help": "regularizes a small dataset"})
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
    max_length: int = field(default=160, metadata={"help": "tokens per example; longer are cut"})
    precision: str = field(default="auto", metadata={
        "choices": ["auto", "fp32", "bf16"],
        "help": "auto = bf16 where the hardware multiplies bf16 natively, else fp32"})
    quantization: str = field(default="auto", metadata={
        "choices": ["auto", "4bit", "none"],
        "help": "auto = QLoRA (4-bit NF4) on CUDA, full weights elsewhere; 4bit also runs on "
                "a CPU (bitsandbytes), in less memory but slower"})
    resume: bool = field(default=False, metadata={"help": "go on from the last checkpoint"})
    merge: bool = field(default=False, metadata={"help": "also save the adapter merged in"})
    eval_batch_size: int = field(default=160, metadata={
        "help": "questions answered at once: a whole split in one batch is fastest on a CPU"})
    verify_reload: bool = field(default=True, metadata={"help": "reload the adapter, compare"})
    judge_on_dev: bool = field(default=True, metadata={
        "help": "after every epoch (and before training) score the dev ANSWERS and keep the "
                "best of base and tuned; off: keep the last epoch, whatever it does"})


# %% Step 1. Environment & data preparation
def prepare_data(cfg: Config, console):
    """Decide device and precision once, load and split the shared dataset."""
    data = edu_qa.load_qa(cfg.data, seed=cfg.seed)  # first: a bad file stops before torch loads
    import torch
    env = training.choose_device(cfg.execute, cfg.precision, cfg.quantization)
    console.print(f"device: {env['device']}{env['note']} | precision: {env['precision']}"
                  f"{env['precision_why']} | "
                  f"quantization: {env['quantization']} | threads: {torch.get_num_threads()}")
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
    cut = [train[i].line for i in train_cut] + [dev[i].line for i in dev_cut]
    training.show_example(console, tok, train_ds, cut, cfg.max_length, cfg.data)
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
    console.print(f"model: {edu_qa.describe_model(cfg.model)} | LoRA: r={cfg.lora_r} (rank of "
                  f"each update), alpha={cfg.lora_alpha} (its scale, alpha/r), dropout="
                  f"{cfg.lora_dropout}, targets={cfg.target_modules} (which layers get one)")
    for line in plan["lines"]:
        console.print(line)
    env["train"] = training.plan_training(env, shape, train_ds, cfg.batch_size, cfg.epochs,
                                          plan.get("lora_params", 0))
    for reason in env["train"]["reasons"] if env["device"] == "cuda" else []:
        console.print(f"GPU setting: {reason}")
    return lora_config, shape, training.needs_execute(cfg.model, shape, env, FREE_MAX_PARAMS)


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
    from transformers import set_seed
    attention = env.get("train", {}).get("attention")
    model, tok = edu_qa.load_local_model(cfg.model, dtype=torch.float32,
                                         **training.quantization(env),
                                         **({"attn_implementation": attention} if attention
                                            else {}))
    # get_peft_model draws LoRA's A matrices at random (B starts at 0), before Trainer would
    # seed anything: seed first, or two runs of the same command train different adapters
    set_seed(cfg.seed)
    model = get_peft_model(training.place_for_training(model, env), lora_config)
    trainable, total = model.get_nb_trainable_parameters()
    console.print(f"trainable parameters: {trainable:,} of {total:,} ({trainable / total:.2%})"
                  ": the LoRA matrices; the rest stay frozen")
    return model, tok, trainable, total


if __name__ == "__main__":
    edu_qa.step(console, 3, "Model configuration")
    lora_config, shape, reasons = configure_model(cfg, env, train_ds, console)
    if reasons and not cfg.execute:  # nothing leaves this machine, except a model download
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
    training.quiet_trainer(trainer, show_progress)
    # the dev answers judged after each epoch, and before it (epoch 0: LoRA's B starts at 0)
    judge = training.judge_answers(trainer, tok, dev, cfg.max_new_tokens, cfg.eval_batch_size)
    resume = training.checkpoint_to_resume(cfg.resume, cfg.output_dir, console)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    tokens = int(sum(len(x) for x in train_ds["input_ids"]) * cfg.epochs)
    adapter_dir = training.save_adapter(trainer, model, tok, cfg.output_dir, seconds, tokens,
                                        console)
    kept = judge.choose(console) if judge else None  # prints the epoch table and a notice
    return trainer, {"seconds": seconds, "tokens": tokens, "adapter_dir": adapter_dir,
                     "log": [r for r in trainer.state.log_history
                             if "loss" in r or "eval_loss" in r],
                     "resumed": bool(resume), "kept": kept, "epochs": judge.rows if judge else None}


if __name__ == "__main__":
    edu_qa.step(console, 4, "Fine-tuning / optimization")
    trainer, trained = tune(cfg, env, model, tok, train_ds, dev_ds, console,
                            dev=dev if cfg.judge_on_dev else None)
    if not trainer.is_world_process_zero():
        raise edu_qa.Stop(0)  # under accelerate launch, one process evaluates and reports


# %% Step 5. Inference and demonstration
def infer(cfg: Config, env: dict, model, tok, data, console, use_adapter: bool = True):
    """The plain-prompt baseline (the adapter off) and the tuned model answer the same test
    questions, greedy, graded by the same metric. If step 4 kept the base, "after" is the
    base's answers."""
    test = data.split("test")
    start = time.perf_counter()
    before, after, source, tokens = training.before_and_after(
        model, tok, data, env, cfg.model, cfg.max_new_tokens, cfg.eval_batch_size, use_adapter,
        console, cfg.results_dir)
    seconds = time.perf_counter() - start
    scores, rows, change = edu_qa.report_test_answers(
        console, test, before, after, title="plain prompt vs LoRA-tuned")
    return scores, rows, {"seconds": seconds, "tokens": tokens, "source": source,
                          "change": change, "per_question": seconds / (2 * len(test))}


if __name__ == "__main__":
    edu_qa.step(console, 5, "Inference and demonstration")
    use_adapter = trained["kept"] != "base"
    scores, rows, inference = infer(cfg, env, model, tok, data, console, use_adapter)
    reload = training.reload_check(cfg.model, env, trained["adapter_dir"], rows,
                                   cfg.max_new_tokens, console) \
        if cfg.verify_reload and use_adapter else None  # as a user would: fresh base + adapter
    # deployment without peft: the adapter folded into a copy of the weights
    merged = training.merge(cfg.model, env, trained["adapter_dir"], cfg.output_dir, console) \
        if cfg.merge else None


# %% Step 6. Comparison
def compare(cfg: Config, data, results: dict, console) -> None:  # results, scoreboard
    edu_qa.save_and_compare(console, data, results, cfg.results_dir, cfg.question)


if __name__ == "__main__":
    edu_qa.step(console, 6, "Comparison")
    results = training.results(METHOD, cfg, data, train, env, tok, scores, rows, inference,
                               trained, trainable=trainable, total=total, reload=reload,
                               merged=merged, prepared=prepared, start=start)
    compare(cfg, data, results, console)
