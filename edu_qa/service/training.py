"""One job's training: LoRA on the job's chat examples, run by the worker's training thread.

It makes the library calls that huggingface_lora.py teaches (LoraConfig, get_peft_model,
TrainingArguments, Trainer) with the same settings, read from edu_qa/recipe.py, so that a job
trains as the script does. What differs is the job: its examples are an OpenAI chat file, its
hyperparameters are OpenAI's (mapped below), its log lines become the job's events, each
epoch's save becomes one of its checkpoints, and a cancel stops it at the next step. There is
no dev judge: a job keeps its last epoch, as OpenAI's jobs do. (How OpenAI's
hyperparameters map onto the recipe's settings: hyperparameters() and arguments() below; for
users, finetune_service.py's docstring.)

The worker imports this module when it first trains, not when the service starts: torch,
transformers and peft take seconds to import."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
from peft import LoraConfig, get_peft_model
from transformers import (DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer,
                          TrainerCallback, TrainingArguments, set_seed)

import edu_qa
from edu_qa import chat_format, training
from edu_qa.recipe import LORA

from .store import Store, model_folder, new_id, now, unique_steps

# the script's defaults: bf16 where the hardware multiplies it natively and faster, else fp32;
# 4-bit weights (QLoRA) on CUDA, full weights elsewhere
PRECISION, QUANTIZATION = "auto", "auto"


class UnusableExamples(Exception):
    """The job's examples cannot be tokenized for training (the job fails, not the service)."""


@dataclass(frozen=True)
class JobRun:
    """What training needs to know of one job, from the worker."""
    store: Store
    record: dict                 # the job's record: its events and checkpoints go here
    base_model: str              # what edu_qa.load_local_model reads
    fine_tuned_model: str        # ft:MODEL:ORG:SUFFIX:ID; a checkpoint adds :ckpt-step-N
    use_gpu: bool                # the script's --execute
    stopped: Callable[[], bool]  # cancelled, or the service is stopping

    @property
    def job_id(self) -> str:
        return self.record["object"]["id"]

    def event(self, message: str, **details) -> None:
        self.store.event(self.record, message, **details)


@dataclass(frozen=True)
class Trained:
    adapter_dir: Path  # the fine-tuned model's adapter: what the service serves as it
    tokens: int        # training tokens, times the epochs: the job's trained_tokens


def hyperparameters(given: dict, n_examples: int) -> dict:
    """The job's hyperparameters, each 'auto' decided."""
    return {"n_epochs": chat_format.default_epochs(n_examples) if given["n_epochs"] == "auto"
            else given["n_epochs"],
            "batch_size": LORA.batch_size if given["batch_size"] == "auto"
            else given["batch_size"],
            "learning_rate_multiplier": 1.0 if given["learning_rate_multiplier"] == "auto"
            else given["learning_rate_multiplier"]}


def train(run: JobRun, train_examples: list[dict], valid_examples: list[dict] | None,
          hyper: dict) -> Trained | None:
    """The recipe on the job's examples; None when the job stopped before the end (cancelled,
    or the service stopping)."""
    trainer_dir = run.store.job_dir(run.job_id) / "trainer"
    shutil.rmtree(trainer_dir, ignore_errors=True)  # a restarted job starts over
    device = training.choose_device(run.use_gpu, PRECISION, QUANTIZATION)
    tok = edu_qa.load_tokenizer(run.base_model)
    try:
        train_ds, cut = training.chat_dataset(tok, [e["messages"] for e in train_examples],
                                              LORA.max_length)
        valid_ds = training.chat_dataset(tok, [e["messages"] for e in valid_examples],
                                         LORA.max_length)[0] if valid_examples else None
    except edu_qa.UserError as err:
        raise UnusableExamples(str(err)) from None
    plan = training.plan_training(device, training.model_shape(run.base_model), train_ds,
                                  hyper["batch_size"], hyper["n_epochs"])
    if cut:
        run.event(f"{len(cut)} training examples (numbers "
                  f"{', '.join(str(i + 1) for i in cut[:20])}) are longer than "
                  f"{LORA.max_length} tokens and were cut", level="warn")
    model, tok = lora_model(run, device, plan)
    if run.stopped():  # cancelled while the model loaded
        return None
    trainer = Trainer(
        model=model, args=arguments(run, device, plan, hyper, trainer_dir, train_ds, valid_ds),
        train_dataset=train_ds, eval_dataset=valid_ds, callbacks=[JobEvents(run)],
        # each batch padded to its longest example (labels with -100, which the loss
        # ignores); with FlashAttention not padded at all, packed into one row
        data_collator=DataCollatorWithFlattening() if plan["padding_free"] else
        DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
    training.quiet_trainer(trainer, show_progress=False)
    trainer.train()
    if run.stopped():  # "cancelled" already, or "running" to be trained again on restart
        return None
    adapter_dir = model_folder(run.store.dir, run.job_id, run.fine_tuned_model)
    shutil.rmtree(adapter_dir, ignore_errors=True)
    trainer.save_model(str(adapter_dir))  # the LoRA matrices, a few MB (and Trainer's args)
    tok.save_pretrained(str(adapter_dir))
    return Trained(adapter_dir, int(sum(len(x) for x in train_ds["input_ids"])
                                    * hyper["n_epochs"]))


def lora_model(run: JobRun, device: training.Device, plan: dict):
    """(the base model, with LoRA's small matrices beside its frozen layers; its tokenizer)."""
    attention = plan.get("attention")
    model, tok = edu_qa.load_local_model(
        run.base_model, dtype=torch.float32, **training.quantization(device),
        **({"attn_implementation": attention} if attention else {}))
    lora = LoraConfig(r=LORA.lora_r, lora_alpha=LORA.lora_alpha, task_type="CAUSAL_LM",
                      lora_dropout=LORA.lora_dropout, target_modules=LORA.target_modules
                      if LORA.target_modules == "all-linear" else LORA.target_modules.split(","))
    # get_peft_model draws LoRA's A matrices at random (B starts at 0), before Trainer would
    # seed anything: seed first, or two jobs with the same seed train different adapters
    set_seed(run.record["object"]["seed"])
    return get_peft_model(training.place_for_training(model, device, plan["checkpointing"]),
                          lora), tok


def arguments(run: JobRun, device: training.Device, plan: dict, hyper: dict, output_dir: Path,
              train_ds, valid_ds) -> TrainingArguments:
    """The recipe's Trainer settings, with the job's epochs, batch, learning rate and seed."""
    return TrainingArguments(
        output_dir=str(output_dir), seed=run.record["object"]["seed"],
        num_train_epochs=hyper["n_epochs"],
        learning_rate=LORA.learning_rate * hyper["learning_rate_multiplier"],
        lr_scheduler_type=LORA.lr_scheduler_type, warmup_steps=LORA.warmup_steps,
        # the job's batch_size is the effective batch: a GPU too small for it accumulates
        # smaller steps (plan: training_plan.choose, from its free memory)
        per_device_train_batch_size=plan["per_device_batch"],
        per_device_eval_batch_size=plan["per_device_batch"],
        gradient_accumulation_steps=plan["accumulation"],
        # QLoRA's preparation (place_for_training) turns checkpointing on itself if planned
        activation_checkpointing=plan["checkpointing"] and device.quantization != "4bit",
        activation_checkpointing_kwargs={"use_reentrant": False},
        torch_compile=plan["compile"], bf16=device.precision == "bf16",
        use_cpu=device.device == "cpu",
        # about three training-loss events per epoch
        logging_steps=max(1, math.ceil(len(train_ds) / hyper["batch_size"] / 3)),
        # the validation loss and a checkpoint at the end of every epoch; Trainer keeps its
        # last two, the job keeps every one (JobEvents copies each out)
        eval_strategy="epoch" if valid_ds is not None else "no", save_strategy="epoch",
        save_total_limit=2,
        report_to="none", remove_unused_columns=False)


class JobEvents(TrainerCallback):
    """Trainer's log lines become the job's events, its saves the job's checkpoints (an
    adapter, callable as ft:...:ckpt-step-N), and a stopped job stops training."""

    def __init__(self, run: JobRun):
        self.run = run
        self.last = {}  # the latest losses: the metrics of the next checkpoint

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if self.run.stopped():  # nothing is reported after "Job cancelled"
            return
        step, total = state.global_step, state.max_steps
        if "loss" in logs:
            self.last = {"step": step, "train_loss": logs["loss"]}
            self.run.event(f"Step {step}/{total}: training loss={logs['loss']:.4f}",
                           kind="metrics", data=dict(self.last, total_steps=total))
        if "eval_loss" in logs:
            self.last["valid_loss"] = logs["eval_loss"]
            self.run.event(f"Step {step}/{total}: validation loss={logs['eval_loss']:.4f}",
                           kind="metrics", data={"step": step, "valid_loss": logs["eval_loss"],
                                                 "total_steps": total})

    def on_save(self, args, state, control, **kwargs):
        if self.run.stopped():
            return
        step = state.global_step
        name = f"{self.run.fine_tuned_model}:ckpt-step-{step}"
        saved = Path(args.output_dir) / f"checkpoint-{step}"
        folder = model_folder(self.run.store.dir, self.run.job_id, name)
        folder.mkdir(parents=True, exist_ok=True)
        for file in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(saved / file, folder / file)
        self.checkpoint(step, name, folder)

    def on_step_end(self, args, state, control, **kwargs):
        if self.run.stopped():
            control.should_training_stop = True

    def checkpoint(self, step: int, name: str, folder: Path) -> None:
        store, record = self.run.store, self.run.record
        metrics = {k: v for k, v in self.last.items() if k != "step"}
        cp = FineTuningJobCheckpoint(
            id=new_id("ftckpt"), object="fine_tuning.job.checkpoint", created_at=now(),
            fine_tuned_model_checkpoint=name, fine_tuning_job_id=self.run.job_id,
            step_number=step, metrics=dict(metrics, step=step),
        ).model_dump(mode="json", exclude_none=True)
        with store.lock:  # a job trained again replaces its earlier run's checkpoints
            record["checkpoints"] = unique_steps(
                record["checkpoints"] + [dict(cp, folder=str(folder))])
            store.save("jobs", record)
        self.run.event(f"Checkpoint created at step {step}")
