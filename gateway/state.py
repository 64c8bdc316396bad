"""What every handler shares: the backend and the model list, plus JSON in and out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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


async def read_json(request: Request) -> Any:
    """The decoded JSON body, or a 400 saying why it is not JSON."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "The request body is not UTF-8 text; send JSON.", code="invalid_json") from None
    except ValueError as exc:
        raise ApiError(400, f"We could not parse the JSON body of your request ({exc}). The body must be a "
                       "JSON object; check its syntax and the Content-Type.", code="invalid_json") from None


def json_response(obj: BaseModel | dict[str, Any], status: int = 200, exclude_none: bool = True) -> Response:
    """A JSON response from an ``openai`` model (or a plain dict)."""
    if isinstance(obj, BaseModel):
        body = obj.model_dump_json(exclude_none=exclude_none)
    else:
        body = json.dumps(obj)
    return Response(body, status_code=status, media_type="application/json")
