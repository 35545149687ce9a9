// The open conversation: its header, messages, who is typing, and the composer.

import { useSignal } from "@preact/signals";
import { useLayoutEffect, useRef } from "preact/hooks";

import { nameOf } from "../lib/format";
import { me, openRoom, outgoing, rooms, send, setTyping, typing } from "../lib/state";
import { Back, Send, Users } from "./icons";
import { Messages } from "./Messages";
import { avatarId, roomName } from "./Sidebar";
import { Avatar, IconButton } from "./ui";

function Composer({ room }: { room: string }) {
  const text = useSignal("");
  const area = useRef<HTMLTextAreaElement>(null);
  // A layout effect runs in the same commit that shows the room, so a shortcut pressed
  // right after (Ctrl+K) is never undone by this focus arriving late.
  useLayoutEffect(() => {
    text.value = "";
    // Ready to type on a desktop; on a phone the keyboard would cover the messages.
    if (window.matchMedia("(pointer: fine)").matches) area.current?.focus();
  }, [room]);
  const grow = () => {
    const el = area.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 160)}px`;
  };
  const submit = () => {
    const body = text.value;
    if (!body.trim()) return;
    send(room, body);
    text.value = "";
    setTyping(room, false);
    requestAnimationFrame(grow);
  };
  return (
    <form
      class="flex items-end gap-2 border-t border-line bg-surface px-3 py-2 pb-[max(0.5rem,env(safe-area-inset-bottom))]"
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <label class="sr-only" for="composer">
        Message
      </label>
      <textarea
        id="composer"
        ref={area}
        rows={1}
        placeholder="Write a message…"
        class="max-h-40 min-h-11 flex-1 resize-none rounded-xl border border-line bg-canvas px-3 py-2.5"
        value={text.value}
        onInput={(e) => {
          text.value = e.currentTarget.value;
          grow();
          setTyping(room, text.value.length > 0);
        }}
        onBlur={() => text.value && setTyping(room, false)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            submit();
          }
        }}
      />
      <button
        type="submit"
        aria-label="Send"
        class="inline-flex size-11 shrink-0 items-center justify-center rounded-xl bg-accent text-accent-ink hover:bg-accent-strong disabled:opacity-40"
        disabled={!text.value.trim()}
      >
        <Send />
      </button>
    </form>
  );
}

function Typing({ room }: { room: string }) {
  const summary = rooms.value.find((r) => r.room_id === room);
  const who = (typing.value[room] ?? []).map((id) => {
    const m = summary?.members.find((x) => x.user_id === id);
    return nameOf(id, m?.display_name);
  });
  const text =
    who.length === 0 ? "" : who.length === 1 ? `${who[0]} is typing…` : `${who.join(", ")} are typing…`;
  return (
    <p class="h-5 px-5 text-[13px] text-muted" aria-live="polite">
      {text}
    </p>
  );
}

/** Reads the newest incoming message of the open room to screen readers. */
function Announcer({ room }: { room: string }) {
  const summary = rooms.value.find((r) => r.room_id === room);
  const last = summary?.last_message;
  const text =
    last && last.sender !== me.value?.user_id
      ? `${nameOf(last.sender, last.sender_name)}: ${last.kind === "encrypted" ? "encrypted message" : last.body}`
      : "";
  return (
    <div class="sr-only" aria-live="polite" aria-atomic="true">
      {text}
    </div>
  );
}

export function Conversation({ room, onMembers }: { room: string; onMembers: () => void }) {
  const summary = rooms.value.find((r) => r.room_id === room);
  if (!summary) {
    return (
      <main class="flex flex-1 items-center justify-center text-muted">
        <p>This conversation is not available.</p>
      </main>
    );
  }
  const own = me.value?.user_id;
  const name = roomName(summary, own);
  const count = summary.members.length;
  const pair = count + (summary.invited?.length ?? 0) <= 2;
  return (
    <main class="flex min-h-0 min-w-0 flex-1 flex-col bg-surface" aria-labelledby="room-title">
      <header class="flex items-center gap-2 border-b border-line px-2 py-2 sm:px-4">
        <span class="md:hidden">
          <IconButton label="Back to conversations" onClick={() => void openRoom(null)}>
            <Back />
          </IconButton>
        </span>
        <Avatar id={avatarId(summary, own)} name={name} size={36} />
        <div class="min-w-0 flex-1">
          <h1 id="room-title" class="truncate font-semibold">
            {name}
          </h1>
          <p class="truncate text-[13px] text-muted">
            {summary.is_direct && pair ? "Direct conversation" : `${count} member${count === 1 ? "" : "s"}`}
            {summary.encrypted ? " · encrypted room" : ""}
          </p>
        </div>
        <IconButton label="Members and invites" onClick={onMembers}>
          <Users />
        </IconButton>
      </header>
      <Messages room={room} outgoing={outgoing.value.filter((o) => o.roomId === room)} members={summary.members} />
      <Typing room={room} />
      <Announcer room={room} />
      <Composer room={room} />
    </main>
  );
}
