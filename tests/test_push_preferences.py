"""Push preferences: quiet hours (held until the window ends, then collapsed) and muted rooms,
over REST (validated, the caller's own, in OpenAPI) and in dispatch against the fake Web Push
service, with the preference check's clock set to a chosen time of day."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
from test_push_dispatch import dispatcher, fake, make, register, settled, until

from dialogue_fastapi import Dialogue
from dialogue_fastapi.push.preferences import PreferenceGate, QuietHours

__all__ = ["fake"]  # the fixture, imported for the tests below
PARIS = ZoneInfo("Europe/Paris")


def at(hour: int, minute: int, second: float = 0.0, day: int = 15, month: int = 1) -> float:
    whole = int(second)
    return datetime(2025, month, day, hour, minute, whole,
                    int((second - whole) * 1_000_000), tzinfo=PARIS).timestamp()


def test_quiet_hours_across_midnight_end_tomorrow_morning() -> None:
    night = QuietHours("22:00", "07:00", "Europe/Paris")
    assert night.seconds_left(at(21, 59)) == 0
    assert night.seconds_left(at(22, 0)) == 9 * 3600
    assert night.seconds_left(at(23, 30)) == 7.5 * 3600
    assert night.seconds_left(at(6, 59, 30)) == 30
    assert night.seconds_left(at(7, 0)) == 0
    assert night.seconds_left(at(12, 0)) == 0
    lunch = QuietHours("12:00", "13:30", "Europe/Paris")
    assert lunch.seconds_left(at(12, 30)) == 3600 and lunch.seconds_left(at(13, 30)) == 0
    # the night the clocks go forward (30 March 2025, 02:00 -> 03:00): an hour shorter
    assert night.seconds_left(at(23, 0, day=29, month=3)) == 7 * 3600


def make_api() -> Dialogue:
    return make()


async def test_preferences_are_the_callers_own_and_validated(serve) -> None:
    srv = await serve(make_api())
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        fresh = await http.get("/push/preferences", headers=alice)
        assert fresh.status_code == 200
        assert fresh.json() == {"quiet_hours": None, "muted_rooms": [], "updated_at": None}
        wanted = {"quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Europe/Paris"},
                  "muted_rooms": ["design", "dm:alice:bob", "design"]}
        saved = await http.put("/push/preferences", json=wanted, headers=alice)
        assert saved.status_code == 200, saved.text
        assert saved.json()["muted_rooms"] == ["design", "dm:alice:bob"]
        assert saved.json()["quiet_hours"] == wanted["quiet_hours"]
        assert saved.json()["updated_at"] > 0
        assert (await http.get("/push/preferences", headers=alice)).json() == saved.json()
        # bob sees (and sets) only his own
        assert (await http.get("/push/preferences", headers=bob)).json()["muted_rooms"] == []
        await http.put("/push/preferences", json={"muted_rooms": ["plain"]}, headers=bob)
        assert (await http.get("/push/preferences", headers=alice)).json() == saved.json()
        assert (await http.get("/push/preferences")).status_code == 401
        assert (await http.put("/push/preferences", json={})).status_code == 401
        bad = [{"quiet_hours": {"start": "24:00", "end": "07:00", "tz": "Europe/Paris"}},
               {"quiet_hours": {"start": "7:00", "end": "08:00", "tz": "Europe/Paris"}},
               {"quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Mars/Olympus"}},
               {"quiet_hours": {"start": "22:00", "end": "07:00", "tz": "../../etc/passwd"}},
               {"quiet_hours": {"start": "22:00", "end": "22:00", "tz": "UTC"}},
               {"muted_rooms": ["has space"]},
               {"muted_rooms": [f"r{i}" for i in range(201)]},
               {"muted_rooms": [], "extra": 1}]
        for body in bad:
            refused = await http.put("/push/preferences", json=body, headers=alice)
            assert refused.status_code in (400, 422), (body, refused.text)
            assert refused.json()["error"]["code"] in ("BAD_REQUEST", "VALIDATION_ERROR"), body
        assert (await http.get("/push/preferences", headers=alice)).json() == saved.json()
        cleared = await http.put("/push/preferences", json={"quiet_hours": None,
                                                            "muted_rooms": []}, headers=alice)
        assert cleared.json()["quiet_hours"] is None and cleared.json()["muted_rooms"] == []
        spec = (await http.get("/openapi.json")).json()
    put = spec["paths"]["/push/preferences"]["put"]
    assert set(put["requestBody"]["content"]["application/json"]["examples"]) == {"night", "none"}
    assert "get" in spec["paths"]["/push/preferences"]
    body = spec["components"]["schemas"]["PushPreferencesBody"]
    assert body["properties"]["muted_rooms"]["maxItems"] == 200
    assert spec["components"]["schemas"]["QuietHoursBody"]["properties"]["start"]["pattern"]


async def test_a_muted_room_never_notifies_that_user(serve, fake) -> None:
    dialogue = make()
    await serve(dialogue)
    alice, bob = fake.subscribe(), fake.subscribe()
    await register(dialogue, "alice", alice, ["design"])
    await register(dialogue, "bob", bob, ["design"])
    assert dialogue.runtime.push is not None
    gate: PreferenceGate = dialogue.runtime.push.preferences
    from dialogue_fastapi.push.preferences import Preferences

    await gate.store.put(Preferences("alice", muted=("design",)))
    await dialogue.trigger("design", "message", {"text": "standup?"}, from_="carol")
    await until(lambda: fake.for_path(bob), what="bob's notification")
    await settled(dialogue)
    assert fake.for_path(alice) == [] and gate.muted == 1
    assert dispatcher(dialogue).stats()["muted"] == 1
    # another room still notifies her
    await dialogue.trigger("dm:alice:carol", "message", {"text": "psst"}, from_="carol")
    await until(lambda: fake.for_path(alice), what="alice's direct message")
    assert fake.for_path(alice)[0].payload["body"] == "carol: psst"


async def test_quiet_hours_hold_notifications_until_the_end_then_collapse(serve, fake) -> None:
    dialogue = make(grace=0.2)
    await serve(dialogue)
    alice, bob = fake.subscribe(), fake.subscribe()
    await register(dialogue, "alice", alice, ["design"])
    await register(dialogue, "bob", bob, ["design"])
    assert dialogue.runtime.push is not None
    gate: PreferenceGate = dialogue.runtime.push.preferences
    from dialogue_fastapi.push.preferences import Preferences

    await gate.store.put(Preferences("alice", QuietHours("22:00", "07:00", "Europe/Paris")))
    # alice's clock reads 06:59:57 in Paris now: her quiet hours end 3 s from now
    real = time.time()
    local = datetime.fromtimestamp(real, PARIS)
    fake_now = local.replace(hour=6, minute=59, second=57, microsecond=0).timestamp()
    gate.clock = lambda: time.time() - real + fake_now
    ends = real + 3.0
    await dialogue.trigger("design", "message", {"text": "first"}, from_="carol")
    await dialogue.trigger("design", "message", {"text": "second"}, from_="carol")
    # bob (no quiet hours) is notified after the grace period; alice's are held
    await until(lambda: fake.for_path(bob), what="bob's notification")
    await until(lambda: gate.held >= 1, what="alice's notifications to be held")
    assert fake.for_path(alice) == [] and time.time() < ends
    await until(lambda: fake.for_path(alice), timeout=10, what="alice's notification at 07:00")
    assert time.time() >= ends - 0.05
    await settled(dialogue)
    [got] = fake.for_path(alice)
    assert got.payload["title"] == "2 new messages in Design"
    assert got.payload["body"] == "carol: second"
    assert dispatcher(dialogue).stats()["held"] >= 1
