"""The GPU settings of the LoRA recipe, decided on the CPU with pretend memory budgets: what a
card of each size gets, and that the Trainer runs what was decided."""

import pytest

import edu_qa
import huggingface_lora as lora
from edu_qa import training, training_plan
from helpers import tiny_setup, tune

GiB = 2 ** 30
# TinyLlama-1.1B's shape, the one benchmarks/qlora.py measures
TINYLLAMA = {"params": 1_100_048_384, "hidden": 2048, "layers": 22, "intermediate": 5632,
             "vocab": 32000}


def plan(free_gib, batch=8, quantization="none", steps=500, seq=512):
    return training_plan.choose(device="cuda", effective_batch=batch, seq_len=seq,
                                shape=TINYLLAMA, quantization=quantization, precision="bf16",
                                lora_params=12_615_680, steps=steps,
                                free_bytes=int(free_gib * GiB))


def test_an_80_gb_card_needs_no_checkpointing_and_compiles():
    p = plan(79)
    assert (p["per_device_batch"], p["accumulation"], p["checkpointing"]) == (8, 1, False)
    assert p["compile"] and p["attention"] in ("sdpa", "flash_attention_2")
    assert any("fits without gradient checkpointing" in r for r in p["reasons"])


def test_a_small_card_checkpoints_and_accumulates_to_keep_the_effective_batch():
    for free in (12, 6, 3):
        p = plan(free, batch=32)
        assert p["checkpointing"]
        assert p["per_device_batch"] * p["accumulation"] >= 32
        assert (p["per_device_batch"] - 1) * p["accumulation"] < 32  # even, not padded out
        need = training_plan.memory(TINYLLAMA, batch=p["per_device_batch"], seq_len=512,
                                    quantization="none", precision="bf16",
                                    lora_params=12_615_680, checkpointing=True)["total"]
        assert need <= free * GiB * training_plan.HEADROOM or p["per_device_batch"] == 1
    assert plan(3, batch=32)["accumulation"] > plan(12, batch=32)["accumulation"]


def test_qlora_is_not_compiled_and_short_runs_are_not_compiled():
    assert not plan(79, quantization="4bit")["compile"]
    assert not plan(79, steps=10)["compile"]
    assert plan(79, quantization="4bit")["checkpointing"] is False  # room: none needed


def test_liger_kernels_where_installed_and_no_per_step_nan_check(monkeypatch):
    """On CUDA: Liger's kernels exactly where liger-kernel is installed (on an H200 they took
    QLoRA from 34k to 44k tokens/s with no dropout), and no NaN check of every step's loss
    (it made the CPU wait for the GPU each step: 66.7k to 73.5k tokens/s, benchmarks/README.md)."""
    import importlib.util
    real = importlib.util.find_spec
    for installed in (True, False):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
            (object() if installed else None) if name == "liger_kernel" else real(name, *a)))
        for quantization in ("none", "4bit"):
            p = plan(79, quantization=quantization)
            assert p["liger"] is installed and p["nan_filter"] is False
            assert p["answer_logits"] is False  # answer-only logits: measured on a CPU only
            assert p["shared_prompt"] is False  # the shared prompt once: a CPU's too
            assert any(("liger-kernel is not installed" in r) is not installed
                       and "Liger kernels" in r for r in p["reasons"])


def test_memory_model_matches_what_was_measured_on_an_h100():
    """2026-11-26, H100, the 1.1B shape, bf16 LoRA, batch x 512: 17.6 GiB at batch 8 through
    Trainer; 58 GiB at batch 32 and 5 GiB with checkpointing at batch 8 (plain PEFT loop). The
    model need not be exact: within 30% keeps the choices right."""
    def total(batch, checkpointing):
        return training_plan.memory(TINYLLAMA, batch=batch, seq_len=512, quantization="none",
                                    precision="bf16", lora_params=12_615_680,
                                    checkpointing=checkpointing)["total"] / GiB
    for modelled, measured in ((total(8, False), 17.6), (total(32, False), 58),
                               (total(8, True), 5)):
        assert 0.7 * measured <= modelled <= 1.3 * measured, (modelled, measured)


def test_on_a_cpu_nothing_changes_but_answer_only_logits_and_the_shared_prompt():
    p = training_plan.choose(device="cpu", effective_batch=8, seq_len=100, shape=TINYLLAMA,
                             quantization="none", precision="fp32", lora_params=1, steps=9,
                             free_bytes=None)
    assert (p["per_device_batch"], p["accumulation"], p["checkpointing"], p["compile"],
            p["attention"], p["padding_free"], p["liger"], p["nan_filter"], p["answer_logits"],
            p["shared_prompt"]) == (8, 1, False, False, None, False, False, True, True, True)
    qlora = training_plan.choose(device="cpu", effective_batch=8, seq_len=100, shape=None,
                                 quantization="4bit", precision="fp32", lora_params=1, steps=9,
                                 free_bytes=None)
    assert qlora["checkpointing"]  # QLoRA's recipe, as before
    assert not qlora["shared_prompt"]  # checkpointing keeps no keys and values to share


def test_the_trainer_runs_the_decided_accumulation(tmp_path, tiny_model, monkeypatch):
    import dataclasses

    from transformers import Trainer
    s = tiny_setup(tiny_model, tmp_path / "out", epochs=1, precision="fp32",
                   judge_on_dev=False)
    plan = s.configured.plan
    assert plan["accumulation"] == 1  # configure_model decided: a CPU, as before
    assert not plan["liger"] and plan["nan_filter"]  # the CPU's numbers stay as they were
    s.configured = dataclasses.replace(s.configured, plan=dict(plan, per_device_batch=2,
                                                               accumulation=2, nan_filter=False))
    seen = []
    real_train = Trainer.train
    monkeypatch.setattr(Trainer, "train",
                        lambda self, **kw: seen.append(self) or real_train(self, **kw))
    tune(s)
    trainer = seen[0]
    assert trainer.args.per_device_train_batch_size == 2
    assert trainer.args.gradient_accumulation_steps == 2
    assert trainer.state.max_steps == 4  # 16 examples / (2 x 2): the same steps as batch 4
    assert trainer.args.logging_nan_inf_filter is False and trainer.args.use_liger_kernel is False


def test_a_measured_step_changes_no_weight(tiny_model):
    import torch
    model, tok = edu_qa.load_local_model(str(tiny_model))
    before = [p.detach().clone() for p in model.parameters()]
    batch = tok(["<|im_start|>user\nWhat is DNA?<|im_end|>"], return_tensors="pt")
    seconds = training_plan.time_step(model, dict(batch, labels=batch["input_ids"]))
    assert seconds > 0
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("free", [79, 6])
def test_step_3_says_what_it_chose_and_why(free, tmp_path, tiny_model, monkeypatch, capsys):
    monkeypatch.setattr(training, "free_gpu_memory", lambda device: int(free * GiB))
    cfg = lora.Config(model=str(tiny_model), output_dir=str(tmp_path), train_size=16)
    console = edu_qa.console()
    import dataclasses
    prepared = lora.prepare_data(cfg, console)
    # pretend: only the decision runs, nothing is placed on a GPU
    device = dataclasses.replace(prepared.where, device="cuda")
    tok = edu_qa.load_tokenizer(cfg.model)
    formatted = lora.convert_format(cfg, tok, prepared.train, prepared.dev, console)
    lora.configure_model(cfg, device, formatted.train, console)
    out = capsys.readouterr().out
    assert "GPU setting: batch 8 fits without gradient checkpointing" in out
    assert "time estimate: from one measured step" in out
