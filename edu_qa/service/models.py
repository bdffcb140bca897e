"""The models a key may call: the base models, and its own ft: models and checkpoints; and
OpenAI's model names, which train a local stand-in. A chat model is loaded on first use and
answers in batches (edu_qa.BatchedGenerator), greedy whatever temperature is asked for: the
lesson compares models, not samples."""

from __future__ import annotations

import shutil
import threading

import edu_qa
from edu_qa.recipe import EMBEDDED_ID

from .store import APIError, Store, base_of

BASE_MODELS = {EMBEDDED_ID: edu_qa.EMBEDDED_MODEL}  # model id -> what load_local_model reads
# OpenAI's fine-tunable model names (and their dated versions, NAME-2024-07-18): accepted by
# jobs.create and trained on a local stand-in, so code written for OpenAI runs unchanged
OPENAI_MODELS = ("gpt-3.5-turbo", "gpt-4o-mini", "gpt-4o", "gpt-4.1")
LOADED_MODELS = 3  # chat models kept in memory at once (base + tuned + a checkpoint)
# transformers imports its parts on first use, and two threads doing so at once can fail
# ("cannot import name 'AutoConfig'", seen with a class's first requests): the service's
# threads load tokenizers and models one at a time
LOADING = threading.Lock()


def stand_ins(base_models: dict[str, str], serve_as: dict[str, str] | None) -> dict[str, str]:
    """OpenAI's model name -> the base model that trains for it: the first base model, unless
    serve_as (--serve-as NAME=BASE) says otherwise."""
    chosen = {name: next(iter(base_models)) for name in OPENAI_MODELS} | (serve_as or {})
    unknown = sorted({base for base in chosen.values() if base not in base_models})
    if unknown:
        raise edu_qa.UserError(f"--serve-as: {', '.join(unknown)} is not a base model here; "
                               f"the base models are: {', '.join(base_models)}")
    return chosen


class Models:
    def __init__(self, store: Store, base_models: dict[str, str], serving: dict[str, str]):
        self.store, self.base_models, self.serving = store, base_models, serving
        self.loaded: dict[str, edu_qa.BatchedGenerator] = {}
        self.tokenizers: dict[str, tuple] = {}  # base -> (tokenizer, context length)
        self.lock = threading.Lock()

    def stand_in(self, model) -> str:
        """The base model that trains for a requested model: itself, or its stand-in (the
        longest name of serve_as that is the model or the start of a dated version)."""
        if isinstance(model, str) and model in self.base_models:
            return model
        names = [name for name in self.serving if isinstance(model, str)
                 and (model == name or model.startswith(f"{name}-"))]
        if not names:
            raise APIError(400, f"Model {model!r} is not available for fine-tuning here; "
                           f"this service fine-tunes: {', '.join(self.base_models)} (and, on "
                           f"them, {', '.join(self.serving)})", code="model_not_available",
                           param="model")
        return self.serving[max(names, key=len)]

    def visible(self, owner: str) -> list[dict]:
        """(id, owner label, adapter folder or None, base, job record or None) of every model
        this key may call: the base models, and its own ft: models and checkpoints that it
        has not deleted."""
        found = [{"id": name, "owned_by": "system", "adapter": None, "base": name,
                  "record": None} for name in self.base_models]
        with self.store.lock:
            for record in self.store.jobs.values():
                job = record["object"]
                if record["owner"] != owner or job["status"] != "succeeded":
                    continue
                tuned = [(job["fine_tuned_model"], record["adapter"])] + [
                    (cp["fine_tuned_model_checkpoint"], cp["folder"])
                    for cp in record["checkpoints"]]
                found += [{"id": model_id, "owned_by": job["organization_id"],
                           "adapter": adapter, "base": base_of(record), "record": record}
                          for model_id, adapter in tuned
                          if model_id not in record.get("deleted_models", ())]
        return found

    def find(self, model_id: str, owner: str) -> dict:
        model = next((m for m in self.visible(owner) if m["id"] == model_id), None)
        if model is None:
            raise APIError(404, f"The model `{model_id}` does not exist or you do not have "
                           "access to it.", code="model_not_found", param="model")
        return model

    def delete(self, model_id: str, owner: str) -> None:
        """An ft: model or checkpoint of this key's: its adapter is removed from disk and
        from memory; the job that made it keeps its record."""
        model = self.find(model_id, owner)
        record = model["record"]
        if record is None:
            raise APIError(403, f"{model_id} is a base model of this service; only your own "
                           "fine-tuned models can be deleted", code="model_not_deletable",
                           param="model")
        with self.store.lock:
            record.setdefault("deleted_models", []).append(model_id)
            self.store.save("jobs", record)
        with self.lock:
            if model_id in self.loaded:
                self.loaded.pop(model_id).close()
        shutil.rmtree(model["adapter"], ignore_errors=True)

    def generator(self, model_id: str, owner: str) -> edu_qa.BatchedGenerator:
        model = self.find(model_id, owner)
        with self.lock:
            if model_id not in self.loaded:
                if len(self.loaded) >= LOADED_MODELS:
                    self.loaded.pop(next(iter(self.loaded))).close()
                self.loaded[model_id] = edu_qa.BatchedGenerator(
                    lambda: load_chat_model(self.base_models[model["base"]], model["adapter"]),
                    max_batch=160)  # a whole split at once: the scripts send 152
            return self.loaded[model_id]


    def prompt_tokens(self, model_id: str, owner: str, conversation: list[dict]) -> tuple:
        """(tokens of the conversation in the model's chat template, the model's context
        length): what a request must fit in before it is queued."""
        base = self.base_models[self.find(model_id, owner)["base"]]
        with self.lock:
            if base not in self.tokenizers:
                with LOADING:
                    from transformers import AutoConfig
                    config = AutoConfig.from_pretrained(edu_qa.model_source(base),
                                                        local_files_only=True)
                    self.tokenizers[base] = (edu_qa.load_tokenizer(base),
                                             getattr(config, "max_position_embeddings", 2048))
            tok, context = self.tokenizers[base]
        try:
            ids = tok.apply_chat_template(conversation, tokenize=True,
                                          add_generation_prompt=True, return_dict=False)
        except Exception as err:  # the template's own refusal (jinja), said, not a 500
            raise APIError(400, f"the messages cannot be put in {model_id}'s chat template: "
                           f"{type(err).__name__}: {err}", param="messages") from None
        return len(ids), context


def load_chat_model(source: str, adapter: str | None):
    with LOADING:
        model, tok = edu_qa.load_local_model(source)
        if adapter:
            # imported on the first chat with a tuned model, not at the service's start: peft
            # brings torch and transformers (seconds)
            from peft import PeftModel
            model = PeftModel.from_pretrained(model, adapter)
    return model.eval(), tok
