// A conversation's messages: grouped by sender and day, older ones paged in on scroll
// without a jump, landing at the newest, with a pill when new ones arrive below.

import { useSignal } from "@preact/signals";
import { useEffect, useLayoutEffect, useRef } from "preact/hooks";

import type { Member, Message } from "../lib/api";
import { dayOf, nameOf, sameDay, timeOf } from "../lib/format";
import type { Outgoing } from "../lib/send";
import { discard, loadOlder, me, retry, timelines } from "../lib/state";
import { Alert, Check, Clock, Lock } from "./icons";
import { Avatar, ErrorLine } from "./ui";

/** A message on screen: from the timeline, or on its way. */
type Item = { message: Message; outgoing?: Outgoing };

const GROUP_GAP_MS = 5 * 60_000;

function toItems(messages: Message[], outgoing: Outgoing[], own: string): Item[] {
  const pending = outgoing.map((o) => ({
    outgoing: o,
    message: {
      event_id: o.eventId ?? `pending:${o.txnId}`,
      room_id: o.roomId,
      sender: own,
      sender_name: null,
      body: o.body,
      ts: o.ts,
      kind: "text" as const,
    },
  }));
  return [...messages.map((message) => ({ message })), ...pending];
}

function Body({ message }: { message: Message }) {
  switch (message.kind) {
    case "encrypted":
      return (
        <p class="flex items-center gap-1.5 italic text-muted">
          <Lock width="14" height="14" /> Encrypted message — not supported yet
        </p>
      );
    case "notice":
      return <p class="whitespace-pre-wrap break-words text-muted">{message.body}</p>;
    case "emote":
      return (
        <p class="whitespace-pre-wrap break-words italic">
          * {nameOf(message.sender, message.sender_name)} {message.body}
        </p>
      );
    case "other":
      return (
        <p class="text-muted">
          {message.body ? <span class="break-words">{message.body} </span> : null}
          <span class="text-[13px] italic">(this kind of message cannot be shown here yet)</span>
        </p>
      );
    default:
      return <p class="whitespace-pre-wrap break-words">{message.body}</p>;
  }
}

function State({ outgoing }: { outgoing: Outgoing }) {
  if (outgoing.state === "pending") {
    return (
      <span class="inline-flex items-center gap-1 text-[12px] text-muted" aria-label="Sending">
        <Clock width="12" height="12" /> Sending…
      </span>
    );
  }
  if (outgoing.state === "sent") {
    return (
      <span class="inline-flex items-center gap-1 text-[12px] text-muted" aria-label="Sent">
        <Check width="12" height="12" /> Sent
      </span>
    );
  }
  return (
    <span class="inline-flex flex-wrap items-center gap-2 text-[12px] text-red-700 dark:text-red-400" role="alert">
      <Alert width="12" height="12" /> Not sent{outgoing.error ? `: ${outgoing.error}` : ""}
      <button type="button" class="font-semibold underline" onClick={() => retry(outgoing.txnId)}>
        Retry
      </button>
      <button type="button" class="underline" onClick={() => discard(outgoing.txnId)}>
        Discard
      </button>
    </span>
  );
}

export function Messages({ room, outgoing, members }: { room: string; outgoing: Outgoing[]; members: Member[] }) {
  const list = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  /** Before older messages are prepended: the distance from the bottom, to keep. */
  const anchor = useRef<number | null>(null);
  const newBelow = useSignal(false);
  const timeline = timelines.value[room];
  const own = me.value?.user_id ?? "";
  const items = toItems(timeline?.messages ?? [], outgoing, own);
  const first = items[0]?.message.event_id;
  const last = items.at(-1)?.message.event_id;

  // Open at the newest message.
  useLayoutEffect(() => {
    atBottom.current = true;
    newBelow.value = false;
    const el = list.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [room, timeline?.loaded]);

  // Older messages came in above: stay where the reader was.
  useLayoutEffect(() => {
    const el = list.current;
    if (el && anchor.current !== null) {
      el.scrollTop = el.scrollHeight - anchor.current;
      anchor.current = null;
    }
  }, [first]);

  // A new message below: follow it if at the bottom, else offer the pill.
  useLayoutEffect(() => {
    const el = list.current;
    if (!el) return;
    if (atBottom.current) el.scrollTop = el.scrollHeight;
    else if (items.at(-1)?.message.sender !== own) newBelow.value = true;
  }, [last]);

  const older = () => {
    const el = list.current;
    if (!el || !timeline || timeline.loading || timeline.prev === null) return;
    anchor.current = el.scrollHeight - el.scrollTop;
    void loadOlder(room);
  };

  // A first page shorter than the screen leaves nothing to scroll: ask for more.
  useEffect(() => {
    const el = list.current;
    if (el && timeline?.loaded && timeline.prev && el.scrollHeight <= el.clientHeight) older();
  }, [timeline?.loaded, first]);

  const readers = new Map<string, Member[]>();
  for (const m of members) {
    if (m.user_id === own || !m.read_event_id) continue;
    readers.set(m.read_event_id, [...(readers.get(m.read_event_id) ?? []), m]);
  }

  return (
    <div class="relative min-h-0 flex-1">
      <div
        ref={list}
        class="flex h-full flex-col overflow-y-auto px-3 py-3 sm:px-5"
        tabIndex={0}
        aria-label="Messages"
        onScroll={(e) => {
          const el = e.currentTarget;
          atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 48;
          if (atBottom.current) newBelow.value = false;
          if (el.scrollTop < 200) older();
        }}
      >
        {/* Few messages sit at the bottom, by the composer, as in any messenger. */}
        <div class="flex-1" aria-hidden="true" />
        {timeline?.loaded && timeline.prev === null && (
          <p class="py-4 text-center text-[13px] text-muted">This is the start of the conversation.</p>
        )}
        {timeline?.loading && (
          <div aria-label="Loading messages" class="space-y-3 py-2">
            {[0, 1, 2].map((i) => (
              <div key={i} class="flex gap-3">
                <span class="skeleton size-9 rounded-full" />
                <span class="flex-1 space-y-2">
                  <span class="skeleton block h-3 w-32" />
                  <span class="skeleton block h-3 w-3/4" />
                </span>
              </div>
            ))}
          </div>
        )}
        {timeline?.error && (
          <ErrorLine onRetry={() => void loadOlder(room)}>Messages could not be loaded: {timeline.error}</ErrorLine>
        )}
        {timeline?.loaded && items.length === 0 && (
          <p class="py-10 text-center text-muted">No messages yet. Say hello.</p>
        )}
        <ol class="space-y-0.5">
          {items.map((item, i) => {
            const { message } = item;
            const previous = items[i - 1]?.message;
            const newDay = !previous || !sameDay(previous.ts, message.ts);
            const grouped =
              !newDay &&
              previous?.sender === message.sender &&
              message.ts - previous.ts < GROUP_GAP_MS &&
              previous.kind !== "emote";
            const mine = message.sender === own;
            const name = mine ? "You" : nameOf(message.sender, message.sender_name);
            const seen = readers.get(message.event_id);
            return (
              <li key={message.event_id}>
                {newDay && (
                  <div class="my-3 flex items-center gap-3 text-[13px] font-medium text-muted" role="separator">
                    <span class="h-px flex-1 bg-line" />
                    {dayOf(message.ts)}
                    <span class="h-px flex-1 bg-line" />
                  </div>
                )}
                <div
                  class={`group flex gap-3 rounded-lg px-2 ${grouped ? "py-0.5" : "mt-2 pt-1.5 pb-0.5"} ${
                    mine ? "bg-accent-soft/60" : "hover:bg-canvas/60"
                  }`}
                >
                  <div class="w-9 shrink-0">
                    {!grouped && <Avatar id={message.sender} name={nameOf(message.sender, message.sender_name)} size={36} />}
                  </div>
                  <div class="min-w-0 flex-1">
                    {!grouped && (
                      <p class="flex items-baseline gap-2">
                        <span class="font-semibold">{name}</span>
                        <time class="tabular text-[12px] text-muted" dateTime={new Date(message.ts).toISOString()}>
                          {timeOf(message.ts)}
                        </time>
                      </p>
                    )}
                    <div class="flex items-start gap-2">
                      <div class="min-w-0 flex-1">
                        <Body message={message} />
                      </div>
                      {grouped && (
                        <time class="time-hint tabular pt-0.5 text-[12px] text-muted" dateTime={new Date(message.ts).toISOString()}>
                          {timeOf(message.ts)}
                        </time>
                      )}
                    </div>
                    {item.outgoing && <State outgoing={item.outgoing} />}
                    {seen && (
                      <p class="text-right text-[12px] text-muted">
                        Seen by {seen.map((m) => nameOf(m.user_id, m.display_name)).join(", ")}
                      </p>
                    )}
                  </div>
                </div>
              </li>
            );
          })}
        </ol>
      </div>
      {newBelow.value && (
        <button
          type="button"
          class="absolute bottom-3 left-1/2 -translate-x-1/2 rounded-full bg-accent px-4 py-2 text-[13px] font-semibold text-accent-ink shadow-lg"
          onClick={() => {
            const el = list.current;
            if (el) el.scrollTop = el.scrollHeight;
            newBelow.value = false;
          }}
        >
          New messages ↓
        </button>
      )}
    </div>
  );
}
