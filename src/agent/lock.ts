// One agent per pin directory. The lock is a Linux abstract unix socket named
// after the full pin path: the kernel keeps the name unique and frees it when
// the process dies (no stale lock file after a SIGKILL). Whoever connects to it
// reads the owner's pid. Abstract names are per network namespace: agents run
// in the host's, so two agents of one node meet there.
import { createHash } from 'node:crypto';
import { connect, createServer, type Server } from 'node:net';
import { resolve } from 'node:path';
import { UserError } from '../errors.js';

function lockName(pinDir: string): string {
  return `\0meshbpf-agent:${createHash('sha256').update(resolve(pinDir)).digest('hex').slice(0, 32)}`;
}

export class AgentLockedError extends UserError {
  override name = 'AgentLockedError';
  constructor(
    message: string,
    readonly pid: number | undefined,
  ) {
    super(message);
  }
}

/** The pid of the agent that owns pinDir, or undefined when none does. */
export function lockOwner(pinDir: string, timeoutMs = 2000): Promise<number | undefined> {
  return new Promise((res) => {
    const s = connect({ path: lockName(pinDir) });
    let text = '';
    const done = (v: number | undefined): void => {
      s.destroy();
      res(v);
    };
    s.setTimeout(timeoutMs, () => done(Number.NaN)); // someone holds it but does not say who
    s.on('data', (d) => (text += d.toString()));
    s.on('end', () => done(/^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN));
    s.on('error', () => done(undefined)); // ECONNREFUSED / ENOENT: nobody
  });
}

/** Take the lock for pinDir, or throw AgentLockedError naming the owner's pid. */
export async function acquireLock(pinDir: string): Promise<{ release(): Promise<void> }> {
  const server: Server = createServer((c) => c.end(`${process.pid}\n`));
  try {
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen({ path: lockName(pinDir) }, () => res());
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    const pid = await lockOwner(pinDir);
    throw new AgentLockedError(`another meshbpf agent${pid !== undefined && !Number.isNaN(pid) ? ` (pid ${pid})` : ''} owns ${resolve(pinDir)}; stop it first`, pid);
  }
  server.unref(); // the lock must not keep the process alive
  return {
    release: () => new Promise<void>((res) => server.close(() => res())),
  };
}
