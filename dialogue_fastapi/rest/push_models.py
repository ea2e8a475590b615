"""Bodies and answers of the push routes (``/push/...``: registrations, preferences), for OpenAPI.

``POST /push/subscriptions`` takes one of three bodies, told apart by
``kind``. A browser's ``PushSubscription.toJSON()`` is accepted as the
``webpush`` body once ``kind`` is added (its ``expirationTime`` is ignored).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.rules import ROOM_ID_PATTERN
from ..push.preferences import MAX_MUTED_ROOMS

RoomIds = Annotated[list[Annotated[str, Field(max_length=1024)]], Field(
    default_factory=list, max_length=50,
    description="rooms to be notified of besides those the user is a member of; each must list "
    "'webpush' in its channels and be visible to the user")]


class WebPushKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p256dh: str = Field(max_length=200, description="the browser's P-256 public key (base64url)")
    auth: str = Field(max_length=64, description="the 16-byte auth secret (base64url)")


class WebPushRegistration(BaseModel):
    """A browser's Web Push subscription."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["webpush"]
    endpoint: str = Field(max_length=2048, description="the push service URL (https)")
    keys: WebPushKeys
    expirationTime: int | float | None = Field(default=None, description="ignored")
    rooms: RoomIds


class FcmRegistration(BaseModel):
    """A Firebase Cloud Messaging registration token (Android, iOS or web through FCM)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["fcm"]
    token: str = Field(max_length=4096)
    rooms: RoomIds


class ApnsRegistration(BaseModel):
    """An Apple device token."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["apns"]
    token: str = Field(max_length=200, description="the device token (hex)")
    topic: str | None = Field(default=None, max_length=255,
                              description="the app's bundle id; default: the server's")
    sandbox: bool = Field(default=False, description="a development build (APNs sandbox)")
    rooms: RoomIds


PushRegistrationBody = Annotated[
    WebPushRegistration | FcmRegistration | ApnsRegistration, Field(discriminator="kind")]


class RegistrationId(BaseModel):
    id: str


class RegistrationInfo(BaseModel):
    id: str
    kind: Literal["webpush", "fcm", "apns"]
    target: str = Field(description="the endpoint, or the token shortened")
    rooms: list[str]
    created_at: float = Field(description="seconds since the epoch")
    last_success_at: float | None = None
    failures: int = Field(description="consecutive failed sends")


class RegistrationList(BaseModel):
    subscriptions: list[RegistrationInfo]


class VapidKey(BaseModel):
    public_key: str = Field(description="the application server key for pushManager.subscribe "
                            "(base64url, uncompressed P-256 point)")


#: OpenAPI examples of POST /push/subscriptions, one per kind
REGISTRATION_EXAMPLES = {
    "webpush": {"summary": "a browser (PushSubscription.toJSON() plus kind)", "value": {
        "kind": "webpush", "endpoint": "https://updates.push.services.mozilla.com/wpush/v2/gAAAA...",
        "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1Xbjh"
                           "azAkj7I99e8QcYP7DkM",
                 "auth": "tBHItJI5svbpez7KI4CCXg"}, "rooms": ["design"]}},
    "fcm": {"summary": "an Android app through FCM", "value": {
        "kind": "fcm", "token": "dQw4w9WgXcQ:APA91bH...", "rooms": []}},
    "apns": {"summary": "an iOS app (development build)", "value": {
        "kind": "apns", "token": "a" * 64, "topic": "com.example.chat", "sandbox": True}},
}


HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class QuietHoursBody(BaseModel):
    """A daily window without notifications; ``start`` after ``end`` crosses midnight."""

    model_config = ConfigDict(extra="forbid")
    start: str = Field(pattern=HH_MM, description="HH:MM, local time in tz")
    end: str = Field(pattern=HH_MM, description="HH:MM, local time in tz (not equal to start)")
    tz: str = Field(min_length=1, max_length=64,
                    description="an IANA time zone this server knows, e.g. Europe/Paris")


class PushPreferencesBody(BaseModel):
    """The caller's push preferences (``PUT`` replaces them all)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Europe/Paris"},
         "muted_rooms": ["random", "dm:alice:bob"]}]})
    quiet_hours: QuietHoursBody | None = Field(
        default=None, description="notifications due inside the window are held until it ends, "
        "then collapse into one per room and device; null: none")
    muted_rooms: list[Annotated[str, Field(min_length=1, max_length=1024,
                                           pattern=ROOM_ID_PATTERN.pattern)]] = Field(
        default_factory=list, max_length=MAX_MUTED_ROOMS,
        description="room ids that never notify this user (they need not exist)")


class PushPreferencesInfo(PushPreferencesBody):
    """The caller's push preferences as stored."""

    updated_at: float | None = Field(description="seconds since the epoch; null: never set")


#: OpenAPI examples of PUT /push/preferences
PREFERENCES_EXAMPLES = {
    "night": {"summary": "quiet from 22:00 to 07:00 in Paris, two rooms muted", "value": {
        "quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Europe/Paris"},
        "muted_rooms": ["random", "dm:alice:bob"]}},
    "none": {"summary": "no quiet hours, nothing muted", "value": {
        "quiet_hours": None, "muted_rooms": []}},
}
