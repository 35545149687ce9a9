// The live stream: events handed on, the browser's own reconnects left alone, and a
// stream the server ended opened again with a refetch.

import { describe, expect, it } from "vitest";

import { LiveStream, type Source, type StreamStatus } from "../src/lib/stream";

class FakeSource implements Source {
  readyState = 0;
  onopen: ((e: Event) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;
  closed = false;
  private listeners = new Map<string, ((e: MessageEvent) => void)[]>();
  addEventListener(type: string, listener: (e: MessageEvent) => void) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  close() {
    this.closed = true;
    this.readyState = 2;
  }
  open() {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }
  emit(type: string, data: string) {
    for (const l of this.listeners.get(type) ?? []) l(new MessageEvent(type, { data }));
  }
  fail(closed: boolean) {
    this.readyState = closed ? 2 : 0;
    this.onerror?.(new Event("error"));
  }
}

function setup(sessionStands = true) {
  const sources: FakeSource[] = [];
  const log: string[] = [];
  const timers: (() => void)[] = [];
  const stream = new LiveStream(
    {
      event: (kind, data) => log.push(`${kind} ${JSON.stringify(data)}`),
      reset: () => log.push("reset"),
      status: (s: StreamStatus) => log.push(`status ${s}`),
      refused: async () => sessionStands,
    },
    () => {
      const s = new FakeSource();
      sources.push(s);
      return s;
    },
    (fn) => {
      timers.push(fn);
      return 0 as unknown as ReturnType<typeof setTimeout>;
    },
  );
  return { stream, sources, log, timers };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe("the live stream", () => {
  it("hands on each kind of event", () => {
    const { stream, sources, log } = setup();
    stream.open();
    sources[0].open();
    sources[0].emit("message", '{"event_id":"$1"}');
    sources[0].emit("typing", '{"room_id":"!r","user_ids":[]}');
    sources[0].emit("message", "not json");
    expect(log).toEqual([
      "status connecting",
      "status live",
      'message {"event_id":"$1"}',
      'typing {"room_id":"!r","user_ids":[]}',
    ]);
  });

  it("leaves the browser's own reconnect (with Last-Event-ID) alone", () => {
    const { stream, sources, log } = setup();
    stream.open();
    sources[0].open();
    sources[0].fail(false);
    sources[0].open();
    expect(sources).toHaveLength(1);
    expect(log.slice(-2)).toEqual(["status reconnecting", "status live"]);
    expect(log).not.toContain("reset");
  });

  it("passes on a reset", () => {
    const { stream, sources, log } = setup();
    stream.open();
    sources[0].emit("reset", "{}");
    expect(log).toContain("reset");
  });

  it("opens a stream the server ended again, then refetches", async () => {
    const { stream, sources, log, timers } = setup();
    stream.open();
    sources[0].open();
    sources[0].fail(true);
    await settle();
    expect(log.at(-1)).toBe("status offline");
    expect(timers).toHaveLength(1);
    timers[0]();
    expect(sources).toHaveLength(2);
    sources[1].open();
    expect(log.slice(-3)).toEqual(["status reconnecting", "status live", "reset"]);
  });

  it("stays closed when the session is gone", async () => {
    const { stream, sources, timers } = setup(false);
    stream.open();
    sources[0].fail(true);
    await settle();
    expect(timers).toHaveLength(0);
    stream.close();
    expect(sources[0].closed).toBe(true);
  });
});
