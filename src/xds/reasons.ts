// Error details are bounded: a count plus the first few. A file of a million
// junk elements must not become a 65 MB lastError, log line or /debug/status.

/** How many reasons an error message carries in full. */
export const SHOWN_REASONS = 5;

/** Longest reason kept whole (a reason quotes input, which can be any length). */
const MAX_REASON = 400;
/** Longest error message as a whole. */
export const MAX_MESSAGE = 4000;

/** `s` cut to `max` characters, saying so. */
export function clip(s: string, max = MAX_MESSAGE): string {
  return s.length > max ? `${s.slice(0, max)}... (${s.length - max} more characters)` : s;
}

/** The first few reasons, then how many more there were. */
export function summarize(reasons: readonly string[], total = reasons.length, shown = SHOWN_REASONS): string {
  const head = reasons
    .slice(0, shown)
    .map((r) => clip(r, MAX_REASON))
    .join('; ');
  return total > shown ? `${head}; and ${total - shown} more (${total} problems)` : head;
}

/** Collects reasons, keeping only the first `keep` (memory stays bounded) and counting all. */
export class Reasons {
  readonly first: string[] = [];
  total = 0;
  constructor(readonly keep = 20) {}
  push(...rs: string[]): void {
    for (const r of rs) this.add(r);
  }
  add(r: string): void {
    this.total++;
    if (this.first.length < this.keep) this.first.push(r);
  }
  addAll(rs: Iterable<string>): void {
    for (const r of rs) this.add(r);
  }
}
