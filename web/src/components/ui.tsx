// Small shared pieces: buttons, avatars, dialogs, the connection indicator.

import type { ComponentChildren, JSX } from "preact";
import { useEffect, useRef } from "preact/hooks";

import { hueOf, initials } from "../lib/format";
import type { StreamStatus } from "../lib/stream";
import { Close } from "./icons";

const base =
  "inline-flex items-center justify-center gap-2 rounded-lg px-3.5 min-h-11 text-[15px] font-medium transition-colors duration-150 disabled:opacity-50 disabled:pointer-events-none";

export function Button({
  variant = "primary",
  class: extra = "",
  ...props
}: JSX.ButtonHTMLAttributes<HTMLButtonElement> & { variant?: "primary" | "secondary" | "ghost" | "danger" }) {
  const look = {
    primary: "bg-accent text-accent-ink hover:bg-accent-strong",
    secondary: "bg-surface text-ink border border-line hover:bg-canvas",
    ghost: "text-ink hover:bg-canvas",
    danger: "bg-surface text-red-700 dark:text-red-400 border border-line hover:bg-red-50 dark:hover:bg-red-950/40",
  }[variant];
  return <button type="button" class={`${base} ${look} ${extra}`} {...props} />;
}

export function IconButton({ label, children, ...props }: JSX.HTMLAttributes<HTMLButtonElement> & { label: string }) {
  return (
    <button
      type="button"
      aria-label={label}
      title={label}
      class="inline-flex size-11 shrink-0 items-center justify-center rounded-lg text-muted hover:bg-canvas hover:text-ink transition-colors duration-150"
      {...props}
    >
      {children}
    </button>
  );
}

/** Initials on a colour of the user's own, the same everywhere. */
export function Avatar({ id, name, size = 40 }: { id: string; name: string; size?: number }) {
  const hue = hueOf(id);
  return (
    <span
      aria-hidden="true"
      class="avatar inline-flex shrink-0 items-center justify-center rounded-full font-semibold select-none"
      style={{
        width: `${size}px`,
        height: `${size}px`,
        fontSize: `${Math.round(size * 0.4)}px`,
        "--hue": hue,
      }}
    >
      {initials(name)}
    </span>
  );
}

/** A modal dialog: focus moves in, Escape or the close button closes it. */
export function Dialog({
  title,
  onClose,
  children,
}: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    const opener = document.activeElement as HTMLElement | null;
    dialog.showModal();
    return () => opener?.focus?.();
  }, []);
  return (
    <dialog
      ref={ref}
      aria-labelledby="dialog-title"
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
      onClick={(e) => e.target === ref.current && onClose()}
      class="m-auto w-[min(32rem,calc(100vw-1.5rem))] max-h-[min(40rem,calc(100dvh-2rem))] rounded-2xl bg-surface text-ink p-0 shadow-2xl backdrop:bg-black/40"
    >
      <div class="flex items-center justify-between gap-2 border-b border-line px-5 py-3">
        <h2 id="dialog-title" class="text-lg font-semibold">
          {title}
        </h2>
        <IconButton label="Close" onClick={onClose}>
          <Close />
        </IconButton>
      </div>
      <div class="px-5 py-4">{children}</div>
    </dialog>
  );
}

const STATUS: Record<StreamStatus, { label: string; dot: string }> = {
  connecting: { label: "Connecting…", dot: "bg-amber-500" },
  live: { label: "Live", dot: "bg-emerald-500" },
  reconnecting: { label: "Reconnecting…", dot: "bg-amber-500 animate-pulse" },
  offline: { label: "Offline", dot: "bg-neutral-400" },
};

export function StatusDot({ status }: { status: StreamStatus }) {
  const { label, dot } = STATUS[status];
  return (
    <span class="inline-flex items-center gap-1.5 text-[13px] text-muted" role="status">
      <span class={`size-2 rounded-full ${dot}`} aria-hidden="true" />
      {label}
    </span>
  );
}

export function ErrorLine({ children, onRetry }: { children: ComponentChildren; onRetry?: () => void }) {
  return (
    <div role="alert" class="flex flex-wrap items-center gap-2 rounded-lg bg-red-50 px-3 py-2 text-[13px] text-red-800 dark:bg-red-950/50 dark:text-red-200">
      <span>{children}</span>
      {onRetry && (
        <button type="button" class="font-semibold underline underline-offset-2" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}
