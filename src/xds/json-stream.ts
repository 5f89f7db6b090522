// JSON from a file descriptor without the whole text in memory. A snapshot
// file of 50 MiB held its bytes and its decoded string (and then the string
// beside the parsed document): here the file is read in windows, the big
// containers at the top (the config_dump's lists, a resource list) are built
// here, and every value that closes within a short span (each resource) is
// handed to JSON.parse as its own small string. The result is what JSON.parse
// of the whole text gives. Anything this reader does not handle exactly as
// JSON.parse would (invalid JSON, a huge string, deep nesting of big
// containers) makes it give up (undefined), and the caller parses the whole
// text as before: same errors, same YAML fallback.
import fs from 'node:fs';
import type { Json } from './types.js';

/** A value that closes within this many bytes is parsed by JSON.parse in one piece (a young-generation string). */
const LEAF = 64 * 1024;
const CHUNK = 1024 * 1024;
/** containers nested deeper than this are always parsed whole */
const MAX_DEPTH = 8;

class GiveUp extends Error {}
const giveUp = (): never => {
  throw new GiveUp();
};

const WS = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

export interface StreamOptions {
  /** stop (and say so) once more than this many bytes were read: the file grew */
  maxBytes: number;
}

export type StreamResult = { value: Json } | { giveUp: true } | { grew: true };

/**
 * Parse the JSON document in fd from offset 0. Does not parse documents whose first
 * significant byte (after an optional UTF-8 BOM) is not `{` or `[` (YAML, scalars).
 */
export function parseJsonFd(fd: number, opts: StreamOptions): StreamResult {
  const r = new Reader(fd, opts);
  try {
    r.fill(3);
    if (r.buf[0] === 0xef && r.buf[1] === 0xbb && r.buf[2] === 0xbf) r.pos = 3;
    r.skipWs();
    const c = r.peek();
    if (c !== 0x7b && c !== 0x5b) return { giveUp: true };
    const value = r.value(0);
    r.skipWs();
    if (r.peek() !== -1) return { giveUp: true };
    return { value };
  } catch (e) {
    if (e instanceof GiveUp) return r.grew ? { grew: true } : { giveUp: true };
    throw e;
  }
}

class Reader {
  buf = Buffer.allocUnsafe(CHUNK + LEAF);
  pos = 0;
  private hi = 0;
  private eof = false;
  private total = 0;
  grew = false;
  constructor(
    private readonly fd: number,
    private readonly opts: StreamOptions,
  ) {}

  /** Make at least `need` bytes available from pos (fewer only at the end of the file). */
  fill(need: number): void {
    if (this.hi - this.pos >= need || this.eof) return;
    if (this.pos > 0) {
      this.buf.copyWithin(0, this.pos, this.hi);
      this.hi -= this.pos;
      this.pos = 0;
    }
    if (this.buf.length < need + CHUNK) {
      const b = Buffer.allocUnsafe(need + CHUNK);
      this.buf.copy(b, 0, 0, this.hi);
      this.buf = b;
    }
    while (this.hi < need && !this.eof) {
      const n = fs.readSync(this.fd, this.buf, this.hi, this.buf.length - this.hi, this.total);
      if (n === 0) {
        this.eof = true;
        break;
      }
      this.hi += n;
      this.total += n;
      if (this.total > this.opts.maxBytes) {
        this.grew = true;
        giveUp();
      }
    }
  }

  peek(): number {
    if (this.pos >= this.hi) this.fill(1);
    return this.pos < this.hi ? this.buf[this.pos]! : -1;
  }

  skipWs(): void {
    for (;;) {
      if (this.pos >= this.hi) {
        this.fill(1);
        if (this.pos >= this.hi) return;
      }
      if (!WS(this.buf[this.pos]!)) return;
      this.pos++;
    }
  }

  /** JSON.parse of bytes [pos, end) as UTF-8; invalid JSON gives up. */
  private parseSlice(end: number): Json {
    const text = this.buf.toString('utf8', this.pos, end);
    this.pos = end;
    try {
      return JSON.parse(text) as Json;
    } catch {
      return giveUp();
    }
  }

  /** End (exclusive) of the container starting at pos if it closes within `limit`, else -1. */
  private containerEnd(limit: number): number {
    const b = this.buf;
    let depth = 0;
    let inStr = false;
    for (let i = this.pos; i < limit; i++) {
      const c = b[i]!;
      if (inStr) {
        if (c === 0x5c) i++;
        else if (c === 0x22) inStr = false;
      } else if (c === 0x22) inStr = true;
      else if (c === 0x7b || c === 0x5b) depth++;
      else if (c === 0x7d || c === 0x5d) {
        if (--depth === 0) return i + 1;
      }
    }
    return -1;
  }

  /** End (exclusive) of the string starting at pos (within the window), or give up. */
  private stringEnd(): number {
    this.fill(LEAF);
    const b = this.buf;
    for (let i = this.pos + 1; i < this.hi; i++) {
      const c = b[i]!;
      if (c === 0x5c) i++;
      else if (c === 0x22) return i + 1;
    }
    return giveUp(); // longer than the window, or unterminated: the whole-text path decides
  }

  value(depth: number): Json {
    this.skipWs();
    this.fill(LEAF + 1);
    const c = this.peek();
    if (c === 0x7b || c === 0x5b) {
      const end = this.containerEnd(Math.min(this.hi, this.pos + LEAF));
      if (end >= 0) return this.parseSlice(end);
      if (depth >= MAX_DEPTH || this.hi - this.pos <= LEAF) return giveUp(); // deep, or unterminated at the end of the file
      return c === 0x7b ? this.object(depth) : this.array(depth);
    }
    if (c === 0x22) return this.parseSlice(this.stringEnd());
    // number, true, false, null: up to the next delimiter
    const b = this.buf;
    let i = this.pos;
    while (i < this.hi) {
      const x = b[i]!;
      if (x === 0x2c || x === 0x5d || x === 0x7d || WS(x)) break;
      i++;
    }
    if (i === this.pos || i - this.pos > 1024) return giveUp();
    return this.parseSlice(i);
  }

  private expect(c: number): void {
    this.skipWs();
    if (this.peek() !== c) giveUp();
    this.pos++;
  }

  private object(depth: number): Json {
    this.pos++; // {
    const o: Record<string, Json> = {};
    this.skipWs();
    if (this.peek() === 0x7d) {
      this.pos++;
      return o;
    }
    for (;;) {
      this.skipWs();
      if (this.peek() !== 0x22) return giveUp();
      const key = this.parseSlice(this.stringEnd()) as string;
      this.expect(0x3a); // :
      const v = this.value(depth + 1);
      // as JSON.parse: an own property, also for "__proto__"; a repeated key keeps its place, the last value wins
      if (key === '__proto__') Object.defineProperty(o, key, { value: v, writable: true, enumerable: true, configurable: true });
      else o[key] = v;
      this.skipWs();
      const c = this.peek();
      this.pos++;
      if (c === 0x7d) return o;
      if (c !== 0x2c) return giveUp();
    }
  }

  private array(depth: number): Json {
    this.pos++; // [
    const a: Json[] = [];
    this.skipWs();
    if (this.peek() === 0x5d) {
      this.pos++;
      return a;
    }
    for (;;) {
      a.push(this.value(depth + 1));
      this.skipWs();
      const c = this.peek();
      this.pos++;
      if (c === 0x5d) return a;
      if (c !== 0x2c) return giveUp();
    }
  }
}
