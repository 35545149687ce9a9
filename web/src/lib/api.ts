// The daemon's JSON API (`/api/v1`), on the session cookie: the JavaScript never sees
// an access token.

/** A failed call: the daemon's Matrix error, or `NETWORK` when it could not be reached. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string,
    message: string,
  ) {
    super(message);
  }

  /** The session is gone (ended, expired, or its key revoked). */
  get sessionEnded(): boolean {
    return this.status === 401 && (this.errcode === "M_UNKNOWN_TOKEN" || this.errcode === "M_MISSING_TOKEN");
  }
}

export type Fetch = typeof fetch;

/** Calls `path` under `/api/v1`; answers the JSON body, or throws an ApiError. */
export async function call<T>(
  method: string,
  path: string,
  body?: unknown,
  fetcher: Fetch = globalThis.fetch,
): Promise<T> {
  let response: Response;
  try {
    response = await fetcher(`/api/v1${path}`, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "NETWORK", "The ChatSender server cannot be reached. Check your connection.");
  }
  const text = await response.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = undefined;
  }
  if (!response.ok) {
    const error = json as { errcode?: string; error?: string } | undefined;
    if (error?.errcode) throw new ApiError(response.status, error.errcode, error.error ?? error.errcode);
    const what = response.status >= 500 ? "is having trouble" : "answered unexpectedly";
    throw new ApiError(response.status, "M_UNKNOWN", `The ChatSender server ${what} (${response.status}).`);
  }
  if (json === undefined) throw new ApiError(response.status, "M_NOT_JSON", "The server's answer was not JSON.");
  return json as T;
}

const enc = encodeURIComponent;

export interface Profile {
  user_id: string;
  display_name: string | null;
}
export interface Me extends Profile {
  key_id: string;
}
export type MessageKind = "text" | "notice" | "emote" | "encrypted" | "other";
export interface Message {
  event_id: string;
  room_id: string;
  sender: string;
  sender_name: string | null;
  body: string;
  ts: number;
  kind: MessageKind;
}
export interface Member extends Profile {
  read_event_id: string | null;
}
export interface RoomSummary {
  room_id: string;
  name: string | null;
  is_direct: boolean;
  encrypted: boolean;
  members: Member[];
  /** Invited and not yet joined. */
  invited: Profile[];
  last_message: Message | null;
  unread: number;
}
export interface Invite {
  room_id: string;
  name: string | null;
  inviter: string;
}
export interface Challenge {
  challenge_id: string;
  message: string;
  expires_at: string;
}
export interface MessagePage {
  messages: Message[];
  prev: string | null;
}

export const api = {
  challenge: (public_key: string) => call<Challenge>("POST", "/auth/challenge", { public_key }),
  login: (challenge_id: string, signature: string) =>
    call<{ user_id: string; key_id: string; expires_at: string }>("POST", "/auth/login", {
      challenge_id,
      signature,
    }),
  logout: () => call<object>("POST", "/auth/logout"),
  me: () => call<Me>("GET", "/me"),
  setDisplayName: (display_name: string) => call<object>("PUT", "/me/display_name", { display_name }),
  users: () => call<{ users: Profile[] }>("GET", "/users"),
  rooms: () => call<{ rooms: RoomSummary[]; invites: Invite[] }>("GET", "/rooms"),
  createRoom: (invite: string[], name: string | null, is_direct: boolean) =>
    call<{ room_id: string }>("POST", "/rooms", { invite, name, is_direct }),
  join: (room: string) => call<object>("POST", `/rooms/${enc(room)}/join`, {}),
  leave: (room: string) => call<object>("POST", `/rooms/${enc(room)}/leave`, {}),
  invite: (room: string, user_id: string) => call<object>("POST", `/rooms/${enc(room)}/invite`, { user_id }),
  messages: (room: string, before: string | null, limit = 50) =>
    call<MessagePage>(
      "GET",
      `/rooms/${enc(room)}/messages?limit=${limit}${before ? `&before=${enc(before)}` : ""}`,
    ),
  send: (room: string, txnId: string, body: string) =>
    call<{ event_id: string }>("PUT", `/rooms/${enc(room)}/send/${enc(txnId)}`, { body }),
  read: (room: string, event_id: string) => call<object>("POST", `/rooms/${enc(room)}/read`, { event_id }),
  typing: (room: string, typing: boolean) =>
    call<object>("PUT", `/rooms/${enc(room)}/typing`, { typing, timeout_ms: 8000 }),
};
