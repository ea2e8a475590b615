"""Turning the application's ``authenticate`` into a FastAPI dependency.

``authenticate`` may be a plain callable taking the HTTP connection, or a
FastAPI dependency with its own parameters (headers, cookies, ``Depends``).
Either way it becomes a dependency that never raises: it returns an
:class:`AuthResult`, so the WebSocket route can accept and then close with
4001, and REST routes can answer 401 with the protocol's error body.
"""

from __future__ import annotations

import inspect
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from starlette.requests import HTTPConnection

from ..core.errors import Reject
from ..core.hooks import call_maybe_async
from ..core.types import Identity

logger = logging.getLogger("dialogue_fastapi")


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The identity, or why there is none."""

    identity: Identity | None
    reason: str = ""


def _takes_connection_only(fn: Callable[..., Any]) -> bool:
    params = list(inspect.signature(fn, eval_str=True).parameters.values())
    if len(params) != 1:
        return False
    annotation = params[0].annotation
    return annotation is inspect.Parameter.empty or (
        inspect.isclass(annotation) and issubclass(annotation, HTTPConnection)
    )


def _as_identity(value: Any) -> Identity | None:
    if value is None or isinstance(value, Identity):
        return value
    if isinstance(value, str):
        return Identity(value)
    raise TypeError(f"authenticate must return an Identity, a user id or None, not {value!r}")


def build_auth_dependency(
    authenticate: Callable[..., Any] | None, allow_anonymous: bool
) -> Callable[..., Any]:
    """A dependency returning :class:`AuthResult` for both WebSocket and REST routes."""

    def anonymous(reason: str) -> AuthResult:
        if allow_anonymous:
            return AuthResult(Identity("anon_" + secrets.token_hex(4), {"anonymous": True}))
        return AuthResult(None, reason)

    async def checked(call: Callable[[], Any]) -> AuthResult:
        try:
            identity = _as_identity(await call_maybe_async(call))
        except Reject as exc:
            return AuthResult(None, exc.reason)
        except HTTPException as exc:
            return AuthResult(None, str(exc.detail))
        except Exception:
            logger.exception("authenticate failed")
            return AuthResult(None, "authentication failed")
        if identity is None:
            return anonymous("missing or invalid credentials")
        return AuthResult(identity)

    if authenticate is None:
        async def no_auth(conn: HTTPConnection) -> AuthResult:
            return anonymous("this server has no authenticate hook and allows no anonymous "
                             "connections (configure authenticate= or allow_anonymous=True)")
        return no_auth

    user_fn = authenticate
    if _takes_connection_only(user_fn):
        async def plain(conn: HTTPConnection) -> AuthResult:
            return await checked(lambda: user_fn(conn))
        return plain

    signature = inspect.signature(user_fn, eval_str=True)
    required = [
        name for name, param in signature.parameters.items()
        if param.default is inspect.Parameter.empty and not _is_injected(param.annotation)
    ]

    async def dependency(**kwargs: Any) -> AuthResult:
        missing = [name for name in required if kwargs.get(name) is None]
        if missing:
            return anonymous(f"missing credentials: {', '.join(missing)}")
        return await checked(lambda: user_fn(**kwargs))

    # FastAPI reads the user's parameters (Depends, Header, Cookie...) from this
    # signature. Required ones become optional so that a missing header is our
    # refusal (4001 / 401), not FastAPI's validation error (HTTP 403 / 400).
    dependency.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            param.replace(default=None) if name in required else param
            for name, param in signature.parameters.items()
        ]
    )
    return dependency


def _is_injected(annotation: Any) -> bool:
    """Parameters FastAPI fills itself (the connection, request, websocket)."""
    return inspect.isclass(annotation) and issubclass(annotation, HTTPConnection)
