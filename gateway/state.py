"""What every handler shares: the backend and the model list, plus JSON in and out."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from .backend import Backend
from .errors import ApiError


@dataclass
class GatewayState:
    """The gateway's (stateless) context: where the engine is and which models it lists."""

    backend: Backend
    models: list[str]
    created: int

    @property
    def default_model(self) -> str:
        """Echoed when a request names no model."""
        return self.models[0]


def state(request: Request) -> GatewayState:
    """The gateway state of the app serving ``request``."""
    st: GatewayState = request.app.state.gateway
    return st


_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


async def read_json(request: Request) -> Any:
    """The decoded JSON body, or a 400 saying why it is not JSON (see ``parse_json``)."""
    return parse_json(await request.body())


def parse_json(raw: bytes) -> Any:
    """A request body decoded as JSON, or a 400 saying why it is not JSON.

    Strict: UTF-8 only, no ``NaN``/``Infinity``, and no string with an unpaired surrogate
    escape (``"\\ud800"``), which could not be passed on to the engine as text."""
    try:
        text = raw.decode("utf-8-sig")  # a leading BOM is tolerated, as json.loads(bytes) did
    except UnicodeDecodeError:
        raise ApiError(400, "The request body is not UTF-8 text; send JSON.", code="invalid_json") from None
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, "The JSON body is nested too deeply.", code="invalid_json") from None
    except ValueError as exc:
        raise ApiError(400, f"We could not parse the JSON body of your request ({exc}). The body must be a "
                       "JSON object; check its syntax and the Content-Type.", code="invalid_json") from None
    bad = _surrogate_at(body)
    if bad is not None:
        where = f"'{bad}'" if bad else "the body"
        raise ApiError(400, f"Invalid value for {where}: the string has an unpaired UTF-16 surrogate escape "
                       "(\\ud800-\\udfff); send valid Unicode text.", param=bad or None, code="invalid_json")
    return body


def _surrogate_at(value: Any) -> str | None:
    """The path (``input[0].content``) of the first string, or object key, holding a lone
    surrogate; ``None`` if there is none. Iterative: bodies may nest as deep as the parser allows."""
    todo: list[tuple[str, Any]] = [("", value)]
    while todo:
        path, v = todo.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                return path
        elif isinstance(v, list):
            todo.extend((f"{path}[{i}]", item) for i, item in enumerate(v))
        elif isinstance(v, dict):
            for k, item in v.items():
                key_path = f"{path}.{k}" if path else k
                if _SURROGATE.search(k):
                    return _SURROGATE.sub("?", key_path)
                todo.append((key_path, item))
    return None


def json_response(obj: BaseModel | dict[str, Any], status: int = 200, exclude_none: bool = True) -> Response:
    """A JSON response from an ``openai`` model (or a plain dict)."""
    if isinstance(obj, BaseModel):
        body = obj.model_dump_json(exclude_none=exclude_none)
    else:
        body = json.dumps(obj)
    return Response(body, status_code=status, media_type="application/json")
