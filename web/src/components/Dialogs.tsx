// The dialogs: a new conversation, a room's members, and settings.

import { useSignal } from "@preact/signals";
import { useEffect } from "preact/hooks";

import { type Profile, api } from "../lib/api";
import { nameOf } from "../lib/format";
import { loadRooms, me, notifications, openRoom, rooms, setNotifications, signOut } from "../lib/state";
import { roomName } from "./Sidebar";
import { Avatar, Button, Dialog, ErrorLine } from "./ui";

const MATRIX_ID = /^@[^:\s]+:[^\s]+$/;

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function NewConversation({ onClose }: { onClose: () => void }) {
  const users = useSignal<Profile[] | null>(null);
  const query = useSignal("");
  const picked = useSignal<string[]>([]);
  const name = useSignal("");
  const error = useSignal<string | null>(null);
  const busy = useSignal(false);
  useEffect(() => {
    api
      .users()
      .then((u) => (users.value = u.users.filter((x) => x.user_id !== me.value?.user_id)))
      .catch((e) => (error.value = message(e)));
  }, []);
  const q = query.value.trim().toLowerCase();
  const matches = (users.value ?? []).filter(
    (u) => !q || nameOf(u.user_id, u.display_name).toLowerCase().includes(q) || u.user_id.includes(q),
  );
  const typedId = MATRIX_ID.test(query.value.trim()) ? query.value.trim() : null;
  const toggle = (id: string) => {
    picked.value = picked.value.includes(id) ? picked.value.filter((x) => x !== id) : [...picked.value, id];
  };
  const create = async () => {
    busy.value = true;
    error.value = null;
    try {
      const direct = picked.value.length === 1 && !name.value.trim();
      const { room_id } = await api.createRoom(picked.value, name.value.trim() || null, direct);
      await loadRooms();
      await openRoom(room_id);
      onClose();
    } catch (e) {
      error.value = message(e);
    } finally {
      busy.value = false;
    }
  };
  return (
    <Dialog title="New conversation" onClose={onClose}>
      <div class="space-y-3">
        <label class="block">
          <span class="text-[13px] font-medium">People on this server, or any Matrix id</span>
          <input
            type="search"
            class="mt-1 w-full rounded-lg border border-line bg-canvas px-3 py-2"
            placeholder="Search, or @someone:example.org"
            value={query.value}
            onInput={(e) => (query.value = e.currentTarget.value)}
          />
        </label>
        {typedId && !picked.value.includes(typedId) && (
          <Button variant="secondary" class="w-full" onClick={() => toggle(typedId)}>
            Add {typedId}
          </Button>
        )}
        {users.value === null && !error.value && <p class="text-[13px] text-muted">Loading people…</p>}
        <ul class="max-h-56 space-y-0.5 overflow-y-auto" aria-label="People">
          {matches.map((u) => {
            const on = picked.value.includes(u.user_id);
            return (
              <li key={u.user_id}>
                <label class="flex min-h-11 cursor-pointer items-center gap-3 rounded-lg px-2 hover:bg-canvas">
                  <input type="checkbox" checked={on} onChange={() => toggle(u.user_id)} class="size-4 accent-accent" />
                  <Avatar id={u.user_id} name={nameOf(u.user_id, u.display_name)} size={32} />
                  <span class="min-w-0">
                    <span class="block truncate">{nameOf(u.user_id, u.display_name)}</span>
                    <span class="block truncate text-[13px] text-muted">{u.user_id}</span>
                  </span>
                </label>
              </li>
            );
          })}
          {users.value !== null && matches.length === 0 && !typedId && (
            <li class="px-2 py-3 text-[13px] text-muted">Nobody matches. Type a full Matrix id to invite someone elsewhere.</li>
          )}
        </ul>
        {picked.value.length > 0 && (
          <p class="text-[13px] text-muted">
            With: {picked.value.map((id) => nameOf(id, users.value?.find((u) => u.user_id === id)?.display_name)).join(", ")}
          </p>
        )}
        <label class="block">
          <span class="text-[13px] font-medium">Group name (leave empty for a direct conversation with one person)</span>
          <input
            class="mt-1 w-full rounded-lg border border-line bg-canvas px-3 py-2"
            value={name.value}
            maxLength={255}
            onInput={(e) => (name.value = e.currentTarget.value)}
          />
        </label>
        {error.value && <ErrorLine>{error.value}</ErrorLine>}
        <Button class="w-full" disabled={busy.value || picked.value.length === 0} onClick={() => void create()}>
          Start conversation
        </Button>
      </div>
    </Dialog>
  );
}

export function Members({ room, onClose }: { room: string; onClose: () => void }) {
  const summary = rooms.value.find((r) => r.room_id === room);
  const invitee = useSignal("");
  const error = useSignal<string | null>(null);
  const done = useSignal<string | null>(null);
  const busy = useSignal(false);
  const confirming = useSignal(false);
  if (!summary) return null;
  const invite = async () => {
    busy.value = true;
    error.value = done.value = null;
    try {
      await api.invite(room, invitee.value.trim());
      done.value = `Invited ${invitee.value.trim()}.`;
      invitee.value = "";
    } catch (e) {
      error.value = message(e);
    } finally {
      busy.value = false;
    }
  };
  const leave = async () => {
    busy.value = true;
    try {
      await api.leave(room);
      await openRoom(null);
      await loadRooms();
      onClose();
    } catch (e) {
      error.value = message(e);
      busy.value = false;
    }
  };
  return (
    <Dialog title={roomName(summary, me.value?.user_id)} onClose={onClose}>
      <div class="space-y-4">
        <section aria-labelledby="members-title">
          <h3 id="members-title" class="mb-1 text-[13px] font-semibold text-muted">
            Members
          </h3>
          <ul class="max-h-56 space-y-1 overflow-y-auto">
            {summary.members.map((m) => (
              <li key={m.user_id} class="flex items-center gap-3 px-1 py-1">
                <Avatar id={m.user_id} name={nameOf(m.user_id, m.display_name)} size={32} />
                <span class="min-w-0">
                  <span class="block truncate">
                    {nameOf(m.user_id, m.display_name)}
                    {m.user_id === me.value?.user_id ? " (you)" : ""}
                  </span>
                  <span class="block truncate text-[13px] text-muted">{m.user_id}</span>
                </span>
              </li>
            ))}
            {(summary.invited ?? []).map((m) => (
              <li key={m.user_id} class="flex items-center gap-3 px-1 py-1">
                <Avatar id={m.user_id} name={nameOf(m.user_id, m.display_name)} size={32} />
                <span class="min-w-0">
                  <span class="block truncate">{nameOf(m.user_id, m.display_name)}</span>
                  <span class="block truncate text-[13px] text-muted">invited · {m.user_id}</span>
                </span>
              </li>
            ))}
          </ul>
        </section>
        <form
          class="space-y-2"
          onSubmit={(e) => {
            e.preventDefault();
            void invite();
          }}
        >
          <label class="block">
            <span class="text-[13px] font-medium">Invite someone (a Matrix id)</span>
            <input
              class="mt-1 w-full rounded-lg border border-line bg-canvas px-3 py-2"
              placeholder="@someone:example.org"
              value={invitee.value}
              onInput={(e) => (invitee.value = e.currentTarget.value)}
            />
          </label>
          <Button type="submit" variant="secondary" class="w-full" disabled={busy.value || !MATRIX_ID.test(invitee.value.trim())}>
            Invite
          </Button>
        </form>
        {done.value && (
          <p class="text-[13px] text-emerald-700 dark:text-emerald-400" role="status">
            {done.value}
          </p>
        )}
        {error.value && <ErrorLine>{error.value}</ErrorLine>}
        {confirming.value ? (
          <div class="space-y-2 rounded-lg border border-line p-3" role="group" aria-label="Leave this conversation?">
            <p class="text-[13px]">Leave this conversation? To come back you need a new invite from someone in it.</p>
            <div class="flex gap-2">
              <Button variant="secondary" class="flex-1" onClick={() => (confirming.value = false)}>
                Stay
              </Button>
              <Button variant="danger" class="flex-1" disabled={busy.value} onClick={() => void leave()}>
                Leave
              </Button>
            </div>
          </div>
        ) : (
          <Button variant="danger" class="w-full" disabled={busy.value} onClick={() => (confirming.value = true)}>
            Leave conversation
          </Button>
        )}
      </div>
    </Dialog>
  );
}

export function SettingsDialog({ onClose }: { onClose: () => void }) {
  const own = me.value;
  const name = useSignal(own?.display_name ?? "");
  const saved = useSignal(false);
  const error = useSignal<string | null>(null);
  const busy = useSignal(false);
  const canNotify = typeof window !== "undefined" && "Notification" in window;
  const save = async () => {
    busy.value = true;
    error.value = null;
    saved.value = false;
    try {
      await api.setDisplayName(name.value.trim());
      me.value = await api.me();
      saved.value = true;
    } catch (e) {
      error.value = message(e);
    } finally {
      busy.value = false;
    }
  };
  return (
    <Dialog title="Settings" onClose={onClose}>
      <div class="space-y-5">
        <form
          class="space-y-2"
          onSubmit={(e) => {
            e.preventDefault();
            void save();
          }}
        >
          <label class="block">
            <span class="text-[13px] font-medium">Display name</span>
            <input
              class="mt-1 w-full rounded-lg border border-line bg-canvas px-3 py-2"
              value={name.value}
              maxLength={256}
              onInput={(e) => (name.value = e.currentTarget.value)}
            />
          </label>
          <p class="text-[13px] text-muted">
            {own?.user_id} · key {own?.key_id}
          </p>
          <Button type="submit" disabled={busy.value || !name.value.trim()}>
            Save name
          </Button>
          {saved.value && (
            <span class="ml-3 text-[13px] text-emerald-700 dark:text-emerald-400" role="status">
              Saved.
            </span>
          )}
          {error.value && <ErrorLine>{error.value}</ErrorLine>}
        </form>
        <label class="flex min-h-11 items-center gap-3">
          <input
            type="checkbox"
            class="size-4 accent-accent"
            disabled={!canNotify}
            checked={notifications.value}
            onChange={(e) => void setNotifications(e.currentTarget.checked)}
          />
          <span>
            Desktop notifications for new messages while this tab is hidden
            {!canNotify && <span class="block text-[13px] text-muted">This browser has none.</span>}
          </span>
        </label>
        <div class="grid gap-2 sm:grid-cols-2">
          <Button variant="secondary" onClick={() => void signOut(false)}>
            Sign out
          </Button>
          <Button variant="danger" onClick={() => void signOut(true)}>
            Sign out and forget key
          </Button>
        </div>
        <p class="text-[13px] text-muted">
          “Forget key” deletes this browser’s copy of your key: you will need your key file to sign in
          here again.
        </p>
      </div>
    </Dialog>
  );
}
