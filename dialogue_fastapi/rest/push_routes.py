"""REST routes of push registration and preferences (``/push/...``): adapters over
``usecases.push``.

Mounted only when ``push=`` is configured. Every route authenticates like the
other REST routes and counts in the ``RateLimit(http={"push": ...})`` budget
(each route its own budget).
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response

from ..runtime import Runtime
from ..usecases import Caller, PushRegistrationRequest, UseCases
from .errors import error_responses, route_class
from .push_models import (
    PREFERENCES_EXAMPLES,
    REGISTRATION_EXAMPLES,
    PushPreferencesBody,
    PushPreferencesInfo,
    PushRegistrationBody,
    RegistrationId,
    RegistrationList,
    VapidKey,
    WebPushRegistration,
)

Limited = Callable[[str], Callable[[Callable[..., Any]], Callable[..., Any]]]


def build_push_routes(rt: Runtime, uc: UseCases, caller: Callable[..., Any],
                      limited: Limited) -> APIRouter:
    """``caller`` is the REST routes' dependency that authenticates and gives the Caller."""
    router = APIRouter(route_class=route_class(rt.config.max_message_size), tags=["push"])
    User = Annotated[Caller, Depends(caller)]

    @router.get("/push/vapid-public-key", response_model=VapidKey,
                responses=error_responses(400, 401, 429))
    @limited("push")
    async def vapid_public_key(user: User, request: Request, response: Response) -> dict[str, Any]:
        """The application server key for ``pushManager.subscribe({applicationServerKey})``."""
        return {"public_key": uc.push.vapid_public_key()}

    @router.post("/push/subscriptions", status_code=201, response_model=RegistrationId,
                 responses={200: {"model": RegistrationId,
                                  "description": "the endpoint or token was registered already: "
                                  "updated (keys, rooms, owner)"},
                            **error_responses(400, 401, 403, 404, 429)})
    @limited("push")
    async def register(
        user: User, request: Request, response: Response,
        body: Annotated[PushRegistrationBody, Body(openapi_examples=REGISTRATION_EXAMPLES)],
    ) -> dict[str, Any]:
        """Register a device of the caller: 201 when new, 200 when it updated one."""
        registration, created = await uc.push.register(user, _request(body))
        if not created:
            response.status_code = 200
        return {"id": registration.id}

    @router.get("/push/subscriptions", response_model=RegistrationList,
                responses=error_responses(400, 401, 429))
    @limited("push")
    async def registrations(user: User, request: Request, response: Response) -> dict[str, Any]:
        """The caller's own registrations (never the keys; tokens shortened)."""
        return {"subscriptions": [r.to_dict() for r in await uc.push.registrations(user)]}

    @router.delete("/push/subscriptions/{registration_id}", status_code=204,
                   responses=error_responses(400, 401, 404, 429))
    @limited("push")
    async def unregister(user: User, registration_id: str, request: Request,
                         response: Response) -> Response:
        """Delete one of the caller's registrations (another user's is ``NOT_FOUND``)."""
        await uc.push.unregister(user, registration_id)
        return Response(status_code=204)

    @router.get("/push/preferences", response_model=PushPreferencesInfo,
                responses=error_responses(400, 401, 429))
    @limited("push")
    async def preferences(user: User, request: Request, response: Response) -> dict[str, Any]:
        """The caller's quiet hours and muted rooms."""
        return (await uc.push.preferences(user)).to_dict()

    @router.put("/push/preferences", response_model=PushPreferencesInfo,
                responses=error_responses(400, 401, 429))
    @limited("push")
    async def set_preferences(
        user: User, request: Request, response: Response,
        body: Annotated[PushPreferencesBody, Body(openapi_examples=PREFERENCES_EXAMPLES)],
    ) -> dict[str, Any]:
        """Replace the caller's quiet hours and muted rooms (a muted room never notifies them;
        a notification due in quiet hours is held until they end)."""
        quiet = body.quiet_hours.model_dump() if body.quiet_hours is not None else None
        return (await uc.push.set_preferences(user, quiet, body.muted_rooms)).to_dict()

    return router


def _request(body: Any) -> PushRegistrationRequest:
    if isinstance(body, WebPushRegistration):
        return PushRegistrationRequest("webpush", body.endpoint, body.keys.model_dump(), body.rooms)
    keys = {"topic": body.topic, "sandbox": body.sandbox} if body.kind == "apns" else {}
    return PushRegistrationRequest(body.kind, body.token, keys, body.rooms)

