#!/usr/bin/env python3
"""An ordinary Matrix user, driven by matrix-nio (a standard client library), for
ChatSender's integration tests.

    carol.py --homeserver URL --user-id ID --token TOKEN --room ROOM --expect TEXT --invite USER

Waits for the invite to ROOM, joins, waits until TEXT arrives from the room, replies
"hi from nio", sends an `m.room.encrypted` event (as a client that always encrypts
would), then creates a room of its own inviting USER. Prints one JSON line:
{"reply": event_id, "encrypted": event_id, "own_room": room_id}.
"""

import argparse
import asyncio
import json
import sys

from nio import AsyncClient, InviteMemberEvent, JoinResponse, RoomCreateResponse, RoomMessageText, RoomSendResponse


async def sync_until(client, what, found, timeout=30):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        response = await client.sync(timeout=1000)
        result = found(response)
        if result:
            return result
    sys.exit(f"timed out waiting for {what}")


def invited_to(room_id):
    def check(response):
        rooms = getattr(response, "rooms", None)
        return rooms is not None and room_id in rooms.invite
    return check


def message_in(room_id, text):
    def check(response):
        rooms = getattr(response, "rooms", None)
        room = rooms.join.get(room_id) if rooms else None
        if room is None:
            return None
        for event in room.timeline.events:
            if isinstance(event, RoomMessageText) and event.body == text:
                return event
        return None
    return check


async def main(args):
    client = AsyncClient(args.homeserver, args.user_id)
    client.restore_login(args.user_id, "NIOTEST", args.token)
    try:
        await sync_until(client, "the invite", invited_to(args.room))
        joined = await client.join(args.room)
        if not isinstance(joined, JoinResponse):
            sys.exit(f"join failed: {joined}")
        await sync_until(client, f"message {args.expect!r}", message_in(args.room, args.expect))
        reply = await client.room_send(args.room, "m.room.message", {"msgtype": "m.text", "body": "hi from nio"})
        encrypted = await client.room_send(
            args.room,
            "m.room.encrypted",
            {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg",
                "device_id": "NIOTEST",
                "sender_key": "IlRMeOPX2e0MurIyfWEucYBRVOEEUMrOHqn/8mLqMjA",
                "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
            },
        )
        for response in (reply, encrypted):
            if not isinstance(response, RoomSendResponse):
                sys.exit(f"send failed: {response}")
        own = await client.room_create(name="From nio", invite=[args.invite])
        if not isinstance(own, RoomCreateResponse):
            sys.exit(f"room creation failed: {own}")
        print(json.dumps({"reply": reply.event_id, "encrypted": encrypted.event_id, "own_room": own.room_id}))
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--homeserver", "--user-id", "--token", "--room", "--expect", "--invite"):
        parser.add_argument(name, required=True)
    asyncio.run(main(parser.parse_args()))
