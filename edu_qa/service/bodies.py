"""The JSON bodies the service accepts, as pydantic models: a chat completion's and a
fine-tuning job's. Anything else is refused with 400 in OpenAI's error shape, naming the
first problem in the order of the fields below, with a message that says what is served.

Each field carries its refusal (refused(message, param)): pydantic checks the type and range,
and whatever is wrong with the value is answered with that message. Where a field says
falsy_as, JSON's falsy values (null, false, 0, "", [], {}) mean "not given". Fields not listed
are ignored (temperature among them: answers are greedy)."""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from fastapi import Depends, Request
from pydantic import (BaseModel, BeforeValidator, Field, Strict, StrictInt, StrictStr,
                      ValidationError, WrapValidator, model_validator)
from pydantic_core import PydanticCustomError

from .store import APIError

REFUSED = "openai_error"  # the pydantic error type of a refusal (its context: the param)
Body = TypeVar("Body", bound=BaseModel)


def refused(message: str, param: str) -> WrapValidator:
    """Any problem with the value is answered with message, for param; a problem that an inner
    field already answers keeps its own message."""
    def check(value, handler):
        try:
            return handler(value)
        except ValidationError as err:
            first = err.errors()[0]
            if first["type"] == REFUSED:
                raise PydanticCustomError(REFUSED, first["msg"], first["ctx"]) from None
            raise PydanticCustomError(REFUSED, message, {"param": param}) from None
    return WrapValidator(check)


def falsy_as(default) -> BeforeValidator:
    return BeforeValidator(lambda value: value or default)


def without(body: dict, field: str) -> dict:
    return {k: v for k, v in body.items() if k != field}


def whole(value):
    """A whole number written with a point is that integer: 2.0 is 2."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def setting(name: str, low: float, high: float, integer: bool):
    """A hyperparameter: 'auto', or a number from low to high (for integer settings, a whole
    number). The range also turns away NaN and infinity, which Python's JSON reads."""
    number = Annotated[StrictInt, Field(ge=low, le=high), BeforeValidator(whole)] if integer \
        else Annotated[float, Strict(), Field(ge=low, le=high)]
    return Annotated[Literal["auto"] | number, refused(
        f"hyperparameters.{name} must be 'auto' or a number from {low:g} to {high:g}",
        f"hyperparameters.{name}")]


# ---- POST /v1/chat/completions ------------------------------------------------------------

class Message(BaseModel):
    role: StrictStr
    content: StrictStr  # text only: no content parts, no null content of a tool call


Tokens = Annotated[Annotated[StrictInt, Field(ge=1, le=2048)] | None, falsy_as(None),
                   refused("max_completion_tokens must be from 1 to 2048",
                           "max_completion_tokens")]
Stop = Annotated[StrictStr, Field(min_length=1)]


class ChatRequest(BaseModel):
    messages: Annotated[list[Message], Field(min_length=1, validate_default=True), refused(
        "messages must be a non-empty list of {role, content} with text content",
        "messages")] = None
    model: Annotated[StrictStr, Field(validate_default=True), refused(
        "model must be the id of a model (GET /v1/models)", "model")] = None
    # only a falsy stream: answers come whole
    stream: Annotated[None, falsy_as(None), refused(
        "streaming is not served here; send stream=false", "stream")] = None
    n: Annotated[Literal[1], refused("only n=1 is served here", "n")] = 1
    max_completion_tokens: Tokens = None
    max_tokens: Tokens = None  # the older name of max_completion_tokens
    # one string or a list of up to 4: a reply ends before the first it would contain
    stop: Annotated[list[Stop], Field(max_length=4, validate_default=True),
                    BeforeValidator(lambda v: [v] if isinstance(v, str) else v or []),
                    refused("stop must be a non-empty string or a list of at most 4 of them",
                            "stop")] = None

    @model_validator(mode="before")
    @classmethod
    def one_name(cls, body: dict) -> dict:
        """max_tokens, the older name, is read only where max_completion_tokens is not."""
        return without(body, "max_tokens") if body.get("max_completion_tokens") else body

    @property
    def cap(self) -> int:
        """The most tokens a reply may have."""
        return self.max_completion_tokens or self.max_tokens or 256


# ---- POST /v1/fine_tuning/jobs ------------------------------------------------------------

Epochs = setting("n_epochs", 1, 50, integer=True)
BatchSize = setting("batch_size", 1, 256, integer=True)
Multiplier = setting("learning_rate_multiplier", 1e-3, 100, integer=False)


class Hyperparameters(BaseModel):
    n_epochs: Epochs = "auto"
    batch_size: BatchSize = "auto"
    learning_rate_multiplier: Multiplier = "auto"


def an_object(model: type[BaseModel], param: str):
    """model, from a JSON object; a falsy value: not given."""
    return Annotated[model | None, falsy_as(None), refused(f"{param} must be an object",
                                                           param)]


HyperparametersObject = an_object(Hyperparameters, "hyperparameters")


class Supervised(BaseModel):
    hyperparameters: HyperparametersObject = None


SupervisedObject = an_object(Supervised, "method.supervised")


class Method(BaseModel):
    type: Annotated[Literal["supervised"], Field(validate_default=True),
                    refused("only the supervised method is served here", "method")] = None
    supervised: SupervisedObject = None


MethodObject = an_object(Method, "method")


class JobRequest(BaseModel):
    """A job's settings. Its model and files are not here: the route looks them up first
    (Models.stand_in, routes_jobs.files_of), so that an unknown one is named first."""
    method: MethodObject = None  # not given: supervised
    hyperparameters: HyperparametersObject = None  # the older place for them
    suffix: Annotated[Annotated[StrictStr, Field(max_length=64, pattern=r"^[^:]*$")] | None,
                      refused("suffix must be a string of at most 64 characters, no ':'",
                              "suffix")] = None
    seed: Annotated[Annotated[StrictInt, Field(ge=0, lt=2**31)] | None, refused(
        "seed must be an integer from 0 to 2147483647", "seed")] = None
    metadata: Annotated[Annotated[dict[StrictStr, StrictStr], Field(max_length=16)] | None,
                        refused("metadata: at most 16 string keys and values",
                                "metadata")] = None

    @model_validator(mode="before")
    @classmethod
    def one_place(cls, body: dict) -> dict:
        """The hyperparameters in method.supervised, where given, leave the older place
        unread."""
        method = body.get("method")
        supervised = method.get("supervised") if isinstance(method, dict) else None
        given = isinstance(supervised, dict) and supervised.get("hyperparameters")
        return without(body, "hyperparameters") if given else body

    def hyper(self) -> Hyperparameters:
        """The hyperparameters asked for: in method.supervised, else in the older place."""
        supervised = self.method.supervised if self.method else None
        return (supervised and supervised.hyperparameters) or self.hyperparameters or \
            Hyperparameters()


# ---- reading a body -----------------------------------------------------------------------

async def json_object(request: Request) -> dict:
    """The body as a JSON object, whatever its Content-Type says (curl -d sends JSON as a
    form); an oversized body is refused by BodyLimit while it is read."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise APIError(400, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object")
    return body


def body_as(model: type[Body]):
    """A route's dependency: the JSON body as model, or 400 with the first problem."""
    async def read(body: Annotated[dict, Depends(json_object)]) -> Body:
        return checked(model, body)
    return Depends(read)


def checked(model: type[Body], body: dict) -> Body:
    """body as model, or 400 in OpenAI's shape with the first problem."""
    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
    if first["type"] == REFUSED:
        raise APIError(400, first["msg"], param=first["ctx"]["param"])
    where = ".".join(str(part) for part in first["loc"]) or None  # not refused: unforeseen
    raise APIError(400, f"{where or 'request'}: {first['msg']}", param=where)
