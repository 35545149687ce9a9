// Sending: a message shows at once as pending, then sent, or failed with a retry that
// reuses its transaction id (so the daemon never sends it twice).

export type OutgoingState = "pending" | "sent" | "failed";

export interface Outgoing {
  txnId: string;
  roomId: string;
  body: string;
  state: OutgoingState;
  /** When it was written (ms), for ordering and the time shown. */
  ts: number;
  eventId?: string;
  error?: string;
}

export type SendFn = (roomId: string, txnId: string, body: string) => Promise<{ event_id: string }>;

/** A transaction id: 22 random characters of [A-Za-z0-9_-]. */
export function newTxnId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

/** Messages on their way. `changed` is called after every transition. */
export class Outbox {
  items: Outgoing[] = [];

  constructor(
    private readonly sendFn: SendFn,
    private readonly changed: () => void,
    /** Whether the timeline already holds an event (then its outgoing copy goes). */
    private readonly arrived: (eventId: string) => boolean = () => false,
  ) {}

  /** Queues `body` for `roomId` and sends it. */
  send(roomId: string, body: string, now = Date.now()): Outgoing {
    const item: Outgoing = { txnId: newTxnId(), roomId, body, state: "pending", ts: now };
    this.items = [...this.items, item];
    this.changed();
    void this.attempt(item.txnId);
    return item;
  }

  /** Sends a failed message again, with its transaction id. */
  retry(txnId: string): void {
    const item = this.items.find((i) => i.txnId === txnId);
    if (item?.state !== "failed") return;
    this.update(txnId, { state: "pending", error: undefined });
    void this.attempt(txnId);
  }

  /** Sends every failed message again (the connection is back), oldest first. */
  retryAll(): void {
    for (const item of this.items.filter((i) => i.state === "failed")) this.retry(item.txnId);
  }

  /** Gives up on a failed message. */
  discard(txnId: string): void {
    this.items = this.items.filter((i) => i.txnId !== txnId || i.state !== "failed");
    this.changed();
  }

  /** The event arrived in the timeline: its outgoing copy is no longer needed. */
  arrivedEvent(eventId: string): void {
    if (!this.items.some((i) => i.eventId === eventId)) return;
    this.items = this.items.filter((i) => i.eventId !== eventId);
    this.changed();
  }

  forRoom(roomId: string): Outgoing[] {
    return this.items.filter((i) => i.roomId === roomId);
  }

  private update(txnId: string, change: Partial<Outgoing>): void {
    this.items = this.items.map((i) => (i.txnId === txnId ? { ...i, ...change } : i));
    this.changed();
  }

  private async attempt(txnId: string): Promise<void> {
    const item = this.items.find((i) => i.txnId === txnId);
    if (!item) return;
    try {
      const { event_id } = await this.sendFn(item.roomId, item.txnId, item.body);
      if (this.arrived(event_id)) {
        this.items = this.items.filter((i) => i.txnId !== txnId);
        this.changed();
      } else {
        this.update(txnId, { state: "sent", eventId: event_id });
      }
    } catch (error) {
      this.update(txnId, { state: "failed", error: error instanceof Error ? error.message : String(error) });
    }
  }
}
