"""Membership across real node processes: max_size, presence, users, runtime rooms.

Three uvicorn processes share the real Redis (one key prefix for this module).
"""

from __future__ import annotations

import asyncio
from typing import Any

from nodes import Cluster, NodeProcess, bearer, eventually

from dialogue_fastapi.testing import WsProbe

NODES = 3


def users_of(presence: dict[str, Any]) -> set[tuple[str, str]]:
    return {(u["user_id"], u["client_id"]) for u in presence["users"]}


def member(p: WsProbe) -> tuple[str, str]:
    return p.hello["user_id"], p.hello["client_id"]


async def presence_everywhere(cluster: Cluster, room: str, expected: set[tuple[str, str]]) -> None:
    """REST presence on every node lists exactly ``expected`` (waits for disconnects to land)."""
    for node in cluster.nodes:
        async def fetch(node: NodeProcess = node) -> dict[str, Any]:
            return await cluster.presence(node, room)

        await eventually(fetch, lambda p: users_of(p) == expected and p["count"] == len(expected),
                         what=f"presence of {room} on {node.name} == {sorted(expected)}")


async def test_max_size_holds_across_nodes_under_concurrent_joins(cluster: Cluster) -> None:
    room, limit, count = "capped", 5, 15
    where: list[NodeProcess] = [cluster.nodes[i % len(cluster.nodes)] for i in range(count)]
    clients = list(await asyncio.gather(*(cluster.probe(node, f"cap{i}") for i, node in enumerate(where))))
    replies = await asyncio.gather(*(c.reply("join", room=room) for c in clients))

    admitted = [i for i, r in enumerate(replies) if r["ok"]]
    refused = [i for i, r in enumerate(replies) if not r["ok"]]
    assert len(admitted) == limit, replies
    assert {replies[i]["error"]["code"] for i in refused} == {"ROOM_FULL"}, replies
    # the winners' replies tell a size within the limit
    assert all(1 <= replies[i]["result"]["room"]["size"] <= limit for i in admitted)
    await presence_everywhere(cluster, room, {member(clients[i]) for i in admitted})
    found = await clients[admitted[0]].request("presence", room=room)
    assert found["count"] == limit

    # one member leaves, another disconnects: two places free, on every node
    await clients[admitted[0]].request("leave", room=room)
    await clients[admitted[1]].close()
    staying = {member(clients[i]) for i in admitted[2:]}
    await presence_everywhere(cluster, room, staying)

    # two refused clients on two different nodes now get in; a third is still refused
    first = refused[0]
    second = next(i for i in refused if where[i] is not where[first])
    third = next(i for i in refused if i not in (first, second))
    await clients[first].request("join", room=room)
    await clients[second].request("join", room=room)
    late = await clients[third].reply("join", room=room)
    assert not late["ok"] and late["error"]["code"] == "ROOM_FULL"
    await presence_everywhere(cluster, room, staying | {member(clients[first]), member(clients[second])})


async def test_presence_and_users_across_nodes(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    room = "lobby"
    alice = await cluster.probe(a, "alice")
    bob = await cluster.probe(b, "bob")
    await alice.request("join", room=room)
    await bob.request("join", room=room)

    # the join notice of a member on B reaches the member on A
    notice = await alice.next("presence_join")
    assert notice == {"op": "presence_join", "room": room, "user_id": "bob",
                      "client_id": bob.hello["client_id"]}
    both = {member(alice), member(bob)}
    found = await alice.request("presence", room=room)  # the op on A lists the member on B
    assert users_of(found) == both and found["count"] == 2
    await presence_everywhere(cluster, room, both)  # REST on A, B and C

    # the user API on one node sees a user connected to another
    bob2 = await cluster.probe(c, "bob")  # a second connection of bob, on C, in no room
    bob_clients = sorted([bob.hello["client_id"], bob2.hello["client_id"]])
    got = await eventually(lambda: cluster.http.get(f"{a.http_url}/test/clients/bob"),
                           lambda r: r.json()["clients"] == bob_clients, what="get_clients(bob) on A")
    assert got.json()["clients"] == bob_clients
    in_room = await cluster.http.get(f"{c.http_url}/test/in_room/{room}/bob")
    assert in_room.json()["in_room"] is True

    # send_to_user on A reaches both of bob's connections (B and C), nobody else
    response = await cluster.http.post(f"{a.http_url}/test/send_to_user",
                                       json={"user": "bob", "event": "note", "data": {"x": 1}})
    assert response.status_code == 200, response.text
    for p in (bob, bob2):
        direct = await p.next("direct")
        assert (direct["event"], direct["data"], direct["from"]) == ("note", {"x": 1}, "server")
    assert await alice.nothing("direct")

    # bob leaves on B: the member on A is told, presence and is_in_room follow on every node
    await bob.request("leave", room=room)
    notice = await alice.next("presence_leave")
    assert notice == {"op": "presence_leave", "room": room, "user_id": "bob",
                      "client_id": bob.hello["client_id"]}
    await presence_everywhere(cluster, room, {member(alice)})
    in_room = await cluster.http.get(f"{a.http_url}/test/in_room/{room}/bob")
    assert in_room.json()["in_room"] is False

    # disconnect_user on A closes bob's connections on B and on C with 4004
    await bob.request("join", room=room)
    assert (await alice.next("presence_join"))["client_id"] == bob.hello["client_id"]
    response = await cluster.http.post(f"{a.http_url}/test/disconnect_user",
                                       json={"user": "bob", "reason": "bye"})
    assert response.status_code == 200, response.text
    for p in (bob, bob2):
        frame = await p.next("disconnect")
        assert (frame["code"], frame["reason"], frame["reconnect"]) == (4004, "bye", False)
        code, reason = await p.closed()
        assert code == 4004, (code, reason)
    # the disconnect took bob out of the room (notice to A) and out of the user index
    assert (await alice.next("presence_leave"))["client_id"] == bob.hello["client_id"]
    await eventually(lambda: cluster.http.get(f"{b.http_url}/test/clients/bob"),
                     lambda r: r.json()["clients"] == [], what="get_clients(bob) empty")
    await presence_everywhere(cluster, room, {member(alice)})
    assert await alice.nothing("disconnect")  # alice is not bob
    assert not alice.ws.close_code


async def test_runtime_rooms_are_created_and_deleted_on_every_node(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    room = "made-at-runtime"
    alice = await cluster.probe(a, "alice")
    bob = await cluster.probe(b, "bob")
    carol = await cluster.probe(c, "carol")

    # created on A by a client: every connection of every node is told
    info = await alice.request("create_room", room=room, name="Runtime")
    assert info["id"] == room and info["created_by"] == "alice"
    for p in (bob, carol):
        created = await p.next("room_created")
        assert created["room"]["id"] == room and created["room"]["created_by"] == "alice"
    listed = await bob.request("rooms")
    assert room in [r["id"] for r in listed["rooms"]]
    response = await cluster.http.get(f"{c.api_url}/rooms/{room}", headers=bearer("carol"))
    assert response.status_code == 200 and response.json()["created_by"] == "alice"

    # joining works on other nodes, and events flow
    await bob.request("join", room=room)
    await carol.request("join", room=room)
    await alice.request("join", room=room)
    ack = await alice.request("publish", room=room, event="m", data={"n": 1})
    assert ack["seq"] == 1
    assert (await bob.next("event"))["data"] == {"n": 1}
    assert (await carol.next("event"))["data"] == {"n": 1}
    old_epoch = (await bob.request("join", room=room))["position"]["epoch"]

    # deleted over REST on B by its creator: members on every node are told and removed
    response = await cluster.http.delete(f"{b.api_url}/rooms/{room}", headers=bearer("alice"))
    assert response.status_code == 204, response.text
    for p in (alice, bob, carol):
        assert (await p.next("room_deleted"))["room"] == room
    dave = await cluster.probe(c, "dave")
    refused = await dave.reply("join", room=room)
    assert not refused["ok"] and refused["error"]["code"] == "ROOM_NOT_FOUND"
    refused = await bob.reply("publish", room=room, event="m", data={"n": 2})
    assert not refused["ok"] and refused["error"]["code"] == "ROOM_NOT_FOUND"
    listed = await alice.request("rooms")
    assert room not in [r["id"] for r in listed["rooms"]]
    response = await cluster.http.get(f"{a.api_url}/rooms/{room}", headers=bearer("alice"))
    assert response.status_code == 404
    response = await cluster.http.get(f"{c.api_url}/rooms/{room}/presence", headers=bearer("carol"))
    assert response.status_code == 404

    # created again over REST on B: a new history (seq from 1, a new epoch) on every node
    response = await cluster.http.post(f"{b.api_url}/rooms", headers=bearer("bob"),
                                       json={"room": room, "name": "Again"})
    assert response.status_code == 201, response.text
    assert (await alice.next("room_created"))["room"]["name"] == "Again"
    joined = await alice.request("join", room=room)
    assert joined["position"]["seq"] == 0 and joined["position"]["epoch"] != old_epoch
    assert joined["room"]["size"] == 1  # nobody is left over from the deleted room
    await bob.request("join", room=room)
    ack = await bob.request("publish", room=room, event="m", data={"n": "again"})
    assert ack["seq"] == 1
    event = await alice.next("event")
    assert (event["seq"], event["data"]) == (1, {"n": "again"})
