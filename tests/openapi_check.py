"""Check HTTP responses against OpenAI's published OpenAPI description (../shared), with
jsonschema: the spec is OpenAPI 3.1, whose schemas are JSON Schema 2020-12."""

import json
import re
from functools import lru_cache

from conftest import ROOT

SPEC = ROOT.parent / "shared" / "openai-openapi" / "openapi.yaml"


@lru_cache(maxsize=1)
def load():
    import yaml
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012
    spec = yaml.load(SPEC.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    modernize(spec)
    registry = Registry().with_resource("urn:openai", Resource(spec, DRAFT202012))
    routes = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
              for path in spec["paths"]]
    return spec, registry, routes, Draft202012Validator


def modernize(node) -> None:
    """The spec says 3.1 but writes a few bounds the 3.0 way ("minimum": 0,
    "exclusiveMinimum": true); JSON Schema 2020-12 reads that as "above 1". Rewrite them."""
    if isinstance(node, dict):
        for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(node.get(bound), bool):
                if node.pop(bound) and plain in node:
                    node[bound] = node.pop(plain)
        for value in node.values():
            modernize(value)
    elif isinstance(node, list):
        for value in node:
            modernize(value)


def problems(method: str, path: str, status: int, body) -> list[str]:
    """What in this response breaks the spec (an empty list: nothing)."""
    spec, registry, routes, validator_cls = load()
    path = path.removeprefix("/v1")
    matches = [p for rx, p in routes if rx.match(path)]
    if not matches:
        return [f"{method} {path}: not a path of OpenAI's API"]
    template = min(matches, key=lambda p: p.count("{"))  # /jobs/x/cancel before /jobs/{id}
    operation = spec["paths"][template].get(method.lower())
    if operation is None:
        return [f"{method} {template}: not an operation of OpenAI's API"]
    if status >= 400:
        ref = "urn:openai#/components/schemas/ErrorResponse"
    else:
        response = operation["responses"].get(str(status))
        if response is None:
            return [f"{method} {template}: status {status} is not documented"]
        pointer = ["paths", template, method.lower(), "responses", str(status), "content",
                   "application/json", "schema"]
        ref = "urn:openai#/" + "/".join(p.replace("~", "~0").replace("/", "~1")
                                       for p in pointer)
    validator = validator_cls({"$ref": ref}, registry=registry)
    return [f"{method} {path} {status}: {e.json_path}: {e.message}"
            for e in validator.iter_errors(body)]


def hook(found: list):
    """An httpx response hook that records every response's problems in found."""
    def check(response):
        response.read()
        if "json" not in response.headers.get("content-type", ""):
            found.append(f"{response.request.url.path}: not JSON")
            return
        found.extend(problems(response.request.method, response.request.url.path,
                              response.status_code, json.loads(response.content)))
        found.append(None)  # one checked response
    return check
