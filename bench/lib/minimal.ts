// The bench's "minimal redirect" (bench/tools/minimal_redirect.c): loaded into a
// cgroup of its own (a sibling of the node's, so meshbpf's programs never see
// its sockets), with its own sockhashes. A yardstick for meshbpf's per-message
// cost: no policy, no socket storage, no counters.
import { execFileSync } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { AttachType, link as linkApi, map as mapApi, obj as objApi, prog as progApi, progAttach, type LinkHandle, type ObjHandle } from '../../src/sys/libbpf.js';
import { clangArgs } from '../../src/loader/compile.js';
import { PROJECT_ROOT } from '../../src/paths.js';

/** Which sk_msg program the sockhashes run: the redirect, or SK_PASS variants (a psock, but the stack). */
export type MinimalProg = 'min_sk_msg' | 'min_pass' | 'min_pass_apply';

export class MinimalRedirect {
  private readonly o: ObjHandle;
  private readonly link: LinkHandle;
  private closed = false;
  constructor(cgroupPath: string) {
    const src = join(PROJECT_ROOT, 'bench', 'tools', 'minimal_redirect.c');
    const outDir = join(PROJECT_ROOT, 'build', 'bench');
    mkdirSync(outDir, { recursive: true });
    const out = join(outDir, 'minimal_redirect.o');
    execFileSync('clang', clangArgs(src, out), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.o = objApi.open(out);
    try {
      objApi.load(this.o);
      this.use('min_sk_msg');
      const cg = openSync(cgroupPath, 'r');
      try {
        this.link = progApi.attachCgroup(this.prog('min_sockops'), cg);
      } finally {
        closeSync(cg);
      }
    } catch (e) {
      objApi.close(this.o);
      throw e;
    }
  }
  private prog(name: string): unknown {
    for (const p of objApi.programs(this.o)) if (progApi.name(p) === name) return p;
    throw new Error(`minimal_redirect.o has no program ${name}`);
  }
  /** Sockets inserted from now on run `name` (a psock keeps the program it got at insert). */
  use(name: MinimalProg): void {
    const fd = progApi.fd(this.prog(name));
    for (const m of objApi.maps(this.o)) if (mapApi.def(m).name.startsWith('min_socks')) progAttach(fd, mapApi.fd(m), AttachType.SK_MSG_VERDICT);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      linkApi.release(this.link); // not pinned: closing the link detaches it
    } finally {
      objApi.close(this.o);
    }
  }
}
