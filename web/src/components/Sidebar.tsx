// The left column: who you are and the connection, a filter, invites, conversations.

import { useSignal } from "@preact/signals";

import type { RoomSummary } from "../lib/api";
import { api } from "../lib/api";
import { listTimeOf, nameOf } from "../lib/format";
import {
  invites,
  loadRooms,
  me,
  online,
  openRoom,
  people,
  rooms,
  roomsError,
  roomsLoaded,
  selected,
  status,
} from "../lib/state";
import { Plus, Search, Settings } from "./icons";
import { Avatar, ErrorLine, IconButton, StatusDot } from "./ui";

/** Whose colour a room's avatar has: the other person's in a conversation of two
 *  without a name, else the room's own. */
export function avatarId(room: Pick<RoomSummary, "room_id" | "name" | "members" | "invited">, own?: string): string {
  const others = [...room.members, ...(room.invited ?? [])].filter((m) => m.user_id !== own);
  return !room.name && others.length === 1 ? others[0].user_id : room.room_id;
}

/** A room's name: its own, else its other members'. */
export function roomName(room: Pick<RoomSummary, "name" | "members" | "invited">, own?: string): string {
  if (room.name) return room.name;
  const others = [...room.members, ...(room.invited ?? [])].filter((m) => m.user_id !== own);
  if (others.length === 0) return "Just you";
  return others.map((m) => nameOf(m.user_id, m.display_name)).join(", ");
}

function preview(room: RoomSummary): string {
  const m = room.last_message;
  if (!m) return room.is_direct ? "Direct conversation" : "No messages yet";
  const who = m.sender === me.value?.user_id ? "You: " : "";
  if (m.kind === "encrypted") return `${who}Encrypted message`;
  if (m.kind === "emote") return `* ${nameOf(m.sender, m.sender_name)} ${m.body}`;
  return who + (m.body || "Attachment");
}

function Invites() {
  const busy = useSignal<string | null>(null);
  const error = useSignal<string | null>(null);
  if (invites.value.length === 0) return null;
  const answer = async (room: string, accept: boolean) => {
    busy.value = room;
    error.value = null;
    try {
      await (accept ? api.join(room) : api.leave(room));
      await loadRooms();
      if (accept) await openRoom(room);
    } catch (e) {
      error.value = e instanceof Error ? e.message : String(e);
    } finally {
      busy.value = null;
    }
  };
  return (
    <section aria-labelledby="invites-title" class="border-b border-line px-3 py-2">
      <h2 id="invites-title" class="px-1 pb-1 text-[13px] font-semibold text-muted">
        Invites
      </h2>
      {error.value && <ErrorLine>{error.value}</ErrorLine>}
      <ul class="space-y-1">
        {invites.value.map((i) => {
          const inviter = nameOf(i.inviter, people.value[i.inviter]);
          return (
            <li key={i.room_id} class="rounded-lg bg-accent-soft px-2 py-2">
              <div class="flex items-center gap-3">
                <Avatar id={i.name ? i.room_id : i.inviter} name={i.name ?? inviter} size={36} />
                <div class="min-w-0 flex-1">
                  <p class="truncate font-medium">{i.name ?? inviter}</p>
                  <p class="truncate text-[13px] text-muted">
                    {i.name ? `${inviter} invites you` : "invites you to a direct conversation"}
                  </p>
                </div>
              </div>
              <div class="mt-2 flex justify-end gap-2">
                <button
                  type="button"
                  class="min-h-11 rounded-lg px-3 text-[13px] font-medium text-muted hover:text-ink disabled:opacity-50"
                  disabled={busy.value === i.room_id}
                  onClick={() => void answer(i.room_id, false)}
                >
                  Decline
                </button>
                <button
                  type="button"
                  class="min-h-11 rounded-lg bg-accent px-4 text-[13px] font-medium text-accent-ink disabled:opacity-50"
                  disabled={busy.value === i.room_id}
                  onClick={() => void answer(i.room_id, true)}
                >
                  Accept
                </button>
              </div>
            </li>
          );
        })}
      </ul>
    </section>
  );
}

function RoomItem({ room }: { room: RoomSummary }) {
  const name = roomName(room, me.value?.user_id);
  const active = selected.value === room.room_id;
  const last = room.last_message;
  return (
    <li>
      <button
        type="button"
        data-room={room.room_id}
        aria-current={active ? "true" : undefined}
        onClick={() => void openRoom(room.room_id)}
        class={`flex w-full items-center gap-3 rounded-lg px-2 py-2 text-left transition-colors duration-150 ${
          active ? "bg-accent-soft" : "hover:bg-canvas"
        }`}
      >
        <Avatar id={avatarId(room, me.value?.user_id)} name={name} size={44} />
        <span class="min-w-0 flex-1">
          <span class="flex items-baseline gap-2">
            <span class={`flex-1 truncate ${room.unread ? "font-semibold" : "font-medium"}`}>{name}</span>
            {last && <span class="tabular shrink-0 text-[13px] text-muted">{listTimeOf(last.ts)}</span>}
          </span>
          <span class="flex items-center gap-2">
            <span class="flex-1 truncate text-[13px] text-muted">{preview(room)}</span>
            {room.unread > 0 && (
              <span
                class="tabular inline-flex min-w-5 shrink-0 items-center justify-center rounded-full bg-accent px-1.5 text-[12px] font-semibold text-accent-ink"
                aria-label={`${room.unread} unread`}
              >
                {room.unread > 99 ? "99+" : room.unread}
              </span>
            )}
          </span>
        </span>
      </button>
    </li>
  );
}

export function Sidebar({
  filter,
  onNew,
  onSettings,
}: {
  filter: { value: string };
  onNew: () => void;
  onSettings: () => void;
}) {
  const own = me.value;
  const query = filter.value.trim().toLowerCase();
  const shown = rooms.value.filter((r) => !query || roomName(r, own?.user_id).toLowerCase().includes(query));
  return (
    <nav aria-label="Conversations" class="flex h-full min-h-0 flex-col border-r border-line bg-surface">
      <header class="flex items-center gap-3 border-b border-line px-3 py-2">
        {own && <Avatar id={own.user_id} name={nameOf(own.user_id, own.display_name)} size={36} />}
        <div class="min-w-0 flex-1">
          <p class="truncate font-semibold">{own ? nameOf(own.user_id, own.display_name) : "…"}</p>
          <StatusDot status={online.value ? status.value : "offline"} />
        </div>
        <IconButton label="New conversation" onClick={onNew}>
          <Plus />
        </IconButton>
        <IconButton label="Settings" onClick={onSettings}>
          <Settings />
        </IconButton>
      </header>
      <div class="px-3 py-2">
        <label class="relative block">
          <span class="sr-only">Filter conversations</span>
          <Search class="pointer-events-none absolute left-3 top-1/2 -translate-y-1/2 text-muted" width="16" height="16" />
          <input
            id="filter"
            type="search"
            placeholder="Filter (Ctrl+K)"
            class="w-full rounded-lg border border-line bg-canvas py-2 pl-9 pr-3 text-[15px]"
            value={filter.value}
            onInput={(e) => (filter.value = e.currentTarget.value)}
          />
        </label>
      </div>
      <Invites />
      <div class="min-h-0 flex-1 overflow-y-auto px-2 pb-2">
        {roomsError.value && (
          <div class="p-2">
            <ErrorLine onRetry={() => void loadRooms()}>Conversations could not be loaded: {roomsError.value}</ErrorLine>
          </div>
        )}
        {!roomsLoaded.value && !roomsError.value && (
          <ul aria-label="Loading conversations" class="space-y-2 p-2">
            {[0, 1, 2, 3].map((i) => (
              <li key={i} class="flex items-center gap-3">
                <span class="skeleton size-11 rounded-full" />
                <span class="flex-1 space-y-2">
                  <span class="skeleton block h-3 w-2/3" />
                  <span class="skeleton block h-3 w-1/2" />
                </span>
              </li>
            ))}
          </ul>
        )}
        {roomsLoaded.value && rooms.value.length === 0 && (
          <div class="px-4 py-10 text-center">
            <p class="font-medium">No conversations yet</p>
            <p class="mt-1 text-[13px] text-muted">Start one with someone on this server or any Matrix user.</p>
            <button type="button" class="mt-3 font-medium text-accent underline-offset-2 hover:underline" onClick={onNew}>
              Start a conversation
            </button>
          </div>
        )}
        {roomsLoaded.value && rooms.value.length > 0 && shown.length === 0 && (
          <p class="px-4 py-6 text-center text-[13px] text-muted">No conversation matches “{filter.value}”.</p>
        )}
        <ul class="space-y-0.5">
          {shown.map((r) => (
            <RoomItem key={r.room_id} room={r} />
          ))}
        </ul>
      </div>
    </nav>
  );
}
