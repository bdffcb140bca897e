"""/v1/models: the models a key may call (the base models, and its own ft: models and
checkpoints), one of them, and deleting one of its own. /v1/chat/completions: an answer
from any of them, greedy, batched with the other requests that arrive meanwhile."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter
from openai.types import Model, ModelDeleted
from openai.types.chat import ChatCompletion

from .bodies import ChatRequest, body_as
from .store import APIError, new_id, now
from .web import Caller, Parts, listing

models_router = APIRouter(prefix="/v1/models")
chat_router = APIRouter(prefix="/v1/chat/completions")


def model_object(model: dict) -> dict:
    return Model(id=model["id"], object="model", created=0, owned_by=model["owned_by"]) \
        .model_dump(mode="json", exclude_none=True)


@models_router.get("")
def list_models(who: Caller, service: Parts):
    return listing([model_object(m) for m in service.models.visible(who)])


@models_router.get("/{model_id:path}")
def get_model(model_id: str, who: Caller, service: Parts):
    return model_object(service.models.find(model_id, who))


@models_router.delete("/{model_id:path}")
def delete_model(model_id: str, who: Caller, service: Parts):
    service.models.delete(model_id, who)
    return ModelDeleted(id=model_id, object="model", deleted=True).model_dump(mode="json")


@chat_router.post("")
async def chat(who: Caller, service: Parts, body: Annotated[ChatRequest, body_as(ChatRequest)]):
    gen = service.models.generator(body.model, who)
    conversation = [{"role": m.role, "content": m.content} for m in body.messages]
    cap = body.cap
    # bounded before it is queued: a prompt longer than the model can read would be cut, and
    # would hold every request batched with it for minutes
    prompt, context = await asyncio.to_thread(service.models.prompt_tokens, body.model, who,
                                              conversation)
    if prompt + cap > context:
        raise APIError(400, f"This model's maximum context length is {context} tokens. However, "
                       f"you requested {prompt + cap} tokens ({prompt} in the messages, {cap} "
                       "in the completion). Please reduce the length of the messages or "
                       "completion.", code="context_length_exceeded", param="messages")
    reply = await asyncio.wrap_future(gen.submit(conversation, cap, tuple(body.stop)))
    return ChatCompletion(
        id=new_id("chatcmpl"), object="chat.completion", created=now(), model=body.model,
        choices=[{"index": 0, "logprobs": None,
                  "finish_reason": "length" if reply["output_tokens"] >= cap else "stop",
                  "message": {"role": "assistant", "content": reply["text"],
                              "refusal": None}}],
        usage={"prompt_tokens": reply["input_tokens"],
               "completion_tokens": reply["output_tokens"],
               "total_tokens": reply["input_tokens"] + reply["output_tokens"]},
    ).model_dump(mode="json", exclude_unset=True)
