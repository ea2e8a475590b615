"""The shortest end-to-end path: join, publish, receive, validation error."""

from pydantic import BaseModel

from dialogue_fastapi import Dialogue, RoomConfig, define_event


class Text(BaseModel):
    text: str


async def test_publish_reaches_other_member(serve, probe):
    message = define_event("message", Text, history=10)
    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat", events=[message])},
                        allow_anonymous=True)
    srv = await serve(dialogue, prefix="/d")
    a = await probe(srv.ws_url("/d/ws"))
    b = await probe(srv.ws_url("/d/ws"))
    assert a.hello["op"] == "hello" and a.hello["protocol"] == 1
    await a.request("join", room="chat")
    await b.request("join", room="chat")
    ack = await a.request("publish", room="chat", event="message", data={"text": "hi"})
    assert ack["seq"] == 1
    event = await b.next("event")
    assert event["data"] == {"text": "hi"} and event["seq"] == 1
    assert event["from"] == a.hello["user_id"]
    bad = await a.reply("publish", room="chat", event="message", data={"text": 3})
    assert bad["ok"] is False and bad["error"]["code"] == "VALIDATION_FAILED"
    assert bad["error"]["details"][0]["loc"] == ["text"]
