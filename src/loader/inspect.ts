// What is loaded under a pin directory, read back from the kernel (read-only):
// programs, where sockops is attached, whether sk_msg is on the sockhash.
// Used by `meshbpf status` and the agent's health check.
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { BpfError } from '../errors.js';
import { AttachType, closeFd, linkInfo, mapInfo, MAP_TYPE_NAMES, objGet, progInfo, progQuery } from '../sys/libbpf.js';
import { MAP_NAMES, pinPaths, PROG_NAMES, SPLICE_GUARD_LINKS, VIP_PROGS } from '../maps/pinned.js';
import { cachedCgroupPathById } from './preflight.js';

export interface Inspection {
  pinDir: string;
  loaded: boolean;
  programs: Array<{ name: string; id: number; tag: string; loadedAt: string | null }>;
  sockops: { linkId: number | null; cgroupId: string | null; cgroup: string | null; attached: boolean };
  skMsg: { attached: boolean };
  /** splice guard parts whose links are pinned (see SPLICE_GUARD_LINKS) */
  spliceGuard: { detect: boolean; refuse: boolean };
  maps: Array<{ name: string; id: number; type: string; capacity: number }>;
  problems: string[];
}

/** Wall-clock time of boot, for BPF load times (ns since boot). */
function bootTimeMs(): number {
  const up = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return Date.now() - up * 1000;
}

export function inspect(pinDir: string): Inspection {
  const p = pinPaths(pinDir);
  const out: Inspection = {
    pinDir,
    loaded: existsSync(p.root),
    programs: [],
    sockops: { linkId: null, cgroupId: null, cgroup: null, attached: false },
    skMsg: { attached: false },
    spliceGuard: {
      detect: SPLICE_GUARD_LINKS.detect.every((n) => existsSync(p.link(n))),
      refuse: SPLICE_GUARD_LINKS.refuse.every((n) => existsSync(p.link(n))),
    },
    maps: [],
    problems: [],
  };
  if (!out.loaded) {
    out.problems.push(`nothing pinned at ${pinDir}`);
    return out;
  }
  const ids = new Map<string, number>();
  const boot = bootTimeMs();
  for (const name of PROG_NAMES) {
    if (!existsSync(p.prog(name))) {
      // A kernel without getpeername hooks loads without them (no VIP resolution).
      if (!VIP_PROGS.includes(name)) out.problems.push(`program ${name} is not pinned`);
      continue;
    }
    const fd = objGet(p.prog(name), true);
    try {
      const i = progInfo(fd);
      ids.set(name, i.id);
      // load_time is ns since boot (CLOCK_BOOTTIME)
      out.programs.push({ name, id: i.id, tag: i.tag, loadedAt: i.loadTimeNs ? new Date(boot + Number(i.loadTimeNs / 1_000_000n)).toISOString() : null });
    } finally {
      closeFd(fd);
    }
  }
  for (const name of MAP_NAMES) {
    if (!existsSync(p.map(name))) {
      out.problems.push(`map ${name} is not pinned`);
      continue;
    }
    const fd = objGet(p.map(name), true);
    try {
      const i = mapInfo(fd);
      out.maps.push({ name, id: i.id, type: MAP_TYPE_NAMES[i.type] ?? String(i.type), capacity: i.maxEntries });
      if (name === 'mb_sockets') {
        try {
          out.skMsg.attached = progQuery(fd, AttachType.SK_MSG_VERDICT).includes(ids.get('mb_sk_msg') ?? -1);
        } catch (e) {
          if (!(e instanceof BpfError)) throw e;
          out.problems.push(`cannot query sk_msg attachment: ${e.message}`);
        }
        if (!out.skMsg.attached) out.problems.push('sk_msg is not attached to mb_sockets');
      }
    } finally {
      closeFd(fd);
    }
  }
  if (!existsSync(p.sockopsLink)) {
    out.problems.push('sockops link is not pinned');
    return out;
  }
  const lfd = objGet(p.sockopsLink);
  try {
    const li = linkInfo(lfd);
    out.sockops.linkId = li.id;
    out.sockops.cgroupId = li.cgroupId ? li.cgroupId.toString() : null;
    const cg = li.cgroupId ? cachedCgroupPathById(li.cgroupId) : undefined;
    out.sockops.cgroup = cg ?? null;
    if (cg) {
      const cfd = openSync(cg, 'r');
      try {
        out.sockops.attached = progQuery(cfd, AttachType.CGROUP_SOCK_OPS).includes(ids.get('mb_sockops') ?? -1);
      } finally {
        closeSync(cfd);
      }
    }
    if (!out.sockops.attached) out.problems.push(li.cgroupId ? `sockops is not attached to ${cg ?? `cgroup id ${li.cgroupId}`}` : 'the sockops link was detached');
  } finally {
    closeFd(lfd);
  }
  return out;
}
