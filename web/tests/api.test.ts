// The API client: Matrix errors as they come, and failures said plainly.

import { describe, expect, it } from "vitest";

import { ApiError, call } from "../src/lib/api";

const answer = (status: number, body: string) => async () => new Response(body, { status });

/** The ApiError a call fails with. */
async function failure(call: Promise<unknown>): Promise<ApiError> {
  try {
    await call;
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    return error as ApiError;
  }
  throw new Error("the call did not fail");
}

describe("the API client", () => {
  it("returns the JSON body", async () => {
    const fetcher = (async (url: string, init: RequestInit) => {
      expect(url).toBe("/api/v1/rooms");
      expect(init.credentials).toBe("same-origin");
      return new Response('{"rooms":[],"invites":[]}');
    }) as unknown as typeof fetch;
    expect(await call("GET", "/rooms", undefined, fetcher)).toEqual({ rooms: [], invites: [] });
  });

  it("sends JSON bodies as JSON", async () => {
    const fetcher = (async (_url: string, init: RequestInit) => {
      expect((init.headers as Record<string, string>)["Content-Type"]).toBe("application/json");
      expect(init.body).toBe('{"body":"hi"}');
      return new Response('{"event_id":"$e"}');
    }) as unknown as typeof fetch;
    expect(await call("PUT", "/rooms/x/send/t", { body: "hi" }, fetcher)).toEqual({ event_id: "$e" });
  });

  it("keeps the daemon's errcode and message", async () => {
    const fetcher = answer(403, '{"errcode":"M_FORBIDDEN","error":"you are not in room !r"}');
    const error = await failure(call("GET", "/rooms/!r/messages", undefined, fetcher as never));
    expect([error.status, error.errcode, error.message]).toEqual([403, "M_FORBIDDEN", "you are not in room !r"]);
    expect(error.sessionEnded).toBe(false);
  });

  it("knows an ended session", async () => {
    const fetcher = answer(401, '{"errcode":"M_UNKNOWN_TOKEN","error":"unknown or expired session token"}');
    const error = await failure(call("GET", "/me", undefined, fetcher as never));
    expect(error.sessionEnded).toBe(true);
  });

  it("says when the server cannot be reached", async () => {
    const fetcher = async () => {
      throw new TypeError("Failed to fetch");
    };
    const error = await failure(call("GET", "/me", undefined, fetcher as never));
    expect([error.status, error.errcode]).toEqual([0, "NETWORK"]);
    expect(error.message).toMatch(/cannot be reached/);
  });

  it("says what a proxy's error page means", async () => {
    const error = await failure(call("GET", "/me", undefined, answer(502, "<html>Bad gateway</html>") as never));
    expect([error.status, error.errcode]).toEqual([502, "M_UNKNOWN"]);
    expect(error.message).toBe("The ChatSender server is having trouble (502).");
  });
});
