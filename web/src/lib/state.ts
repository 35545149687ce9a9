// The app's state and what changes it: the signed-in user, rooms, timelines, typing,
// the live stream, sending. Components read the signals and call the actions.

import { batch, computed, signal } from "@preact/signals";

import { ApiError, type Invite, type Me, type Message, type RoomSummary, api } from "./api";
import { createKey, importSeed, parsePrivateKeyPem } from "./keys";
import { type SavedKey, forgetKey, loadKey, saveKey } from "./keystore";
import { Outbox } from "./send";
import { SignInError, signIn } from "./session";
import { type EventKind, LiveStream, type StreamStatus } from "./stream";

export type Phase = "loading" | "signed-out" | "waiting" | "signed-in";

export interface Timeline {
  messages: Message[];
  /** Where older history starts; null when the start of the room is reached. */
  prev: string | null;
  loading: boolean;
  /** The first page arrived. */
  loaded: boolean;
  error: string | null;
}

export const phase = signal<Phase>("loading");
export const saved = signal<SavedKey | null>(null);
export const notice = signal<string | null>(null);
export const me = signal<Me | null>(null);
export const rooms = signal<RoomSummary[]>([]);
export const invites = signal<Invite[]>([]);
export const roomsError = signal<string | null>(null);
export const roomsLoaded = signal(false);
export const timelines = signal<Record<string, Timeline>>({});
export const typing = signal<Record<string, string[]>>({});
export const selected = signal<string | null>(null);
export const status = signal<StreamStatus>("connecting");
export const online = signal(typeof navigator === "undefined" ? true : navigator.onLine);
export const notifications = signal(false);
export const outgoing = signal<Outbox["items"]>([]);
/** ChatSender users' display names, by user id (for invites from people not yet met). */
export const people = signal<Record<string, string | null>>({});

/** The total of unread messages, for the tab's title. */
export const totalUnread = computed(() => rooms.value.reduce((n, r) => n + r.unread, 0));

const outbox = new Outbox(
  (room, txn, body) => api.send(room, txn, body),
  () => (outgoing.value = outbox.items),
  (eventId) => Object.values(timelines.value).some((t) => t.messages.some((m) => m.event_id === eventId)),
);

let stream: LiveStream | undefined;
let waitTimer: ReturnType<typeof setTimeout> | undefined;

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// --- Signing in ----------------------------------------------------------------

/** Starts the app: the key kept here, the session if it still stands. */
export async function boot(): Promise<void> {
  let key: SavedKey | undefined;
  try {
    key = await loadKey();
  } catch (error) {
    notice.value = `This browser cannot keep a key (${describe(error)}). Private windows often cannot.`;
  }
  saved.value = key ?? null;
  try {
    await api.me();
    await enter();
    return;
  } catch (error) {
    if (error instanceof ApiError && error.status === 0) notice.value = error.message;
  }
  if (key) await signInWith(key, { quiet: true });
  else phase.value = "signed-out";
}

async function signInWith(key: SavedKey, options: { quiet: boolean }): Promise<boolean> {
  try {
    await signIn(key.key);
    notice.value = null;
    await enter();
    return true;
  } catch (error) {
    const refused = error instanceof SignInError && error.refused;
    if (refused && key.createdHere) {
      phase.value = "waiting";
      waitForOperator();
    } else {
      phase.value = "signed-out";
      if (!options.quiet || !refused) notice.value = describe(error);
      else notice.value = "This browser's key is no longer accepted (it may have been revoked). Sign in with another key.";
    }
    return false;
  }
}

/** Signs in with a private key file's text (PEM); keeps the key only if it works. */
export async function signInWithPem(text: string): Promise<void> {
  notice.value = null;
  let key;
  try {
    key = await importSeed(parsePrivateKeyPem(text));
  } catch (error) {
    notice.value = describe(error);
    return;
  }
  try {
    await signIn(key);
  } catch (error) {
    notice.value = describe(error);
    return;
  }
  const entry: SavedKey = { key, createdHere: false };
  try {
    await saveKey(entry);
  } catch (error) {
    notice.value = `Signed in, but this browser cannot keep the key (${describe(error)}); you will need the file next time.`;
  }
  saved.value = entry;
  await enter();
}

/** Makes a key in this browser for the operator to add, and waits for that. */
export async function createKeyHere(name: string): Promise<void> {
  notice.value = null;
  const entry: SavedKey = { key: await createKey(), createdHere: true, name: name.trim() || undefined };
  await saveKey(entry);
  saved.value = entry;
  phase.value = "waiting";
  waitForOperator();
}

/** Tries the key made here every few seconds until the operator has added it. */
function waitForOperator(): void {
  clearTimeout(waitTimer);
  waitTimer = setTimeout(async () => {
    const key = saved.value;
    if (phase.value !== "waiting" || !key) return;
    try {
      await signIn(key.key);
      await enter();
    } catch (error) {
      if (error instanceof SignInError && !error.refused) notice.value = error.message;
      waitForOperator();
    }
  }, 4000);
}

/** Signs out; with `forget`, this browser's key is deleted too. */
export async function signOut(forget: boolean): Promise<void> {
  clearTimeout(waitTimer);
  notice.value = null;
  stream?.close();
  stream = undefined;
  try {
    await api.logout();
  } catch {
    // A session that is gone already is signed out.
  }
  if (forget) {
    try {
      await forgetKey();
      saved.value = null;
    } catch (error) {
      notice.value = `Signed out, but the key could not be deleted from this browser: ${describe(error)}`;
    }
  }
  batch(() => {
    me.value = null;
    rooms.value = [];
    invites.value = [];
    timelines.value = {};
    selected.value = null;
    roomsLoaded.value = false;
    phase.value = "signed-out";
  });
}

/** The session ended under us (expired, or the key revoked): sign in again if we can. */
async function sessionEnded(): Promise<void> {
  stream?.close();
  stream = undefined;
  const key = saved.value;
  if (key && (await signInWith(key, { quiet: true }))) return;
  if (phase.value === "signed-in") phase.value = "signed-out";
  notice.value ??= "Your session ended. Sign in again.";
}

/** Runs an API call; a lost session leads back to signing in. */
async function guarded<T>(work: () => Promise<T>): Promise<T | undefined> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ApiError && error.sessionEnded) {
      await sessionEnded();
      return undefined;
    }
    throw error;
  }
}

// --- The signed-in app ------------------------------------------------------------

async function enter(): Promise<void> {
  clearTimeout(waitTimer);
  me.value = await api.me();
  phase.value = "signed-in";
  stream?.close();
  stream = new LiveStream({
    event: onEvent,
    reset: () => void refresh(),
    status: (s) => (status.value = s),
    refused: async () => {
      try {
        await api.me();
        return true;
      } catch (error) {
        if (error instanceof ApiError && error.sessionEnded) {
          await sessionEnded();
          return false;
        }
        return true;
      }
    },
  });
  stream.open();
  void api
    .users()
    .then((u) => (people.value = Object.fromEntries(u.users.map((p) => [p.user_id, p.display_name]))))
    .catch(() => {});
  await loadRooms();
  const wanted = location.hash.startsWith("#room=") ? decodeURIComponent(location.hash.slice(6)) : null;
  if (wanted && rooms.value.some((r) => r.room_id === wanted)) await openRoom(wanted);
}

/** Each `loadRooms` call's number, and the newest whose answer is shown: answers can
 *  come back out of order, and an older list may lack a room made since. */
let roomsAsked = 0;
let roomsShown = 0;

export async function loadRooms(): Promise<void> {
  const asked = ++roomsAsked;
  try {
    const answer = await guarded(() => api.rooms());
    if (!answer || asked < roomsShown) return;
    roomsShown = asked;
    batch(() => {
      rooms.value = sortRooms(answer.rooms);
      invites.value = answer.invites;
      roomsError.value = null;
      roomsLoaded.value = true;
    });
  } catch (error) {
    if (asked >= roomsShown) roomsError.value = describe(error);
  }
}

/** Events may have been missed: fetch again what is on screen. */
async function refresh(): Promise<void> {
  await loadRooms();
  const room = selected.value;
  if (room) {
    setTimeline(room, { messages: [], prev: null, loaded: false, loading: false, error: null });
    await loadOlder(room);
  }
}

/** Newest message first; a conversation with no message yet (just started or joined)
 *  goes on top, where its creator expects to find it. */
function sortRooms(list: RoomSummary[]): RoomSummary[] {
  const at = (r: RoomSummary) => r.last_message?.ts ?? Number.POSITIVE_INFINITY;
  return [...list].sort((a, b) => (at(b) === at(a) ? 0 : at(b) > at(a) ? 1 : -1));
}

function setTimeline(room: string, change: Partial<Timeline>): void {
  const current = timelines.value[room] ?? { messages: [], prev: null, loading: false, loaded: false, error: null };
  timelines.value = { ...timelines.value, [room]: { ...current, ...change } };
}

function updateRoom(room: string, change: (r: RoomSummary) => RoomSummary): void {
  rooms.value = sortRooms(rooms.value.map((r) => (r.room_id === room ? change(r) : r)));
}

export async function openRoom(room: string | null): Promise<void> {
  selected.value = room;
  history.replaceState(null, "", room ? `#room=${encodeURIComponent(room)}` : location.pathname);
  if (!room) return;
  const timeline = timelines.value[room];
  if (!timeline?.loaded) await loadOlder(room);
  markRead(room);
}

/** Loads the page of history before what is shown. */
export async function loadOlder(room: string): Promise<void> {
  const timeline = timelines.value[room];
  if (timeline?.loading || (timeline?.loaded && timeline.prev === null)) return;
  setTimeline(room, { loading: true, error: null });
  try {
    const page = await guarded(() => api.messages(room, timeline?.prev ?? null));
    if (!page) return;
    const known = new Set(timelines.value[room]?.messages.map((m) => m.event_id));
    const older = page.messages.filter((m) => !known.has(m.event_id));
    setTimeline(room, {
      messages: [...older, ...(timelines.value[room]?.messages ?? [])],
      prev: page.prev,
      loaded: true,
      loading: false,
    });
    for (const m of older) outbox.arrivedEvent(m.event_id);
  } catch (error) {
    setTimeline(room, { loading: false, error: describe(error) });
  }
}

/** The newest event each room was marked read at, by this tab. */
const readSent: Record<string, string> = {};

/** Tells the daemon the user has seen the room's newest message (others see the
 *  receipt; the user's other tabs clear the room's count). */
export function markRead(room: string): void {
  if (typeof document !== "undefined" && document.visibilityState === "hidden") return;
  const summary = rooms.value.find((r) => r.room_id === room);
  const last = timelines.value[room]?.messages.at(-1) ?? summary?.last_message;
  if (!summary || !last) return;
  const own = me.value?.user_id;
  const mine = summary.members.find((m) => m.user_id === own)?.read_event_id;
  if (summary.unread === 0 && (readSent[room] === last.event_id || mine === last.event_id || last.sender === own)) {
    return;
  }
  readSent[room] = last.event_id;
  if (summary.unread > 0) updateRoom(room, (r) => ({ ...r, unread: 0 }));
  void guarded(() => api.read(room, last.event_id)).catch(() => {});
}

export function send(room: string, body: string): void {
  if (body.trim()) outbox.send(room, body);
}

export const retry = (txnId: string) => outbox.retry(txnId);
export const retryAll = () => outbox.retryAll();
export const discard = (txnId: string) => outbox.discard(txnId);

let typingSent = 0;
/** The user typed in the composer (`active`), or stopped (sent, cleared, left). */
export function setTyping(room: string, active: boolean): void {
  const now = Date.now();
  if (active && now - typingSent < 4000) return;
  typingSent = active ? now : 0;
  void guarded(() => api.typing(room, active)).catch(() => {});
}

// --- Live events --------------------------------------------------------------------

function onEvent(kind: EventKind, data: unknown): void {
  const d = data as Record<string, unknown>;
  const room = String(d.room_id ?? "");
  switch (kind) {
    case "message":
      onMessage(data as Message);
      break;
    case "membership":
    case "room":
      void loadRooms();
      break;
    case "typing": {
      const others = (d.user_ids as string[]).filter((u) => u !== me.value?.user_id);
      typing.value = { ...typing.value, [room]: others };
      break;
    }
    case "read":
      updateRoom(room, (r) => ({ ...r, unread: 0 }));
      break;
    case "receipt":
      updateRoom(room, (r) => ({
        ...r,
        members: r.members.map((m) =>
          m.user_id === d.user_id ? { ...m, read_event_id: String(d.event_id) } : m,
        ),
      }));
      break;
  }
}

function onMessage(message: Message): void {
  const room = message.room_id;
  const timeline = timelines.value[room];
  if (timeline?.loaded && !timeline.messages.some((m) => m.event_id === message.event_id)) {
    setTimeline(room, { messages: [...timeline.messages, message] });
  }
  outbox.arrivedEvent(message.event_id);
  const own = message.sender === me.value?.user_id;
  if (!rooms.value.some((r) => r.room_id === room)) {
    void loadRooms();
    return;
  }
  const looking = selected.value === room && document.visibilityState === "visible";
  updateRoom(room, (r) => ({
    ...r,
    last_message: message,
    unread: own || looking ? r.unread : r.unread + 1,
  }));
  if (looking && !own) markRead(room);
  if (!own && document.visibilityState === "hidden") notify(message);
  const typists = typing.value[room];
  if (typists?.includes(message.sender)) {
    typing.value = { ...typing.value, [room]: typists.filter((u) => u !== message.sender) };
  }
}

// --- Desktop notifications ------------------------------------------------------------

const NOTIFY_KEY = "chatsender.notifications";
if (typeof localStorage !== "undefined") {
  notifications.value = localStorage.getItem(NOTIFY_KEY) === "on" && Notification?.permission === "granted";
}

/** Turns desktop notifications on (asking the browser) or off. */
export async function setNotifications(on: boolean): Promise<void> {
  if (on && "Notification" in window && Notification.permission !== "granted") {
    on = (await Notification.requestPermission()) === "granted";
  }
  notifications.value = on;
  localStorage.setItem(NOTIFY_KEY, on ? "on" : "off");
}

function notify(message: Message): void {
  if (!notifications.value || !("Notification" in window) || Notification.permission !== "granted") return;
  const room = rooms.value.find((r) => r.room_id === message.room_id);
  const who = message.sender_name ?? message.sender;
  const body = message.kind === "encrypted" ? "Encrypted message" : message.body;
  const n = new Notification(room?.name ? `${who} in ${room.name}` : who, { body, tag: message.room_id });
  n.onclick = () => {
    window.focus();
    void openRoom(message.room_id);
  };
}

// --- The browser around us -------------------------------------------------------------

export function watchBrowser(): void {
  window.addEventListener("online", () => {
    online.value = true;
    stream?.retryNow();
    retryAll();
  });
  window.addEventListener("offline", () => (online.value = false));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && selected.value) markRead(selected.value);
  });
}
