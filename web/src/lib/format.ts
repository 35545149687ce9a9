// How people, times and days are shown.

/** The name to show for a user: their display name, else their id's localpart. */
export function nameOf(userId: string, displayName?: string | null): string {
  if (displayName?.trim()) return displayName.trim();
  return userId.replace(/^@/, "").split(":")[0];
}

/** One or two letters for an avatar. */
export function initials(name: string): string {
  const words = name
    .replace(/[^\p{L}\p{N}\s]/gu, " ")
    .trim()
    .split(/\s+/)
    .filter(Boolean);
  if (words.length === 0) return "?";
  const first = [...words[0]][0] ?? "?";
  const second = words.length > 1 ? ([...words[words.length - 1]][0] ?? "") : "";
  return (first + second).toUpperCase();
}

/** A hue (0–359) for a user id: the same person, the same colour, everywhere. */
export function hueOf(userId: string): number {
  let hash = 2166136261;
  for (const c of userId) hash = Math.imul(hash ^ c.charCodeAt(0), 16777619);
  return Math.abs(hash) % 360;
}

const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const weekday = new Intl.DateTimeFormat(undefined, { weekday: "long" });
const date = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "long", year: "numeric" });
const shortDate = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });

export function timeOf(ts: number): string {
  return time.format(ts);
}

function startOfDay(ts: number): number {
  const d = new Date(ts);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** A day separator: Today, Yesterday, a weekday this week, else the date. */
export function dayOf(ts: number, now = Date.now()): string {
  const days = Math.round((startOfDay(now) - startOfDay(ts)) / 86_400_000);
  if (days === 0) return "Today";
  if (days === 1) return "Yesterday";
  if (days > 1 && days < 7) return weekday.format(ts);
  return date.format(ts);
}

/** Whether two times fall on the same day. */
export function sameDay(a: number, b: number): boolean {
  return startOfDay(a) === startOfDay(b);
}

/** The time in the conversation list: the time today, else a short date. */
export function listTimeOf(ts: number, now = Date.now()): string {
  return sameDay(ts, now) ? timeOf(ts) : shortDate.format(ts);
}
