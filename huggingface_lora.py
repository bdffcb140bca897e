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

As a notebook (jupytext --to notebook huggingface_lora.py): a cell per step; NOTEBOOK_ARGS.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import edu_qa
from edu_qa import dev_judge, notices, training
from edu_qa.recipe import LORA

METHOD = "huggingface_lora"
FREE_MAX_PARAMS = 500_000_000  # above this, training needs --execute even on the CPU
NOTEBOOK_ARGS: list[str] = []  # in a notebook, the settings: e.g. ["--train-size", "20"]


@dataclass(frozen=True)
class Config(edu_qa.SharedConfig):  # data, model, seed, train size...: edu_qa/settings.py
    output_dir: str = field(default="outputs/huggingface_lora", metadata={
        "help": "checkpoints and the trained adapter go here"})
    execute: bool = field(default=False, metadata={
        "help": "allow what costs: a GPU, 4-bit loading, a model over 500M parameters"})
    # LoRA: which small matrices are added, and how big (defaults: edu_qa/recipe.py, which the
    # local fine-tuning service trains with too)
    lora_r: int = field(default=LORA.lora_r, metadata={
        "help": "rank of each LoRA update; small ranks suffice for a narrow task like ours"})
    lora_alpha: int = field(default=LORA.lora_alpha, metadata={
        "help": "update scaled by alpha/r; 2*r is usual"})
    lora_dropout: float = field(default=LORA.lora_dropout, metadata={
        "help": "0.05-0.1 regularize a small dataset; 0 was as good on dev here, and faster"})
    target_modules: str = field(default=LORA.target_modules, metadata={
        "help": "where to add LoRA: 'all-linear' (attention + MLP) adapts more than q,v alone"})
    # training
    epochs: float = field(default=LORA.epochs, metadata={
        "help": "passes over the training set; chosen on the dev loss (one under-fits, more "
                "cost time without lowering it)"})
    learning_rate: float = field(default=LORA.learning_rate, metadata={
        "help": "LoRA tolerates ~10x the full fine-tuning rate; chosen on the dev loss"})
    batch_size: int = field(default=LORA.batch_size, metadata={
        "help": "examples per optimizer step (the effective batch); a GPU too small for it "
                "accumulates smaller steps"})
    max_length: int = field(default=LORA.max_length, metadata={
        "help": "tokens per example; longer are cut"})
    precision: str = field(default="auto", metadata={
        "choices": ["auto", "fp32", "bf16"],
        "help": "auto = bf16 on a GPU that has it; fp32 on a CPU, where bf16 was not faster"})
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
def prepare_data(cfg: Config, console) -> edu_qa.Prepared:
    """Decide device and precision once, load and split the shared dataset."""
    data = edu_qa.load_qa(cfg.data, seed=cfg.seed)  # first: a bad file stops before torch loads
    import torch
    device = training.choose_device(cfg.execute, cfg.precision, cfg.quantization)
    console.print(f"device: {device.device}{device.note} | precision: {device.precision}"
                  f"{device.precision_why} | quantization: {device.quantization} | threads: "
                  f"{torch.get_num_threads()}")
    train = edu_qa.training_subset(data.split("train"), cfg.train_size, cfg.seed)
    edu_qa.print_data_summary(console, data, train)
    return edu_qa.Prepared(data, train, data.split("dev"), data.split("test"), device)


if __name__ == "__main__":
    cfg, console = edu_qa.begin(Config, __doc__, NOTEBOOK_ARGS)
    edu_qa.on_interrupt(lambda: f"Interrupted. Each finished epoch's checkpoint is in "
                        f"{cfg.output_dir}: add --resume to go on from the last one.")
    edu_qa.quiet_transformers()
    edu_qa.step(console, 1, "Environment & data preparation")
    prepared = prepare_data(cfg, console)
    data, train, dev, test, device = (prepared.data, prepared.train, prepared.dev,
                                      prepared.test, prepared.where)
    run = edu_qa.Run.start(METHOD, cfg, data, train, edu_qa.describe_model(cfg.model))
    run.set(versions=edu_qa.library_versions("torch", "transformers", "peft", "accelerate",
                                             "datasets"))
    run.extra(device=device.device, precision=device.precision, quantization=device.quantization)
    edu_qa.print_versions(console, run.results["versions"])
    edu_qa.notice(console, notices.splits(run.results))


# %% Step 2. Data format preparation
@dataclass(frozen=True)
class Formatted:
    train: object  # datasets.Dataset of input_ids, attention_mask, labels
    dev: object


def convert_format(cfg: Config, tok, train, dev, console) -> Formatted:
    """QA pairs -> chat messages -> the model's chat template -> token ids and labels."""
    from datasets import Dataset
    rows = [tokenize(tok, ex, cfg.max_length) for ex in train]
    dev_rows = [tokenize(tok, ex, cfg.max_length) for ex in dev]
    cut = [ex.line for ex, row in zip(list(train) + list(dev), rows + dev_rows) if row.pop("cut")]
    train_ds, dev_ds = Dataset.from_list(rows), Dataset.from_list(dev_rows)
    training.show_example(console, tok, train_ds, cut, cfg.max_length, cfg.data)
    return Formatted(train_ds, dev_ds)


def tokenize(tok, ex, max_length: int) -> dict:
    """One QA pair as the model sees it: the shared system prompt and the question, then the
    reference answer, in the model's chat template. labels copy input_ids on the answer and are
    -100 on the prompt: the loss ignores -100, so only the answer is learned."""
    prompt = edu_qa.chat_messages(ex.question)
    prompt_ids = tok(tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"]
    ids = tok(tok.apply_chat_template(prompt + [{"role": "assistant", "content": ex.answer}],
                                      tokenize=False), add_special_tokens=False)["input_ids"]
    if ids[:len(prompt_ids)] != prompt_ids:  # masking by position needs the prompt first
        raise edu_qa.UserError("the chat template does not render the prompt as a prefix of "
                               "prompt+answer; label masking would be wrong for this --model")
    labels = [-100] * len(prompt_ids) + ids[len(prompt_ids):]
    return {"input_ids": ids[:max_length], "attention_mask": [1] * len(ids[:max_length]),
            "labels": labels[:max_length], "cut": len(ids) > max_length}


if __name__ == "__main__":
    edu_qa.step(console, 2, "Data format preparation")
    # a model not on this machine is downloaded only with --execute (offline: a clear error)
    if not (cfg.execute or edu_qa.model_is_local(cfg.model)):
        edu_qa.plan_only(console, [f"{cfg.model!r} is not on this machine; --execute "
                                   "downloads it"], edu_qa.command_line(METHOD, cfg))
    tok = edu_qa.load_tokenizer(cfg.model)
    formatted = convert_format(cfg, tok, train, dev, console)
    run.set(prompt_template=tok.apply_chat_template(
        edu_qa.chat_messages("{question}"), tokenize=False, add_generation_prompt=True))


# %% Step 3. Model configuration
@dataclass(frozen=True)
class Configured:
    lora_config: object  # peft.LoraConfig
    plan: dict           # batch, accumulation, checkpointing, compile: training_plan.choose
    needs_execute: list[str]


def configure_model(cfg: Config, device, train_ds, console) -> Configured:
    """LoraConfig, the model's size and memory, and the guard: what needs --execute."""
    from peft import LoraConfig
    lora_config = LoraConfig(
        r=cfg.lora_r,                      # rank: size of the low-rank update matrices
        lora_alpha=cfg.lora_alpha,         # the update is scaled by alpha / r
        lora_dropout=cfg.lora_dropout,     # 0: no random masks to draw (same dev quality here)
        target_modules=cfg.target_modules if cfg.target_modules == "all-linear"
        else cfg.target_modules.split(","),
        task_type="CAUSAL_LM",             # tells peft how to wrap the model
    )
    shape = training.model_shape(cfg.model)  # from the config alone: no weights loaded here
    estimate = training.estimate(device, shape, train_ds, cfg.lora_r, cfg.batch_size, cfg.epochs)
    console.print(f"model: {edu_qa.describe_model(cfg.model)} | LoRA: r={cfg.lora_r} (rank of "
                  f"each update), alpha={cfg.lora_alpha} (its scale, alpha/r), dropout="
                  f"{cfg.lora_dropout}, targets={cfg.target_modules} (which layers get one)")
    for line in estimate["lines"]:
        console.print(line)
    plan = training.plan_training(device, shape, train_ds, cfg.batch_size, cfg.epochs,
                                  estimate.get("lora_params", 0))
    for reason in plan["reasons"] if device.device == "cuda" else []:
        console.print(f"GPU setting: {reason}")
    return Configured(lora_config, plan,
                      training.needs_execute(cfg.model, shape, device, FREE_MAX_PARAMS))


def load_model(cfg: Config, device, configured: Configured, console):
    """Base model (4-bit with QLoRA; CPU matmuls by oneDNN) with LoRA beside its frozen layers."""
    import torch
    from peft import get_peft_model
    from transformers import set_seed
    attention = configured.plan.get("attention")
    model, tok = edu_qa.load_local_model(cfg.model, dtype=torch.float32,
                                         **training.quantization(device),
                                         **({"attn_implementation": attention} if attention
                                            else {}))
    model = training.place_for_training(model, device, configured.plan["checkpointing"])
    # get_peft_model draws LoRA's A matrices at random (B starts at 0), before Trainer would
    # seed anything: seed first, or two runs of the same command train different adapters
    set_seed(cfg.seed)
    model = get_peft_model(model, configured.lora_config)
    trainable, total = model.get_nb_trainable_parameters()  # step 3's notice says the share
    return model, tok, trainable, total


if __name__ == "__main__":
    edu_qa.step(console, 3, "Model configuration")
    configured = configure_model(cfg, device, formatted.train, console)
    if configured.needs_execute and not cfg.execute:  # nothing leaves this machine but a
        edu_qa.plan_only(console, configured.needs_execute,  # model download
                         edu_qa.command_line(METHOD, cfg))
    model, tok, trainable, total = load_model(cfg, device, configured, console)
    run.set(trainable_params=trainable, total_params=total)
    if device.device == "cuda":
        console.print(training.time_one_step(device, configured.plan, model, tok,
                                             formatted.train, cfg.batch_size, cfg.epochs))
    run.prepared()
    edu_qa.notice(console, notices.trainable(run.results))


# %% Step 4. Fine-tuning / optimization
def tune(cfg: Config, device, configured: Configured, model, tok, formatted: Formatted, dev,
         console, run) -> edu_qa.Tuned:
    """Train the adapter with transformers' Trainer (the data is tokenized with the prompt
    masked already, so TRL's SFTTrainer would add nothing): logging, per-epoch evaluation,
    checkpoints, --resume, multi-GPU. On a CPU, SharedPromptTrainer runs the system prompt a
    batch's rows share once (edu_qa/shared_prompt.py). With dev, each epoch's (and the base's)
    dev ANSWERS are judged and the best is kept, the base if no epoch beats it."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, TrainingArguments
    from edu_qa.shared_prompt import SharedPromptTrainer  # transformers' Trainer, subclassed
    plan = configured.plan
    args = TrainingArguments(
        output_dir=cfg.output_dir,
        num_train_epochs=cfg.epochs,
        # --batch-size is the effective batch: on a small GPU, smaller steps accumulated
        per_device_train_batch_size=plan["per_device_batch"],
        gradient_accumulation_steps=plan["accumulation"],
        per_device_eval_batch_size=plan["per_device_batch"],
        # QLoRA's preparation turns checkpointing on itself when it is planned
        activation_checkpointing=plan["checkpointing"] and device.quantization != "4bit",
        activation_checkpointing_kwargs={"use_reentrant": False},
        torch_compile=plan["compile"], use_liger_kernel=plan["liger"],  # GPU: fused kernels
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=LORA.lr_scheduler_type,  # cosine: decays to ~0, the last epoch settles
        warmup_steps=LORA.warmup_steps,
        logging_steps=max(1, math.ceil(len(formatted.train) / cfg.batch_size / 3)),
        eval_strategy="epoch",             # dev loss once per epoch
        save_strategy="epoch",             # a checkpoint per epoch, for --resume
        save_total_limit=2,
        # dev accuracy (ties: dev F1) of the answers chooses the checkpoint kept at the end
        load_best_model_at_end=cfg.judge_on_dev,
        metric_for_best_model="dev_score" if cfg.judge_on_dev else None,
        greater_is_better=True,
        bf16=device.precision == "bf16", logging_nan_inf_filter=plan["nan_filter"],
        use_cpu=device.device == "cpu", seed=cfg.seed,
        report_to="none",                  # no tracker unless you add one
        remove_unused_columns=False,
    )
    pad = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    trainer = SharedPromptTrainer(
        model=model, args=args, train_dataset=formatted.train, eval_dataset=formatted.dev,
        # pads each batch to its longest example, labels -100; on a CPU, logits only at answer
        # tokens (the loss reads no others) and the shared prompt marked; FlashAttention: no pad
        data_collator=DataCollatorWithFlattening() if plan["padding_free"] else
        training.AnswerLogitsOnly(pad, plan["shared_prompt"]) if plan["answer_logits"] else pad,
    )
    training.quiet_trainer(trainer, show_progress=True)
    judge = None
    if cfg.judge_on_dev:
        # after each evaluation the judge answers the dev questions and adds eval_dev_score
        # (dev accuracy, ties: dev F1) to the metrics, which metric_for_best_model reads
        judge = dev_judge.DevAnswers(tok, dev, cfg.max_new_tokens, cfg.eval_batch_size)
        trainer.add_callback(judge.callback())
        trainer.evaluate()  # epoch 0: the base model (LoRA's B starts at 0)
    resume = training.checkpoint_to_resume(cfg.resume, cfg.output_dir, console)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    tokens = int(sum(len(x) for x in formatted.train["input_ids"]) * cfg.epochs)
    # bf16 training leaves forward wrapped in autocast: unwrapped, the model answers in its
    # weights' own precision, exactly as a reloaded adapter does
    trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    adapter_dir = Path(cfg.output_dir) / "adapter"
    if trainer.is_world_process_zero():  # under accelerate launch: one adapter, one writer
        model.save_pretrained(str(adapter_dir))  # the LoRA matrices only, a few MB
        tok.save_pretrained(str(adapter_dir))
    console.print(f"trained in {seconds:.1f} s | {tokens / seconds:.0f} tokens/s | adapter: "
                  f"{adapter_dir} ({edu_qa.disk_size(adapter_dir) / 1e6:.1f} MB)")
    kept = judge.choose(console) if judge else "last epoch"  # the epoch table, what is kept
    run.timed(tune=seconds)
    run.counted(training=tokens, training_per_s=round(tokens / seconds, 1))
    run.set(artifact=edu_qa.artifact(adapter_dir))
    run.extra(train_log=[r for r in trainer.state.log_history if "loss" in r or "eval_loss" in r],
              resumed=bool(resume), epochs=judge.rows if judge else None, kept=kept)
    return edu_qa.Tuned(model, kept, seconds, adapter_dir)


if __name__ == "__main__":
    edu_qa.step(console, 4, "Fine-tuning / optimization")
    tuned = tune(cfg, device, configured, model, tok, formatted, dev, console, run)
    edu_qa.notice(console, notices.lora_epochs(run.results))
    if not training.is_main_process():
        raise edu_qa.Stop(0)  # under accelerate launch, one process evaluates and reports


# %% Step 5. Inference and demonstration
def answer(model, tok, questions, cfg: Config) -> tuple[list[str], int]:
    """Greedy answers to the plain chat prompt, a whole split per generate() call (one big
    batch is fastest on a CPU), padded on the left so each row's next token follows its prompt,
    and how many tokens were generated. custom_generate: in fp32 generate()'s tokens, 2x sooner."""
    import torch
    answers, generated = [], 0
    for i in range(0, len(questions), cfg.eval_batch_size):
        inputs = tok.apply_chat_template(
            [edu_qa.chat_messages(ex.question) for ex in questions[i:i + cfg.eval_batch_size]],
            add_generation_prompt=True, padding=True, tokenizer_kwargs={"padding_side": "left"},
            return_tensors="pt", return_dict=True).to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id,
                                 custom_generate=edu_qa.rows_leave_when_done)
        new = out[:, inputs["input_ids"].shape[1]:]  # the answer: what follows the prompt
        generated += int((new != tok.pad_token_id).sum())
        answers += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    return answers, generated


def infer(cfg: Config, device, model, tok, tuned: edu_qa.Tuned, data, console, run):
    """The plain-prompt baseline (the adapter off) and the tuned model answer the same test
    questions, greedy, graded by the same metric. If step 4 kept the base, "after" is the
    base's answers."""
    test, generated = data.split("test"), []
    start = time.perf_counter()
    model.eval()

    def ask():
        answers, tokens = answer(model, tok, test, cfg)
        generated.append(tokens)
        return answers
    # LoRA only adds to frozen weights: with the adapter switched off the model IS the base
    with model.disable_adapter():
        if device.quantization == "4bit":  # another model than the shared baseline's
            before = ask()
            source = {"kind": "the 4-bit base model, plain prompt", "this_run": True}
        else:  # every method's "before": results/baseline.json, answered by the first run
            before, source = edu_qa.plain_prompt_baseline(
                cfg.model, data, cfg.max_new_tokens, lambda _: ask(), console, cfg.results_dir)
    after = ask() if tuned.kept != "base" else before
    seconds = time.perf_counter() - start
    run.counted(inference=sum(generated))
    scores, rows, _ = edu_qa.report_test_answers(console, test, before, after,
                                                 title="plain prompt vs LoRA-tuned")
    return edu_qa.Answered(before, after, scores, rows, seconds), source


def reload_check(cfg: Config, device, tok, tuned: edu_qa.Tuned, answered, test, console):
    """As a user would: a FRESH base model (4-bit again after QLoRA) with the saved adapter
    answers the first questions exactly as the model just trained did."""
    import torch
    from peft import PeftModel
    base, _ = edu_qa.load_local_model(cfg.model, dtype=torch.float32,
                                      **training.quantization(device))
    reloaded = PeftModel.from_pretrained(base, str(tuned.artifact)).eval()
    same = sum(a == b for a, b in zip(answer(reloaded, tok, test[:3], cfg)[0], answered.after))
    console.print(f"reload check (PeftModel.from_pretrained on a fresh base): {same}/3 answers "
                  "identical")
    return {"checked": 3, "identical": same}


if __name__ == "__main__":
    edu_qa.step(console, 5, "Inference and demonstration")
    answered, source = infer(cfg, device, model, tok, tuned, data, console, run)
    run.answered(answered, source, per_question_answers=2)
    name = edu_qa.describe_model(cfg.model)
    run.set(tuned_model=f"{name} + LoRA r={cfg.lora_r}" if tuned.kept != "base"
            else f"{name} (base kept: no epoch beat it on dev)")
    run.extra(reload_check=reload_check(cfg, device, tok, tuned, answered, test, console)
              if cfg.verify_reload and tuned.kept != "base" else None)
    # deployment without peft: the adapter folded into a copy of the weights
    run.extra(merged_model=str(training.merge(cfg.model, device, tuned.artifact, cfg.output_dir,
                                              console)) if cfg.merge else None)
    edu_qa.notice(console, notices.style_or_facts(run.results))


# %% Step 6. Comparison
def compare(run, console) -> None:
    """results/huggingface_lora.json, then the scoreboard of every method's results."""
    run.save_and_compare(console)


if __name__ == "__main__":
    edu_qa.step(console, 6, "Comparison")
    compare(run, console)
