// `meshbpf agent --inpod-netns-dir DIR`: enroll every pod network namespace
// that appears in DIR (containerd and CRI-O pin them in /var/run/netns) for
// in-pod capture skipping, and remove the ones that disappear. A namespace is
// seen at once through fs.watch and, as a fallback, at the next rescan; CNI
// creates it before the pod's containers start, so its servers' listeners are
// known. What cannot be enrolled (no address yet, not a namespace) is retried
// at every scan and logged once per distinct reason.
import { existsSync, readdirSync, watch, type FSWatcher } from 'node:fs';
import { join, resolve } from 'node:path';
import { attachInpod, detachInpod, listInpod } from '../loader/inpod.js';
import { child } from '../log.js';

const log = child('inpod');

export class InpodWatch {
  private readonly failed = new Map<string, string>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private readonly dir: string;

  constructor(
    private readonly pinDir: string,
    dir: string,
    private readonly prefix = '',
    private readonly intervalMs = 2000,
  ) {
    this.dir = resolve(dir);
  }

  start(): void {
    this.scan();
    try {
      this.watcher = watch(this.dir, () => {
        if (this.soon) return;
        this.soon = setTimeout(() => {
          this.soon = undefined;
          this.scan();
        }, 100);
      });
      this.watcher.on('error', () => undefined); // the rescan keeps going
    } catch (e) {
      log.warn({ dir: this.dir, err: (e as Error).message }, 'cannot watch the netns directory; rescanning only');
    }
    this.timer = setInterval(() => this.scan(), this.intervalMs);
    this.timer.unref();
  }

  /** One pass: enroll new namespaces, remove vanished ones. Returns the enrolled paths (tests). */
  scan(): string[] {
    let names: string[] = [];
    try {
      names = existsSync(this.dir) ? readdirSync(this.dir).filter((n) => n.startsWith(this.prefix)) : [];
    } catch (e) {
      this.once(this.dir, `cannot read: ${(e as Error).message}`);
    }
    const present = new Set(names.map((n) => join(this.dir, n)));
    const recorded = listInpod(this.pinDir);
    for (const a of recorded) {
      if (!a.netns.startsWith(`${this.dir}/`) || (present.has(a.netns) && existsSync(a.netns))) continue;
      try {
        detachInpod(this.pinDir, a.netns);
      } catch (e) {
        this.once(a.netns, (e as Error).message);
      }
    }
    const have = new Set(recorded.map((a) => a.netns));
    for (const p of present) {
      if (have.has(p)) continue;
      try {
        attachInpod(this.pinDir, p);
        this.failed.delete(p);
      } catch (e) {
        this.once(p, (e as Error).message);
      }
    }
    return listInpod(this.pinDir).map((a) => a.netns);
  }

  private once(what: string, why: string): void {
    if (this.failed.get(what) === why) return;
    this.failed.set(what, why);
    log.warn({ netns: what, err: why }, 'in-pod enrollment: will retry');
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.soon) clearTimeout(this.soon);
    this.watcher?.close();
  }
}
