"""What the devnet's aiohttp apps share to look like the FastAPI services they stand in for."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def iso(moment: datetime) -> str:
    """A naive-UTC timestamp with microseconds, as the deployed services write them."""
    return moment.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.%f")


def now_iso() -> str:
    return iso(datetime.now(UTC))


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )


def detail(message: Any, status: int) -> web.Response:
    return json_response({"detail": message}, status)


def validation_error(items: Sequence[dict[str, Any]]) -> web.Response:
    """FastAPI's 422: ``{"detail": [{"type", "loc", "msg", "input"}, ...]}``."""
    return detail(list(items), 422)


def pydantic_errors(error: ValidationError, prefix: str) -> list[dict[str, Any]]:
    # ctx can hold exception objects, which are not JSON; FastAPI drops it to
    # strings in the same way.
    items = []
    for item in error.errors(include_url=False, include_context=False):
        items.append(
            {
                "type": item["type"],
                "loc": [prefix, *item["loc"]],
                "msg": item["msg"],
                "input": _jsonable(item.get("input")),
            }
        )
    return items


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


async def parse_body(request: web.Request, model: type[M]) -> M | web.Response:
    """The validated body, or the 422 answer FastAPI would give instead."""
    raw = await request.read()
    try:
        data = json.loads(raw)
    except ValueError as error:
        return validation_error(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", 0],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": str(error)},
                }
            ]
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        return validation_error(pydantic_errors(error, "body"))


@web.middleware
async def fastapi_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and methods answer as FastAPI does, with a JSON detail."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:
        return detail("Method Not Allowed", 405)
    except web.HTTPNotFound:
        return detail("Not Found", 404)
