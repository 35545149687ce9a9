// The app: signing in, or the chat (conversation list and the open conversation, side
// by side from 768 px, one at a time below), with the keyboard shortcuts.

import { useSignal } from "@preact/signals";
import { useEffect } from "preact/hooks";

import { notice, online, openRoom, phase, rooms, selected, totalUnread } from "../lib/state";
import { Conversation } from "./Conversation";
import { Members, NewConversation, SettingsDialog } from "./Dialogs";
import { Sidebar } from "./Sidebar";
import { SignIn } from "./SignIn";

type Open = "none" | "new" | "members" | "settings";

function Chat() {
  const filter = useSignal("");
  const open = useSignal<Open>("none");
  const room = selected.value;

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k") {
        e.preventDefault();
        // Below 768 px the list is hidden behind the open conversation: show it first,
        // and focus the filter once it is rendered (a hidden input takes no focus).
        const focus = (frames: number) => {
          const input = document.getElementById("filter");
          input?.focus();
          if (document.activeElement !== input && frames > 0) requestAnimationFrame(() => focus(frames - 1));
        };
        if (selected.value && window.matchMedia("(max-width: 767px)").matches) void openRoom(null);
        focus(30);
      }
      if (e.altKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
        e.preventDefault();
        const list = rooms.value;
        if (list.length === 0) return;
        const at = list.findIndex((r) => r.room_id === selected.value);
        const next = e.key === "ArrowUp" ? Math.max(at - 1, 0) : Math.min(at + 1, list.length - 1);
        void openRoom(list[at === -1 ? 0 : next].room_id);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  return (
    <div class="flex h-full flex-col">
      {!online.value && (
        <div role="status" class="bg-amber-100 px-4 py-1.5 text-center text-[13px] text-amber-900 dark:bg-amber-900/60 dark:text-amber-100">
          You are offline. Messages you write are sent when the connection is back.
        </div>
      )}
      {notice.value && (
        <div role="alert" class="bg-red-50 px-4 py-1.5 text-center text-[13px] text-red-800 dark:bg-red-950/60 dark:text-red-200">
          {notice.value}
        </div>
      )}
      <div class="flex min-h-0 flex-1">
        <div class={`${room ? "hidden md:flex" : "flex"} w-full min-w-0 flex-col md:w-80 md:shrink-0`}>
          <Sidebar filter={filter} onNew={() => (open.value = "new")} onSettings={() => (open.value = "settings")} />
        </div>
        {room ? (
          <Conversation room={room} onMembers={() => (open.value = "members")} />
        ) : (
          <main class="hidden flex-1 flex-col items-center justify-center gap-2 bg-surface text-center text-muted md:flex">
            <p class="text-lg font-medium text-ink">Pick a conversation</p>
            <p class="text-[13px]">or start a new one with the + button.</p>
          </main>
        )}
      </div>
      {open.value === "new" && <NewConversation onClose={() => (open.value = "none")} />}
      {open.value === "members" && room && <Members room={room} onClose={() => (open.value = "none")} />}
      {open.value === "settings" && <SettingsDialog onClose={() => (open.value = "none")} />}
    </div>
  );
}

export function App() {
  useEffect(() => {
    const unread = totalUnread.value;
    document.title = unread > 0 ? `(${unread}) ChatSender` : "ChatSender";
  }, [totalUnread.value]);
  if (phase.value === "loading") {
    return (
      <main class="flex h-full items-center justify-center text-muted" aria-busy="true">
        <p role="status">Opening ChatSender…</p>
      </main>
    );
  }
  if (phase.value !== "signed-in") return <SignIn />;
  return <Chat />;
}
