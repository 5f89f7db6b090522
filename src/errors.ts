// The one error model of meshbpf. Every error the code throws on purpose is a
// MeshbpfError: `userFacing` says its message is written for the person at the
// terminal (one line, says what to do); `code` is the errno name when the
// kernel said no ('ENOENT', 'EPERM', ...). The CLI catches this one base class.
// No FFI here: the names come from Node, the texts from whoever throws.
import { summarize } from './xds/reasons.js';
import { constants as osConstants } from 'node:os';

const ERRNO_NAMES: Record<number, string> = {
  ...Object.fromEntries(Object.entries(osConstants.errno).map(([name, n]) => [n, name])),
  // kernel-internal, not in libc's list, but returned by bpf(2) for "no such op for this map type"
  524: 'ENOTSUPP',
};

/** The errno name for a positive errno ('E<n>' when it has none). */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `E${errno}`;
}

export class MeshbpfError extends Error {
  override name = 'MeshbpfError';
  /** true: the message is meant for the user as it is (one line, actionable) */
  readonly userFacing: boolean;
  /** errno name when the kernel refused ('ENOENT', ...) */
  readonly code: string | undefined;
  constructor(message: string, opts: { userFacing?: boolean; code?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.userFacing = opts.userFacing ?? true;
    this.code = opts.code;
  }
}

/** Something the user can fix: bad input, missing privilege, missing tool. */
export class UserError extends MeshbpfError {
  override name = 'UserError';
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** A string that is not an IP address, prefix or port. */
export class AddressError extends UserError {
  override name = 'AddressError';
}

/** No meshbpf maps at the pin directory. */
export class NotLoadedError extends UserError {
  override name = 'NotLoadedError';
}

/** A kernel map whose key/value sizes are not what this meshbpf encodes. */
export class MapShapeError extends UserError {
  override name = 'MapShapeError';
}

/** A bpf(2)/libbpf call failed. `detail` is the error text (libbpf's strerror when it is bound). */
export class BpfError extends MeshbpfError {
  override name = 'BpfError';
  declare readonly code: string;
  constructor(
    readonly call: string,
    readonly errno: number,
    detail?: string,
  ) {
    super(`${call}: ${detail ?? errnoName(errno)}${ERRNO_NAMES[errno] ? ` (${ERRNO_NAMES[errno]})` : ''}`, { userFacing: false, code: errnoName(errno) });
  }
}

/** A batch map call that stopped part way: `applied` elements were done before the failing one. */
export class BatchError extends BpfError {
  override name = 'BatchError';
  constructor(
    call: string,
    errno: number,
    readonly applied: number,
    detail?: string,
  ) {
    super(call, errno, detail);
  }
}

/**
 * The verifier refused a program. The message is one line (program, object,
 * the log's last line); the whole log is in `log` (the loader logs it at debug).
 */
export class VerifierError extends UserError {
  override name = 'VerifierError';
  constructor(
    readonly program: string,
    readonly object: string,
    readonly log: string,
  ) {
    const last = log.trimEnd().split('\n').filter(Boolean).at(-1) ?? '';
    super(`the kernel verifier rejected ${program} (${object}): ${last} (--log-level debug shows the whole log)`);
  }
}

/** A config_dump / resource file that cannot be used; `reasons` lists why. */
/** Every problem with a snapshot file; each reason names the file once. */
export class XdsParseError extends UserError {
  override name = 'XdsParseError';
  /** the first few reasons (each names the file once); `total` counts them all */
  readonly reasons: string[];
  constructor(
    reasons: string[],
    readonly total = reasons.length,
  ) {
    super(summarize(reasons, total));
    this.reasons = reasons.slice(0, 20);
  }
}

/** An Any (or field) that could not be converted; `path` says where. */
export class ProtoJsonError extends MeshbpfError {
  override name = 'ProtoJsonError';
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(path ? `${path}: ${message}` : message);
  }
}

/** The one line the CLI prints for an error (without the "meshbpf: " prefix). */
export function userMessage(e: unknown): string {
  if (e instanceof BpfError && (e.code === 'EPERM' || e.code === 'EACCES')) return `${e.message}: permission denied (run as root)`;
  if (e instanceof MeshbpfError) return e.message;
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'EACCES' || err?.code === 'EPERM') return `${err.message} (run as root)`;
  return err?.message ?? String(e);
}

/**
 * A sync that was not applied. `state` says what the maps hold afterwards:
 * 'unchanged' (refused before any write), 'rolled back' (a write failed; the
 * previous entries were restored) or 'mixed' (the rollback failed too).
 */
export class SyncError extends UserError {
  override name = 'SyncError';
  constructor(
    message: string,
    readonly state: 'unchanged' | 'rolled back' | 'mixed',
    readonly map?: string,
  ) {
    super(message);
  }
}
