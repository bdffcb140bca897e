"""huggingface_lora.py on CPU, offline: masking, a real short training, reload, the guard."""

import json
import subprocess
import sys

import pytest


import edu_qa
import huggingface_lora as lora
from conftest import ROOT
from edu_qa import dev_judge, training
from helpers import tiny_setup, train_losses, tune

SCRIPT = ROOT / "huggingface_lora.py"


def test_prompt_tokens_are_masked(embedded_tokenizer):
    """The script's own tokenization: loss on the answer only, the same tokens the service's
    multi-turn tokenization gives a one-turn chat."""
    tok = embedded_tokenizer
    messages = edu_qa.chat_messages("What is the chemical symbol for gold?")
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    qa = edu_qa.QA(question="What is the chemical symbol for gold?", answer="Au.", key="Au",
                   subject="chemistry", split="train", line=1)
    ex = lora.tokenize(tok, qa, max_length=512)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert ex["labels"][:n_prompt] == [-100] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert tok.decode(ex["input_ids"][n_prompt:]).startswith("Au.")
    assert ex["cut"] is False
    chat = training.tokenize_chat(tok, messages + [{"role": "assistant", "content": "Au."}],
                                  max_length=512)
    assert chat == {k: v for k, v in ex.items() if k != "cut"}
    assert lora.tokenize(tok, qa, max_length=10)["cut"] is True


def test_every_assistant_turn_carries_loss_unless_its_weight_is_0(embedded_tokenizer):
    tok = embedded_tokenizer
    chat = [{"role": "user", "content": "Symbol for gold?"},
            {"role": "assistant", "content": "Au.", "weight": 0},
            {"role": "user", "content": "And silver?"},
            {"role": "assistant", "content": "Ag."}]
    ex = training.tokenize_chat(tok, chat, max_length=512)
    learned = tok.decode([t for t, label in zip(ex["input_ids"], ex["labels"]) if label != -100])
    assert learned.startswith("Ag.") and "Au." not in learned
    chat[1]["weight"] = 1
    ex = training.tokenize_chat(tok, chat, max_length=512)
    learned = tok.decode([t for t, label in zip(ex["input_ids"], ex["labels"]) if label != -100])
    assert learned.startswith("Au.") and "Ag." in learned and "silver" not in learned
    cut = training.tokenize_chat(tok, chat, max_length=10)
    assert len(cut["input_ids"]) == len(cut["labels"]) == len(cut["attention_mask"]) == 10


def lora_on_tiny_model(tiny_model, onednn=True):
    """(the tiny model with LoRA, every LoRA weight drawn non-zero so that every gradient is
    non-trivial; its tokenizer; 6 training examples tokenized as the script does; the
    script's padding collator). onednn=False: PyTorch's own linear layers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq
    model, tok = edu_qa.load_local_model(str(tiny_model), dtype=torch.float32, onednn=onednn)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    for p in model.parameters():  # B starts at 0: make every gradient non-trivial
        if p.requires_grad:
            p.data.normal_(0, 0.1)
    rows = [lora.tokenize(tok, ex, 160) for ex in edu_qa.load_qa().split("train")[:6]]
    for row in rows:
        row.pop("cut")
    return model, tok, rows, DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)


def test_answer_only_logits_give_the_same_gradients_bit_for_bit(tiny_model):
    """training.AnswerLogitsOnly, the CPU recipe's collator: logits only at the positions that
    predict an answer token, and the LoRA gradients exactly those of the logits at every
    position with PyTorch's linear layers (so the committed results stay the ones a new user
    gets). Through oneDNN (the scripts' on a CPU) the output layer's backward product sums in
    an order that depends on its number of rows: the same gradients to rounding."""
    import torch
    for onednn in (False, True):
        model, tok, rows, pad = lora_on_tiny_model(tiny_model, onednn=onednn)

        def gradients(batch):
            model.zero_grad()
            out = model(**batch)
            out.loss.backward()
            return out, [p.grad.clone() for p in model.parameters() if p.requires_grad]
        full, full_grads = gradients(pad(rows))
        batch = training.AnswerLogitsOnly(pad)(rows)
        answer_tokens = sum(sum(label != -100 for label in row["labels"]) for row in rows)
        assert int(batch["logits_to_keep"].sum()) == len(batch["shift_labels"]) == answer_tokens
        kept, kept_grads = gradients(batch)
        assert kept.logits.shape == (answer_tokens, full.logits.shape[-1])
        assert torch.equal(kept.logits, full.logits[:, :-1][pad(rows)["labels"][:, 1:] != -100])
        same = torch.equal if not onednn else \
            (lambda a, b: torch.allclose(a, b, rtol=1e-4, atol=1e-7))
        assert all(same(a, b) for a, b in zip(kept_grads, full_grads)), onednn
        assert torch.allclose(kept.loss, full.loss, rtol=1e-6)


def test_the_shared_prompt_once_per_batch_gives_the_same_loss_and_gradients(tiny_model):
    """shared_prompt.SharedPromptTrainer, the CPU recipe: the system prompt every row begins
    with goes through the model once and its keys and values serve every row. The loss and
    every LoRA gradient are those of the whole batch computed row by row (to rounding: the
    prompt's matrix products have 1 row instead of 6), and no position the loss reads is in it."""
    import torch

    from edu_qa import shared_prompt
    model, tok, rows, pad = lora_on_tiny_model(tiny_model)
    prompt = tok.apply_chat_template([{"role": "system", "content": edu_qa.SYSTEM_PROMPT},
                                      {"role": "user", "content": ""}], tokenize=False)
    whole = training.AnswerLogitsOnly(pad)(rows)
    batch = training.AnswerLogitsOnly(pad, share_prompt=True)(rows)
    n = batch["shared_prompt"]
    # the system prompt and the user turn's opening, up to where the questions differ
    assert prompt.startswith(tok.decode(batch["input_ids"][0, :n])) and n >= 25
    assert not batch["logits_to_keep"][:, :n + 1].any()
    assert (batch["labels"][:, :n + 1] == -100).all()

    def gradients(batch, once):
        model.zero_grad()
        loss = model(**(shared_prompt.through_once(model, batch) if once else batch)).loss
        loss.backward()
        return loss, [p.grad.clone() for p in model.parameters() if p.requires_grad]
    loss, grads = gradients(whole, once=False)
    once_loss, once_grads = gradients(batch, once=True)
    assert "past_key_values" in batch
    assert batch["input_ids"].shape[1] == whole["input_ids"].shape[1] - n
    assert torch.allclose(once_loss, loss, rtol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(once_grads, grads))
    # too short a prompt, or one row: the batch goes through whole
    assert shared_prompt.shared_length({k: v[:1] for k, v in whole.items()
                                        if k != "shift_labels"}) == 0


def test_frozen_layers_through_onednn_give_pytorchs_loss_and_gradients(tiny_model):
    """LoRA's frozen base layers multiply through oneDNN both ways (edu_qa/onednn.py): the
    forward product, and the backward one that carries the gradient to the layer's input. The
    loss and every LoRA gradient are PyTorch's own, to rounding."""
    import torch

    from edu_qa import onednn
    if not onednn.available():
        pytest.skip("this PyTorch has no oneDNN fp32 linear (or EDU_QA_ONEDNN=0)")

    def gradients(use):
        model, tok, rows, pad = lora_on_tiny_model(tiny_model, onednn=use)
        loss = model(**training.AnswerLogitsOnly(pad)(rows)).loss
        loss.backward()
        bases = [m for m in model.modules() if isinstance(m, onednn.OneDNNLinear)]
        return loss, [p.grad for p in model.parameters() if p.requires_grad], bases
    loss, grads, bases = gradients(True)
    plain_loss, plain_grads, none = gradients(False)
    assert bases and not none
    # backward went through oneDNN: every base layer but the first q, k and v, whose input
    # (the embeddings, frozen) needs no gradient
    assert all(m._packed_t is not None for m in bases[3:])
    assert torch.allclose(loss, plain_loss, rtol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads, plain_grads))


def test_the_prompt_is_not_shared_where_it_would_train_differently(tmp_path, tiny_model):
    """Dropout draws a mask per row, which one pass for all rows would share; gradient
    checkpointing keeps no keys and values: SharedPromptTrainer then trains as Trainer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import TrainingArguments

    from edu_qa.shared_prompt import SharedPromptTrainer
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    for dropout, checkpointing, shares in ((0.0, False, True), (0.05, False, False),
                                           (0.0, True, False)):
        model, _ = edu_qa.load_local_model(str(tiny_model), dtype=torch.float32)
        model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear",
                                                 lora_dropout=dropout, task_type="CAUSAL_LM"))
        if checkpointing:
            model.gradient_checkpointing_enable()
        assert SharedPromptTrainer(model=model, args=args).can_share() is shares


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tiny_model_trains_saves_and_reloads_identically(tmp_path, tiny_model, precision):
    """Both precisions on any CPU (bf16 is emulated where it is not native): the adapter on a
    fresh base gives the trained model's logits bit for bit."""
    import torch
    from peft import PeftModel
    s = tiny_setup(tiny_model, tmp_path / "out", epochs=4, precision=precision,
                   judge_on_dev=False)
    assert s.device.precision == precision
    assert s.configured.needs_execute == []  # small and local: free to train without --execute
    trainable, total = s.model.get_nb_trainable_parameters()
    assert 0 < trainable < total
    tuned = tune(s)
    losses = train_losses(s)
    assert losses[-1] < losses[0], losses
    adapter, model, tok, cfg = tuned.artifact, s.model, s.tok, s.cfg
    assert (adapter / "adapter_config.json").exists()
    assert (adapter / "adapter_model.safetensors").exists()

    base, _ = edu_qa.load_local_model(cfg.model)
    reloaded = PeftModel.from_pretrained(base, str(adapter)).eval()
    model.eval()
    batch = tok(["<|im_start|>user\nWhat is DNA?<|im_end|>"], return_tensors="pt")
    with torch.no_grad():  # tune() unwrapped bf16's autocast: both compute in fp32 weights
        tuned = model(**batch).logits
        again = reloaded(**batch).logits
        assert torch.equal(tuned, again)
        with model.disable_adapter():  # and the adapter really changed the model
            assert not torch.equal(model(**batch).logits, tuned)


def test_guard_big_model_prints_plan_loads_no_weights_opens_no_socket(
        tmp_path, big_config_only, no_network, monkeypatch, capsys):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded without --execute")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    code = edu_qa.run_script(SCRIPT, ["--model", str(big_config_only),
                                  "--output-dir", str(tmp_path / "out"),
                                  "--results-dir", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0
    assert "Plan only" in out and "over the 500M free limit" in out
    assert "memory estimate" in out
    assert (f"To go ahead: python huggingface_lora.py --model {big_config_only} --output-dir "
            f"{tmp_path / 'out'} --results-dir {tmp_path / 'results'} --execute") in out
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()
    assert no_network == []


def test_guard_unknown_hub_model_opens_no_socket(tmp_path, no_network, capsys):
    code = edu_qa.run_script(SCRIPT, ["--model", "someone/not-in-the-cache-1B",
                                  "--results-dir", str(tmp_path / "results")])
    assert code == 0
    assert "--execute downloads it" in capsys.readouterr().out
    assert no_network == []


def test_execute_with_a_model_not_on_this_machine_downloads_it_instead_of_planning(
        tmp_path, capsys, monkeypatch):
    """--execute goes ahead: it asks the hub (offline here: a clear error, exit 2), it does not
    print the plan again and tell the user to add the --execute they already gave."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = edu_qa.run_script(SCRIPT, ["--model", "someone/not-in-the-cache-1B", "--execute",
                                  "--results-dir", str(tmp_path / "results")])
    captured = capsys.readouterr()
    assert code == 2
    assert "cannot load the tokenizer of --model 'someone/not-in-the-cache-1B'" in captured.err
    assert "Plan only" not in captured.out and "Traceback" not in captured.err
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_embedded_model_short_training_and_answers(tmp_path):
    """The real thing, small: 8 examples, 1 epoch, then before/after on the test split."""
    proc = subprocess.run(
        [sys.executable, "huggingface_lora.py", "--train-size", "8", "--epochs", "1",
         "--output-dir", str(tmp_path / "out"), "--results-dir", str(tmp_path / "results"),
         "--max-new-tokens", "24"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "results" / "huggingface_lora.json").read_text())
    assert res["dry_run"] is False and res["dataset"]["train_used"] == 8
    assert res["before"]["n"] == res["after"]["n"] == 152
    assert all(p["before"] and p["after"] for p in res["predictions"])
    assert sum(res["dataset"]["train_by_subject"].values()) == 8  # one per subject
    assert len(res["dataset"]["train_by_subject"]) == 8
    baseline = json.loads((tmp_path / "results" / "baseline.json").read_text())
    assert [p["answer"] for p in baseline["predictions"]] == \
        [p["before"] for p in res["predictions"]]
    assert res["artifact"]["bytes"] > 1_000_000
    assert "Step 6. Comparison" in proc.stdout
    # the kept model follows the rule: the best on dev by its answers, the base on a tie
    base, tuned = res["extra"]["epochs"]
    assert base["epoch"] == 0 and tuned["epoch"] == 1 and base["train_loss"] is None
    if (tuned["dev_accuracy"], tuned["dev_f1"]) > (base["dev_accuracy"], base["dev_f1"]):
        assert res["extra"]["kept"] == "epoch 1"
        assert res["extra"]["reload_check"] == {"checked": 3, "identical": 3}
    else:
        assert res["extra"]["kept"] == "base" and res["after"] == res["before"]
        assert "kept: the BASE model" in proc.stdout


@pytest.mark.parametrize("rows,kept", [
    ([(0.5, 0.2), (0.6, 0.1), (0.7, 0.1)], "epoch 2"),
    ([(0.5, 0.2), (0.5, 0.3), (0.4, 0.9)], "epoch 1"),   # accuracy first, then F1
    ([(0.5, 0.2), (0.5, 0.2), (0.4, 0.3)], "base"),      # a tie: training must earn its place
    ([(0.75, 0.2), (0.38, 0.35)], "base"),               # terser answers, fewer facts
])
def test_the_kept_model_is_never_worse_on_dev_than_the_base(rows, kept, capsys):
    judge = dev_judge.DevAnswers(None, [], max_new_tokens=8, batch_size=4)
    judge.rows = [{"epoch": i, "train_loss": None if i == 0 else 1.0, "dev_loss": 1.0,
                   "dev_accuracy": a, "dev_f1": f, "seconds": 1.0}
                  for i, (a, f) in enumerate(rows)]
    assert judge.choose(edu_qa.console()) == kept


@pytest.mark.slow
def test_two_process_data_parallel_writes_one_adapter(tmp_path, tiny_model):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_ip", "127.0.0.1", "--main_process_port", "29533",
         "huggingface_lora.py", "--model", str(tiny_model), "--train-size", "16",
         "--epochs", "1", "--batch-size", "4", "--output-dir", str(out),
         "--results-dir", str(tmp_path / "results"), "--max-new-tokens", "8",
         "--no-verify-reload"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    adapters = list(out.rglob("adapter_model.safetensors"))
    final = [a for a in adapters if "checkpoint-" not in str(a)]
    assert len(final) == 1, adapters
    assert proc.stdout.count("Step 6. Comparison") == 1  # one process reports


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_model, monkeypatch):
    from transformers import Trainer
    out = tmp_path / "out"
    tune(tiny_setup(tiny_model, out, epochs=1, judge_on_dev=False))
    assert (out / "checkpoint-4").is_dir()  # one checkpoint per epoch: 16 examples / 4

    steps = []
    real_step = Trainer.training_step
    monkeypatch.setattr(Trainer, "training_step",
                        lambda self, *a, **kw: steps.append(1) or real_step(self, *a, **kw))
    s = tiny_setup(tiny_model, out, epochs=2, resume=True, judge_on_dev=False)
    tune(s)
    assert s.run.results["extra"]["resumed"] is True
    assert s.run.results["extra"]["train_log"][-1]["step"] == 8
    assert len(steps) == 4  # only the second epoch ran


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_merge_writes_a_standalone_model_with_the_same_outputs(tmp_path, tiny_model, precision):
    import torch
    from transformers import AutoModelForCausalLM
    s = tiny_setup(tiny_model, tmp_path / "out", epochs=1, precision=precision,
                   judge_on_dev=False)
    tuned = tune(s)
    model, tok = s.model, s.tok
    merged_dir = training.merge(s.cfg.model, s.device, tuned.artifact, tmp_path, s.console)
    assert merged_dir == tmp_path / "merged"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    model.eval()
    batch = tok(["<|im_start|>user\nWhat is DNA?<|im_end|>"], return_tensors="pt")
    with torch.no_grad():  # trained in either precision, the weights are fp32: so are both
        assert torch.allclose(model(**batch).logits, merged(**batch).logits, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_qlora_trains_a_4bit_base_reloads_it_identically_and_merges_in_bf16(tmp_path,
                                                                            tiny_model,
                                                                            precision):
    """QLoRA for real: bitsandbytes holds the base in 4-bit NF4 (its CPU backend here; the same
    code runs on CUDA), only the adapter trains, the saved adapter on a fresh 4-bit base gives
    the same logits, and --merge reloads the base in bf16 instead of merging into 4-bit."""
    import bitsandbytes as bnb
    import torch
    from peft import PeftModel
    s = tiny_setup(tiny_model, tmp_path / "out", epochs=4, quantization="4bit", execute=True,
                   precision=precision, judge_on_dev=False)
    model, tok, cfg, device = s.model, s.tok, s.cfg, s.device
    up = model.get_base_model().model.layers[0].mlp.up_proj.base_layer
    assert isinstance(up, bnb.nn.Linear4bit)
    assert up.weight.quant_state.quant_type == "nf4" and up.weight.quant_state.nested
    tuned = tune(s)
    losses = train_losses(s)
    assert losses[-1] < losses[0], losses

    base, _ = edu_qa.load_local_model(cfg.model, dtype=torch.float32,
                                      **training.quantization(device))
    reloaded = PeftModel.from_pretrained(base, str(tuned.artifact)).eval()
    model.eval()
    batch = tok(["<|im_start|>user\nWhat is DNA?<|im_end|>"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        again = reloaded(**batch).logits.float()
    if precision == "fp32" and not edu_qa.cpu_has_native_bf16():
        assert torch.equal(logits, again)
    else:  # bf16 compute, or bitsandbytes' bf16 CPU kernel where the CPU has native bf16:
        # the two agree within bf16's relative step (2^-8)
        assert (logits - again).abs().max() <= 2 * 2 ** -8 * logits.abs().max()
    merged_dir = training.merge(cfg.model, device, tuned.artifact, tmp_path, s.console)
    assert merged_dir == tmp_path / "merged"
    config = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"


def test_guard_4bit_without_execute_prints_the_plan(tmp_path, tiny_model, capsys):
    code = edu_qa.run_script(SCRIPT, ["--model", str(tiny_model), "--quantization", "4bit",
                                  "--output-dir", str(tmp_path / "out"),
                                  "--results-dir", str(tmp_path / "results")])
    assert code == 0
    assert "needs --execute: 4-bit loading (QLoRA, bitsandbytes)" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_embedded_model_loads_in_4bit(embedded_tokenizer):
    """transformers cannot quantize while reading GGUF; the converted folder it can."""
    import bitsandbytes as bnb
    import torch
    device = training.Device(device="cpu", precision="fp32", quantization="4bit")
    model, tok = edu_qa.load_local_model(edu_qa.EMBEDDED_MODEL, dtype=torch.float32,
                                         **training.quantization(device))
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    assert model.name_or_path == str(edu_qa.embedded_model_folder())
    answers, _ = edu_qa.generate(model, tok, [edu_qa.chat_messages("What is 2 + 2?")], 12)
    assert "4" in answers[0] or "four" in answers[0].lower(), answers


@pytest.mark.slow
def test_qlora_benchmark_runs_the_scripts_recipe_on_a_model_shape(tmp_path):
    """benchmarks/qlora.py is what a session with a GPU runs; here its tiny shape on the CPU
    checks the path end to end: 4-bit base, the script's LoRA, Trainer, the figures."""
    out = tmp_path / "qlora.md"
    proc = subprocess.run(
        [sys.executable, "benchmarks/qlora.py", "--shape", "tiny", "--steps", "2",
         "--batch-size", "2", "--seq-len", "32", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert "QLoRA 4-bit NF4 base, LoRA r=16 all-linear" in table
    tokens_per_s = float(table.split("| training | ")[1].split(" tokens/s")[0].replace(",", ""))
    assert tokens_per_s > 0
    assert "| MFU (4 x linear weights FLOPs/token) |" in table


def test_cpu_training_benchmark_times_each_change_of_the_recipe(tmp_path, tiny_model):
    """benchmarks/cpu_training.py: a row per variant, the old recipe first at 1.00x, the recipe
    fifth, and the bf16 rows either measured or saying why not (a CPU without bf16
    instructions)."""
    out = tmp_path / "cpu_training.md"
    proc = subprocess.run(
        [sys.executable, "benchmarks/cpu_training.py", "--model", str(tiny_model), "--steps",
         "1", "--profile", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 11
    assert rows[0].startswith("| fp32, LoRA dropout 0.05, SDPA, logits at every position (the "
                              "recipe until 2026-12-01) |")
    assert rows[4].startswith("| the recipe: and the frozen layers through oneDNN (since "
                              "2026-12-02) |")
    assert "| 1.00x |" in rows[0] and "aten::" in rows[0]
    for row in rows[1:]:
        assert "not run: no bf16 instructions" in row or float(row.split(" | ")[1]) > 0, row


@pytest.mark.slow
def test_qlora_benchmark_changes_one_setting_at_a_time(tmp_path):
    """Each option of benchmarks/qlora.py undoes or adds one of the recipe's choices, and the
    run's line in --jsonl names exactly what changed (what gpu_check.sh's table shows)."""
    import json
    lines = tmp_path / "variants.jsonl"
    for extra in ([], ["--lengths", "varied", "--packing", "flatten", "--no-nan-check"]):
        proc = subprocess.run(
            [sys.executable, "benchmarks/qlora.py", "--shape", "tiny", "--steps", "2",
             "--batch-size", "2", "--seq-len", "32", "--quantization", "none",
             "--base-cache", str(tmp_path / "base"), "--jsonl", str(lines), *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    chosen, changed = [json.loads(line) for line in lines.read_text().splitlines()]
    assert chosen["changed"] == [] and chosen["settings"]["nan_filter"] is True  # a CPU
    assert changed["changed"] == ["packing flatten", "NaN check off"]
    assert changed["settings"]["padding_free"] and not changed["settings"]["nan_filter"]
    assert chosen["tokens_per_s"] > 0 and changed["tokens_per_s"] > 0


def test_the_script_the_service_and_the_benchmark_share_one_recipe():
    """edu_qa/recipe.py holds the LoRA settings: the script's defaults are its values, and
    neither the service nor the benchmarks import a teaching script (nor copy the values)."""
    from edu_qa.recipe import LORA
    defaults = lora.Config()
    assert {k: getattr(defaults, k) for k in ("lora_r", "lora_alpha", "lora_dropout",
                                               "target_modules", "epochs", "learning_rate",
                                               "batch_size", "max_length")} == \
        {k: v for k, v in LORA.as_dict().items() if hasattr(defaults, k)}
    teaching = ("huggingface_lora", "dspy_example", "openai_finetune")
    for path in [*(ROOT / "edu_qa").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
                 ROOT / "finetune_service.py", ROOT / "report.py", ROOT / "seeds.py",
                 ROOT / "data_needs.py"]:
        text = path.read_text()
        for name in teaching:
            assert f"import {name}" not in text and f"from {name} " not in text, (path, name)


def test_auto_precision_is_fp32_on_every_cpu_so_the_readme_results_repeat(monkeypatch):
    """A CPU with AMX multiplies bf16 3.6x faster than fp32, and `auto` used to pick bf16 there:
    a new user's LoRA run then kept 92 of the README's 152 answers. auto is fp32 on any CPU,
    with its reason on the device line; bf16 stays one flag away."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for execute in (False, True):
        device = training.choose_device(execute, "auto", "auto")
        assert (device.device, device.precision, device.quantization) == ("cpu", "fp32", "none")
        assert "README's results are fp32" in device.precision_why
    assert training.choose_device(False, "bf16", "auto").precision == "bf16"


@pytest.mark.slow
def test_ctrl_c_during_training_exits_130_with_how_to_resume(tmp_path, tiny_model):
    """Ctrl-C at any moment of training: exit status 130, one line saying where the finished
    epochs are and how to go on, no traceback."""
    import signal
    import time
    proc = subprocess.Popen(
        [sys.executable, "huggingface_lora.py", "--model", str(tiny_model), "--train-size", "16",
         "--epochs", "200", "--batch-size", "4", "--output-dir", str(tmp_path / "out"),
         "--results-dir", str(tmp_path / "results")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not list((tmp_path / "out").glob("checkpoint-*")) and time.monotonic() < deadline:
        time.sleep(0.5)  # interrupt once an epoch is saved, in the middle of training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Interrupted." in err and "--resume" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()  # nothing half-written


def test_a_progress_bar_on_a_terminal_none_in_a_log_or_notebook(monkeypatch):
    """edu_qa.console() sets TQDM_DISABLE when stdout is not a terminal; Trainer's bar follows
    it, so a rendered notebook holds no empty progress widget."""
    from edu_qa import training

    class FakeTrainer:
        def __init__(self):
            self.added = []

        def remove_callback(self, callback):
            pass

        def add_callback(self, callback):
            self.added.append(callback)
    for value, bars in (("1", 0), ("0", 1)):
        monkeypatch.setenv("TQDM_DISABLE", value)
        trainer = FakeTrainer()
        training.quiet_trainer(trainer, show_progress=True)
        assert len(trainer.added) == bars
