"""One job's training: LoRA on the job's chat examples, run in the training process
(training_process.py), never in the service's own.

It makes the library calls that huggingface_lora.py teaches (LoraConfig, get_peft_model,
TrainingArguments, Trainer) with the same settings, read from edu_qa/recipe.py, so that a job
trains as the script does. What differs is the job: its examples are an OpenAI chat file, its
hyperparameters are OpenAI's (mapped by the worker's hyperparameters() and by arguments()
below; for users, finetune_service.py's docstring), its log lines become the job's events,
each epoch's save becomes one of its checkpoints, each step a row of its step metrics (loss
and token accuracy, OpenAI's results file), and a cancel stops it at the next step. There is
no dev judge: a job keeps its last epoch, as OpenAI's jobs do.

This code does not touch the service's records: it runs in another process, and says what
happened in messages (JobRun.send), which the worker applies to the store."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import (DataCollatorForSeq2Seq, DataCollatorWithFlattening, TrainerCallback,
                          TrainingArguments, set_seed)

import edu_qa
from edu_qa import training
from edu_qa.recipe import LORA
from edu_qa.shared_prompt import SharedPromptTrainer

from .store import job_folder, model_folder

# the script's defaults: bf16 on a GPU that has it, fp32 on a CPU (training.CPU_FP32_WHY);
# 4-bit weights (QLoRA) on CUDA, full weights elsewhere
PRECISION, QUANTIZATION = "auto", "auto"


class UnusableExamples(Exception):
    """The job's examples cannot be tokenized for training (the job fails, not the service)."""


@dataclass(frozen=True)
class JobRun:
    """What training needs to know of one job, from the worker, and where it reports."""
    data_dir: Path               # the service's data directory: the job's adapters go here
    job_id: str
    seed: int                    # the job's seed (LoRA's initial weights, data order)
    base_model: str              # what edu_qa.load_local_model reads
    fine_tuned_model: str        # ft:MODEL:ORG:SUFFIX:ID; a checkpoint adds :ckpt-step-N
    use_gpu: bool                # the script's --execute
    stopped: Callable[[], bool]  # cancelled, or the service is stopping
    send: Callable[[tuple], None]  # a message to the worker: (kind, details)

    def event(self, message: str, **details) -> None:
        """One of the job's events: level, kind and data as Store.event takes them."""
        self.send(("event", dict(details, message=message)))


@dataclass(frozen=True)
class Trained:
    adapter_dir: Path  # the fine-tuned model's adapter: what the service serves as it
    tokens: int        # training tokens, times the epochs: the job's trained_tokens
    steps: list[dict]  # one row per step: step, train_loss, train_accuracy, and at the end of
    #                    an epoch with a validation file valid_loss, valid_mean_token_accuracy


def train(run: JobRun, train_examples: list[dict], valid_examples: list[dict] | None,
          hyper: dict) -> Trained | None:
    """The recipe on the job's examples; None when the job stopped before the end (cancelled,
    or the service stopping)."""
    trainer_dir = job_folder(run.data_dir, run.job_id) / "trainer"
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
    metrics = TokenMetrics()
    events = JobEvents(run, metrics)
    pad = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    trainer = MeasuredTrainer(
        model=model, args=arguments(run, device, plan, hyper, trainer_dir, train_ds, valid_ds),
        train_dataset=train_ds, eval_dataset=valid_ds, callbacks=[events], metrics=metrics,
        # each batch padded to its longest example (labels with -100, which the loss
        # ignores), logits only where the loss reads them and the shared prompt marked (on a
        # CPU); with FlashAttention not padded at all, packed into one row
        data_collator=DataCollatorWithFlattening() if plan["padding_free"] else
        training.AnswerLogitsOnly(pad, plan["shared_prompt"]) if plan["answer_logits"] else pad)
    training.quiet_trainer(trainer, show_progress=False)
    trainer.train()
    if run.stopped():  # "cancelled" already, or "running" to be trained again on restart
        return None
    adapter_dir = model_folder(run.data_dir, run.job_id, run.fine_tuned_model)
    shutil.rmtree(adapter_dir, ignore_errors=True)
    trainer.save_model(str(adapter_dir))  # the LoRA matrices, a few MB (and Trainer's args)
    tok.save_pretrained(str(adapter_dir))
    return Trained(adapter_dir, int(sum(len(x) for x in train_ds["input_ids"])
                                    * hyper["n_epochs"]), events.steps)


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
    set_seed(run.seed)
    return get_peft_model(training.place_for_training(model, device, plan["checkpointing"]),
                          lora), tok


def arguments(run: JobRun, device: training.Device, plan: dict, hyper: dict, output_dir: Path,
              train_ds, valid_ds) -> TrainingArguments:
    """The recipe's Trainer settings, with the job's epochs, batch, learning rate and seed."""
    return TrainingArguments(
        output_dir=str(output_dir), seed=run.seed,
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
        use_liger_kernel=plan["liger"], logging_nan_inf_filter=plan["nan_filter"],
        use_cpu=device.device == "cpu",
        # about three training-loss events per epoch
        logging_steps=max(1, math.ceil(len(train_ds) / hyper["batch_size"] / 3)),
        # the validation loss and a checkpoint at the end of every epoch; Trainer keeps its
        # last two, the job keeps every one (JobEvents copies each out)
        eval_strategy="epoch" if valid_ds is not None else "no", save_strategy="epoch",
        save_total_limit=2,
        report_to="none", remove_unused_columns=False)


class TokenMetrics:
    """What each step's batches scored on the answer tokens (the tokens the loss counts):
    their mean loss and the share the model predicted right (OpenAI's train_accuracy); the
    same for the validation batches (valid_mean_token_accuracy). Counted without gradients,
    and drawing nothing random: the trained weights are those of plain Trainer."""

    def __init__(self):
        self.sums = {True: [0.0, 0, 0], False: [0.0, 0, 0]}  # training? -> loss, right, tokens

    def add(self, logits, labels, training: bool, shift_labels=None) -> None:
        with torch.no_grad():
            if shift_labels is not None:  # AnswerLogitsOnly: the answer positions' logits
                picked, wanted = logits.float(), shift_labels
            else:  # the logits at position i predict the token at i + 1
                answer = labels[:, 1:] != -100
                picked, wanted = logits[:, :-1][answer].float(), labels[:, 1:][answer]
            loss = torch.nn.functional.cross_entropy(picked, wanted, reduction="sum")
            right = (picked.argmax(-1) == wanted).sum()
        sums = self.sums[training]
        sums[0] += loss.item()
        sums[1] += right.item()
        sums[2] += len(wanted)

    def take(self, training: bool) -> tuple[float | None, float | None]:
        """(mean loss, token accuracy) since the last take, then counting starts again."""
        loss, right, tokens = self.sums[training]
        self.sums[training] = [0.0, 0, 0]
        return (loss / tokens, right / tokens) if tokens else (None, None)


class MeasuredTrainer(SharedPromptTrainer):
    """Trainer (as the script's: on a CPU the batch's shared system prompt computed once), with
    each batch's answer tokens counted (TokenMetrics) as its loss is computed, in training and
    in evaluation."""

    def __init__(self, *args, metrics: TokenMetrics, **kwargs):
        super().__init__(*args, **kwargs)
        self.token_metrics = metrics

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                             num_items_in_batch=num_items_in_batch)
        self.token_metrics.add(outputs.logits, inputs["labels"], training=model.training,
                               shift_labels=inputs.get("shift_labels"))
        return (loss, outputs) if return_outputs else loss


class JobEvents(TrainerCallback):
    """Trainer's log lines become the job's events, its saves the job's checkpoints (an
    adapter, callable as ft:...:ckpt-step-N), each step a row of step metrics, and a stopped
    job stops training."""

    def __init__(self, run: JobRun, metrics: TokenMetrics):
        self.run, self.metrics = run, metrics
        self.last = {}  # the latest losses: the metrics of the next checkpoint
        self.steps = []  # the step metrics, a row per step

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
            if self.steps and self.steps[-1]["step"] == step:  # on_step_end wrote it
                self.steps[-1].update(valid_loss=logs["eval_loss"],
                                      valid_mean_token_accuracy=self.metrics.take(False)[1])

    def on_save(self, args, state, control, **kwargs):
        if self.run.stopped():
            return
        step = state.global_step
        name = f"{self.run.fine_tuned_model}:ckpt-step-{step}"
        saved = Path(args.output_dir) / f"checkpoint-{step}"
        folder = model_folder(self.run.data_dir, self.run.job_id, name)
        # copied beside, then renamed: a process ended mid-copy leaves no folder that looks
        # whole (and the worker records a checkpoint only once this message arrives)
        partial = folder.with_name(f"{folder.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for file in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(saved / file, partial / file)
        shutil.rmtree(folder, ignore_errors=True)  # an earlier run's (a job trained again)
        partial.rename(folder)
        self.run.send(("checkpoint", {"step": step, "name": name, "folder": str(folder),
                                      "metrics": {k: v for k, v in self.last.items()
                                                  if k != "step"}}))

    def on_step_end(self, args, state, control, **kwargs):
        loss, accuracy = self.metrics.take(True)
        self.steps.append({"step": state.global_step, "train_loss": loss,
                           "train_accuracy": accuracy})
        if self.run.stopped():
            control.should_training_stop = True
