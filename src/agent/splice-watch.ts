// Logs each destination the splice guard excluded (bpf/splice.c): which port,
// which workload, which process spliced. Polled with the agent's other cheap
// checks; a destination is logged again only when it sees new splice reads.
import { describeExclusion, listExclusions, openExclusions, type Exclusion } from '../maps/exclude.js';
import { readRuleReasons } from '../maps/state.js';
import type { MeshMaps } from '../maps/pinned.js';
import { child } from '../log.js';

const log = child('splice');

export class SpliceWatch {
  private readonly logged = new Map<string, bigint>(); // destination -> hits when last logged

  constructor(
    private readonly pinDir: string,
    private readonly maps: MeshMaps,
    private readonly refusing: boolean,
  ) {}

  /** Log new splice exclusions; returns them (for tests). */
  check(): Exclusion[] {
    let all: Exclusion[];
    try {
      const m = openExclusions(this.pinDir, { readOnly: true });
      try {
        all = listExclusions(m);
      } finally {
        m.close();
      }
    } catch {
      return []; // not loaded (an older pin directory): nothing to watch
    }
    const fresh: Exclusion[] = [];
    for (const e of all) {
      if (e.reason !== 'splice') continue;
      const key = `${e.ip}|${e.port}`;
      if ((this.logged.get(key) ?? -1n) >= e.hits) continue;
      this.logged.set(key, e.hits);
      fresh.push(e);
      const ep = this.maps.endpoints.get(`${e.ip}/${e.ip.includes(':') ? 128 : 32}`) ?? null;
      const rule = this.maps.policy.get({ ip: e.ip, port: e.port });
      log.warn(
        {
          destination: { ip: e.ip, port: e.port },
          workloadId: ep?.workloadId ?? null,
          rule: rule ? (readRuleReasons(this.pinDir, rule.ruleId)[0] ?? `rule ${rule.ruleId}`) : null,
          reader: { comm: e.comm, pid: e.pid },
          spliceReads: Number(e.hits),
        },
        `${describeExclusion(e)}: ${
          this.refusing
            ? 'splice was refused with EINVAL (the reader falls back to read(2) or sees the error)'
            : 'the redirected bytes of that connection were lost (this kernel cannot refuse the splice)'
        }; new connections to it keep the normal stack (\`meshbpf exclude del ${e.ip} ${e.port}\` allows bypass again)`,
      );
    }
    return fresh;
  }
}
