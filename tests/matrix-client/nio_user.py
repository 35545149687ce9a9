#!/usr/bin/env python3
"""An ordinary Matrix user, driven by matrix-nio (a standard client library), that a
test steers one command at a time.

    nio_user.py --homeserver URL --user-id ID --token TOKEN

Reads one JSON command per line on stdin and answers each with one JSON line on
stdout ({"error": "..."} when it failed or timed out after 30 s):

    {"cmd": "join", "room": R}                          waits for the invite, joins
    {"cmd": "send", "room": R, "body": B}               -> {"event_id": E}
    {"cmd": "typing", "room": R, "typing": true}        shows (or stops) typing
    {"cmd": "read", "room": R, "event_id": E}           moves its read receipt and marker
    {"cmd": "wait_message", "room": R, "body": B}       -> {"event_id": E}
    {"cmd": "wait_receipt", "room": R, "user": U, "event_id": E}
    {"cmd": "wait_typing", "room": R, "user": U}
"""

import argparse
import asyncio
import json
import sys

from nio import AsyncClient, JoinResponse, ReceiptEvent, RoomMessageText, RoomSendResponse, TypingNoticeEvent


class Steered:
    def __init__(self, client):
        self.client = client

    async def sync_until(self, what, found, timeout=30):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            response = await self.client.sync(timeout=1000)
            rooms = getattr(response, "rooms", None)
            if rooms is None:
                continue
            result = found(rooms)
            if result:
                return result
        raise TimeoutError(f"timed out waiting for {what}")

    def joined_events(self, rooms, room_id, kind):
        room = rooms.join.get(room_id)
        if room is None:
            return []
        events = room.ephemeral if kind == "ephemeral" else room.timeline.events
        return events

    async def join(self, room):
        await self.sync_until("the invite", lambda rooms: room in rooms.invite or room in rooms.join)
        joined = await self.client.join(room)
        if not isinstance(joined, JoinResponse):
            raise RuntimeError(f"join failed: {joined}")
        return {"ok": True}

    async def send(self, room, body):
        sent = await self.client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": body})
        if not isinstance(sent, RoomSendResponse):
            raise RuntimeError(f"send failed: {sent}")
        return {"event_id": sent.event_id}

    async def typing(self, room, typing):
        await self.client.room_typing(room, typing_state=typing, timeout=30_000)
        return {"ok": True}

    async def read(self, room, event_id):
        await self.client.room_read_markers(room, fully_read_event=event_id, read_event=event_id)
        return {"ok": True}

    async def wait_message(self, room, body):
        def found(rooms):
            for event in self.joined_events(rooms, room, "timeline"):
                if isinstance(event, RoomMessageText) and event.body == body:
                    return {"event_id": event.event_id}
            return None
        return await self.sync_until(f"message {body!r}", found)

    async def wait_receipt(self, room, user, event_id):
        def found(rooms):
            for event in self.joined_events(rooms, room, "ephemeral"):
                if isinstance(event, ReceiptEvent):
                    for receipt in event.receipts:
                        if receipt.user_id == user and receipt.event_id == event_id:
                            return {"ok": True}
            return None
        return await self.sync_until(f"{user}'s receipt", found)

    async def wait_typing(self, room, user):
        def found(rooms):
            for event in self.joined_events(rooms, room, "ephemeral"):
                if isinstance(event, TypingNoticeEvent) and user in event.users:
                    return {"ok": True}
            return None
        return await self.sync_until(f"{user} typing", found)


async def main(args):
    client = AsyncClient(args.homeserver, args.user_id)
    client.restore_login(args.user_id, "NIOTEST", args.token)
    steered = Steered(client)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            name = command.pop("cmd")
            try:
                answer = await getattr(steered, name)(**command)
            except Exception as error:  # noqa: BLE001 - every failure is reported to the test
                answer = {"error": f"{name}: {error}"}
            print(json.dumps(answer), flush=True)
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--homeserver", "--user-id", "--token"):
        parser.add_argument(name, required=True)
    asyncio.run(main(parser.parse_args()))
