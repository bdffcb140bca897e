"""Fixtures shared by the tests: the project on sys.path, a tiny model, a socket blocker."""

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a script in a subprocess or a notebook kernel, accelerate, QLoRA or "
                   "GGUF parsing; the README's test command runs them, -m 'not slow' skips them")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection (other than 127.0.0.1) fails the test."""
    attempts = []
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "localhost", "::1"):
            attempts.append(address)
            raise AssertionError(f"network connection attempted: {address}")
        return real_connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1", None):
            attempts.append(host)
            raise AssertionError(f"DNS lookup attempted: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts


@pytest.fixture(scope="session")
def embedded_tokenizer():
    import edu_qa
    return edu_qa.load_tokenizer(edu_qa.EMBEDDED_MODEL)


def save_llama(folder: Path, tok, *, hidden: int, layers: int, heads: int, inter: int,
               weights: bool) -> Path:
    """A randomly initialised llama-shaped model (no download) with the embedded tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=inter,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    folder.mkdir(parents=True, exist_ok=True)
    if weights:
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, embedded_tokenizer):
    return save_llama(tmp_path_factory.mktemp("tiny-llama"), embedded_tokenizer, hidden=64,
                      layers=2, heads=4, inter=128, weights=True)


@pytest.fixture(scope="session")
def big_config_only(tmp_path_factory, embedded_tokenizer):
    """The config (no weights) of a ~1.2B llama-shaped model: enough for the guard."""
    return save_llama(tmp_path_factory.mktemp("big-llama"), embedded_tokenizer, hidden=2048,
                      layers=20, heads=32, inter=5632, weights=False)
