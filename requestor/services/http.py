"""The one HTTP client: an aiohttp session per command, bounded, with explicit
timeouts, a body-size cap and no redirects.

Discovery and providers are servers we do not control, so every call has a
deadline, every answer is read with a cap, and failures come back as
``TransportError`` for the caller to name the peer.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from requestor.errors import NetworkError

MAX_BODY_BYTES = 4 * 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Timeouts:
    """Per call kind; ``total`` bounds a whole request including reading the body."""

    connect: float = 5.0
    read: float = 15.0
    total: float = 30.0

    def capped(self, seconds: float | None) -> Timeouts:
        if seconds is None:
            return self
        return Timeouts(
            connect=min(self.connect, seconds),
            read=min(self.read, seconds),
            total=min(self.total, seconds),
        )

    def client_timeout(self) -> aiohttp.ClientTimeout:
        # No "connect" limit: in aiohttp it includes waiting for a pooled
        # connection, which would fail healthy-but-busy providers; the socket
        # connect itself is bounded by sock_connect, the whole call by total.
        return aiohttp.ClientTimeout(
            total=self.total, connect=None, sock_connect=self.connect, sock_read=self.read
        )


PROBE = Timeouts(connect=2.0, read=3.0, total=4.0)
QUICK = Timeouts(connect=5.0, read=10.0, total=15.0)
# Creating a VM can take a provider a while (image download, cloud-init).
SLOW = Timeouts(connect=5.0, read=120.0, total=150.0)


class TransportError(NetworkError):
    """No usable HTTP answer: refused, timed out, cut off, too big, not JSON."""

    code = NetworkError.code

    def __init__(self, reason: str, *, refused: bool = False, protocol: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # True when the request never reached the server (safe to retry anything).
        self.refused = refused
        # True when the server answered, but with something unusable.
        self.protocol = protocol


@dataclass(frozen=True)
class Response:
    status: int
    data: Any  # decoded JSON; None for an empty body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def detail(self) -> str:
        """FastAPI's error text: ``{"detail": "..."}`` or a 422 list of messages."""
        detail = self.data.get("detail") if isinstance(self.data, dict) else self.data
        if isinstance(detail, list):
            return "; ".join(_validation_message(item) for item in detail[:10])
        if isinstance(detail, dict):
            return _short(detail.get("message") or detail.get("code") or detail)
        return "" if detail is None else _short(detail)


def _short(value: object, limit: int = 500) -> str:
    """Untrusted JSON as bounded text (a deep structure must not blow up)."""
    if isinstance(value, str):
        return value[:limit]
    try:
        return json.dumps(value)[:limit]
    except (TypeError, ValueError, RecursionError):
        return type(value).__name__


def _validation_message(item: object) -> str:
    """One entry of FastAPI's 422 list, ``{"loc": [...], "msg": "..."}``, or anything."""
    if not isinstance(item, dict):
        return _short(item, 200)
    loc = item.get("loc")
    parts = loc if isinstance(loc, list) else []
    where = ".".join(_short(p, 40) for p in parts[:8] if p != "body")
    message = _short(item.get("msg", ""), 200)
    return f"{where}: {message}" if where else message


class HttpClient:
    """``async with HttpClient() as http``: one pooled session for the whole command."""

    def __init__(
        self,
        *,
        limit: int = 100,
        limit_per_host: int = 10,
        max_body_bytes: int = MAX_BODY_BYTES,
        timeout_cap: float | None = None,
    ) -> None:
        """``timeout_cap`` bounds every call (a user's ``--timeout``)."""
        self._limit = limit
        self._timeout_cap = timeout_cap
        self._limit_per_host = limit_per_host
        self.max_body_bytes = max_body_bytes
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpClient:
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=self._limit_per_host,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=QUICK.client_timeout(),
            headers={"User-Agent": "golem-vm-requestor"},
            trust_env=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        timeouts: Timeouts = QUICK,
        retries: int = 0,
    ) -> Response:
        """One request; ``retries`` only for calls that are safe to repeat."""
        attempt = 0
        while True:
            try:
                response = await self._once(method, url, json_body, params, timeouts)
            except TransportError as error:
                if attempt >= retries or not error.refused:
                    raise
            else:
                if response.status < 500 or attempt >= retries:
                    return response
            attempt += 1
            await asyncio.sleep(min(2.0, 0.2 * 2**attempt) * (0.5 + random.random()))

    async def _once(
        self,
        method: str,
        url: str,
        json_body: Any,
        params: dict[str, str] | None,
        timeouts: Timeouts,
    ) -> Response:
        assert self._session is not None, "HttpClient used outside 'async with'"
        timeouts = timeouts.capped(self._timeout_cap)
        try:
            async with self._session.request(
                method,
                url,
                json=json_body,
                params=params,
                allow_redirects=False,
                timeout=timeouts.client_timeout(),
            ) as response:
                body = await self._read_capped(response)
                status = response.status
        except TransportError:
            raise
        except aiohttp.ClientConnectorError as error:
            raise TransportError(f"connection failed ({_reason(error)})", refused=True) from None
        except aiohttp.ConnectionTimeoutError:
            raise TransportError(
                f"no connection within {timeouts.connect:g} s", refused=True
            ) from None
        except aiohttp.SocketTimeoutError:
            raise TransportError(f"no answer within {timeouts.read:g} s") from None
        except TimeoutError:
            raise TransportError(f"no complete answer within {timeouts.total:g} s") from None
        except aiohttp.ServerDisconnectedError:
            raise TransportError("the server closed the connection") from None
        except aiohttp.ClientPayloadError as error:
            raise TransportError(f"the answer was cut off ({error})") from None
        except aiohttp.ClientError as error:
            raise TransportError(f"HTTP error ({type(error).__name__}: {error})") from None
        if 300 <= status < 400:
            raise TransportError(f"unexpected redirect (HTTP {status})", protocol=True)
        if not body.strip():
            return Response(status, None)
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            if status >= 400:
                return Response(status, {"detail": body[:300].decode("utf-8", "replace")})
            raise TransportError(f"the answer is not JSON (HTTP {status})", protocol=True) from None
        return Response(status, data)

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        declared = response.content_length
        if declared is not None and declared > self.max_body_bytes:
            raise TransportError(
                f"the answer is too large ({declared} bytes, limit {self.max_body_bytes})",
                protocol=True,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > self.max_body_bytes:
                raise TransportError(
                    f"the answer is too large (over {self.max_body_bytes} bytes)", protocol=True
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _reason(error: aiohttp.ClientConnectorError) -> str:
    os_error = error.os_error
    if os_error is not None and os_error.errno:
        import os

        return os.strerror(os_error.errno).lower()
    return str(os_error or error)
