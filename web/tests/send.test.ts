// Sending: pending at once, then sent or failed, a retry with the same transaction id.

import { describe, expect, it } from "vitest";

import { Outbox, newTxnId } from "../src/lib/send";

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe("the outbox", () => {
  it("shows a message as pending, then sent, then gone when it arrives", async () => {
    const answer = deferred<{ event_id: string }>();
    const calls: string[] = [];
    const outbox = new Outbox(
      (room, txn, body) => {
        calls.push(`${room} ${txn} ${body}`);
        return answer.promise;
      },
      () => {},
    );
    const item = outbox.send("!r", "hello");
    expect(outbox.forRoom("!r").map((i) => i.state)).toEqual(["pending"]);
    answer.resolve({ event_id: "$e" });
    await settle();
    expect(outbox.forRoom("!r")[0]).toMatchObject({ state: "sent", eventId: "$e" });
    outbox.arrivedEvent("$e");
    expect(outbox.forRoom("!r")).toEqual([]);
    expect(calls).toEqual([`!r ${item.txnId} hello`]);
  });

  it("retries a failed message with the same transaction id", async () => {
    let attempt = 0;
    const txns: string[] = [];
    const outbox = new Outbox(
      async (_room, txn) => {
        txns.push(txn);
        attempt += 1;
        if (attempt === 1) throw new Error("The ChatSender server cannot be reached.");
        return { event_id: "$e" };
      },
      () => {},
    );
    outbox.send("!r", "hello");
    await settle();
    expect(outbox.items[0]).toMatchObject({ state: "failed", error: "The ChatSender server cannot be reached." });
    outbox.retry(outbox.items[0].txnId);
    expect(outbox.items[0].state).toBe("pending");
    await settle();
    expect(outbox.items[0].state).toBe("sent");
    expect(txns[0]).toBe(txns[1]);
  });

  it("sends every failed message again when the connection is back, and only those", async () => {
    let up = false;
    const sent: string[] = [];
    const outbox = new Outbox(
      async (_room, txn, body) => {
        if (!up && body !== "through") throw new Error("The ChatSender server cannot be reached.");
        sent.push(`${body}/${txn}`);
        return { event_id: `$${body}` };
      },
      () => {},
    );
    const first = outbox.send("!r", "one");
    outbox.send("!r", "through");
    const third = outbox.send("!s", "three");
    await settle();
    expect(outbox.items.map((i) => i.state)).toEqual(["failed", "sent", "failed"]);
    up = true;
    outbox.retryAll();
    await settle();
    expect(outbox.items.map((i) => i.state)).toEqual(["sent", "sent", "sent"]);
    expect(sent).toEqual([`through/${outbox.items[1].txnId}`, `one/${first.txnId}`, `three/${third.txnId}`]);
  });

  it("drops the copy at once when the event came in first", async () => {
    const outbox = new Outbox(
      async () => ({ event_id: "$e" }),
      () => {},
      (id) => id === "$e",
    );
    outbox.send("!r", "hello");
    await settle();
    expect(outbox.items).toEqual([]);
  });

  it("discards a failed message on request, and only a failed one", async () => {
    const outbox = new Outbox(
      async () => {
        throw new Error("no");
      },
      () => {},
    );
    outbox.send("!r", "a");
    await settle();
    outbox.discard(outbox.items[0].txnId);
    expect(outbox.items).toEqual([]);
  });

  it("makes transaction ids the daemon accepts", () => {
    const ids = new Set(Array.from({ length: 100 }, newTxnId));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });
});
