// The room list: several refetches can be in flight at once (each membership event
// asks for one), and their answers can come back out of order.

import { afterEach, describe, expect, it, vi } from "vitest";

import { type RoomSummary, api } from "../src/lib/api";
import { loadRooms, rooms } from "../src/lib/state";

const room = (room_id: string): RoomSummary => ({
  room_id,
  name: null,
  is_direct: false,
  encrypted: false,
  members: [],
  invited: [],
  last_message: null,
  unread: 0,
});

type Answer = { rooms: RoomSummary[]; invites: [] };

/** `api.rooms` answering each call only when the test says so. */
function heldAnswers(): ((answer: Answer) => void)[] {
  const held: ((answer: Answer) => void)[] = [];
  vi.spyOn(api, "rooms").mockImplementation(() => new Promise<Answer>((answer) => held.push(answer)));
  return held;
}

afterEach(() => vi.restoreAllMocks());

describe("the room list", () => {
  it("keeps a newer list when an older answer comes back after it", async () => {
    const held = heldAnswers();
    const older = loadRooms();
    const newer = loadRooms();
    held[1]({ rooms: [room("!a:x"), room("!new:x")], invites: [] });
    await newer;
    held[0]({ rooms: [room("!a:x")], invites: [] });
    await older;
    expect(rooms.value.map((r) => r.room_id)).toEqual(["!a:x", "!new:x"]);
  });

  it("shows an older answer that comes back first, then the newer one", async () => {
    const held = heldAnswers();
    const older = loadRooms();
    const newer = loadRooms();
    held[0]({ rooms: [room("!b:x")], invites: [] });
    await older;
    expect(rooms.value.map((r) => r.room_id)).toEqual(["!b:x"]);
    held[1]({ rooms: [room("!b:x"), room("!c:x")], invites: [] });
    await newer;
    expect(rooms.value.map((r) => r.room_id)).toEqual(["!b:x", "!c:x"]);
  });
});
