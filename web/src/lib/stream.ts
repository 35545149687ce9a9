// The live stream (`GET /api/v1/events`) as an EventSource on the session cookie. The
// browser reconnects by itself with `Last-Event-ID`, so nothing is missed; when the
// server ends the stream for good (a lost session, a daemon restart) it is opened
// again with backoff and, since events may have been missed, the app refetches.

export type StreamStatus = "connecting" | "live" | "reconnecting" | "offline";

export const KINDS = ["message", "membership", "room", "typing", "read", "receipt"] as const;
export type EventKind = (typeof KINDS)[number];

export interface StreamHandlers {
  /** An event of the user's stream. */
  event(kind: EventKind, data: unknown): void;
  /** Events may have been missed: refetch rooms and the open conversation. */
  reset(): void;
  status(status: StreamStatus): void;
  /** The server refused the stream: find out whether the session still stands. */
  refused(): Promise<boolean>;
}

/** What of EventSource the stream uses (a fake in tests). */
export interface Source {
  readyState: number;
  onopen: ((e: Event) => void) | null;
  onerror: ((e: Event) => void) | null;
  addEventListener(type: string, listener: (e: MessageEvent) => void): void;
  close(): void;
}
export type SourceFactory = (url: string) => Source;

const CLOSED = 2;
const MAX_BACKOFF_MS = 30_000;

export class LiveStream {
  private source: Source | undefined;
  private backoff = 1000;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  /** Whether the next open follows a break that may have lost events. */
  private broken = false;

  constructor(
    private readonly handlers: StreamHandlers,
    private readonly factory: SourceFactory = (url) => new EventSource(url),
    private readonly schedule: (fn: () => void, ms: number) => ReturnType<typeof setTimeout> = setTimeout,
  ) {}

  open(): void {
    this.stopped = false;
    this.handlers.status(this.broken ? "reconnecting" : "connecting");
    const source = this.factory("/api/v1/events");
    this.source = source;
    source.onopen = () => {
      this.backoff = 1000;
      this.handlers.status("live");
      if (this.broken) {
        this.broken = false;
        this.handlers.reset();
      }
    };
    source.onerror = () => {
      if (source !== this.source || this.stopped) return;
      if (source.readyState !== CLOSED) {
        // The browser tries again, with Last-Event-ID: nothing is lost.
        this.handlers.status("reconnecting");
        return;
      }
      this.handlers.status("offline");
      this.broken = true;
      void this.handlers.refused().then((stands) => {
        if (stands && !this.stopped) {
          this.timer = this.schedule(() => this.open(), this.backoff);
          this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
        }
      });
    };
    for (const kind of KINDS) {
      source.addEventListener(kind, (e) => {
        let data: unknown;
        try {
          data = JSON.parse(e.data);
        } catch {
          return;
        }
        this.handlers.event(kind, data);
      });
    }
    source.addEventListener("reset", () => this.handlers.reset());
  }

  /** The network came back: try at once rather than after the backoff. */
  retryNow(): void {
    if (this.stopped || this.source?.readyState !== CLOSED) return;
    clearTimeout(this.timer);
    this.open();
  }

  close(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.source?.close();
    this.source = undefined;
  }
}
