"""The dev judge of the LoRA recipe: after every epoch (and before the first) it answers the
dev questions with the model as it is, grades them with the metric of step 5, and hands
Trainer the score it keeps the best checkpoint by. Loss is not what a student is graded on;
answers are.
"""

from __future__ import annotations

import time

from .data import chat_messages
from .local_model import generate
from .scoring import score


class DevAnswers:
    """A judge Trainer calls after each evaluation (add it with trainer.add_callback(
    judge.callback())): it generates the dev answers with the model as it is now, scores them
    (accuracy and F1, the metric of step 5), and adds to Trainer's metrics the one it keeps the
    best checkpoint by, eval_dev_score: dev accuracy, ties broken by dev F1."""

    def __init__(self, tok, dev, max_new_tokens: int, batch_size: int):
        self.tok, self.dev, self.rows = tok, dev, []
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def callback(self):
        from transformers import TrainerCallback
        judge = self

        class Judge(TrainerCallback):
            def on_evaluate(self, args, state, control, **kwargs):
                judge.on_evaluate(args, state, control, **kwargs)
        return Judge()

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
            return "base"
        console.print(f"kept: epoch {best['epoch']}, the best dev accuracy "
                      f"({best['dev_accuracy']:.2f}, F1 {best['dev_f1']:.2f}; base "
                      f"{base['dev_accuracy']:.2f}, F1 {base['dev_f1']:.2f})")
        return f"epoch {best['epoch']}"

