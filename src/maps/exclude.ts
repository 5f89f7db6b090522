// mb_no_bypass: destinations (server ip:port) that never get a bypass, whatever
// mb_policy says. The operator writes it (`meshbpf exclude`), the splice guard
// (bpf/splice.c, bpf/splice_refuse.c) adds a destination whose server read a
// bypassed socket with splice(2). The policy sync never touches it.
import { existsSync } from 'node:fs';
import { objGet } from '../sys/libbpf.js';
import { BpfMap } from './map.js';
import { excludeValue, policyKey, type ExcludeValue, type PolicyKey } from './codecs.js';
import { pinPaths } from './pinned.js';
import { NotLoadedError } from '../errors.js';

export type ExclusionMap = BpfMap<PolicyKey, ExcludeValue>;

export function openExclusions(pinDir: string, opts: { readOnly?: boolean } = {}): ExclusionMap {
  const path = pinPaths(pinDir).map('mb_no_bypass');
  if (!existsSync(path)) {
    throw new NotLoadedError(`no ${path}: meshbpf is not loaded at ${pinDir}, or was loaded by a version without exclusions (run \`meshbpf load --pin-dir ${pinDir}\`)`);
  }
  return new BpfMap(objGet(path, opts.readOnly ?? false), policyKey, excludeValue, 'mb_no_bypass');
}

export interface Exclusion extends ExcludeValue {
  ip: string;
  port: number;
}

export function listExclusions(m: ExclusionMap): Exclusion[] {
  const out: Exclusion[] = [];
  for (const [k, v] of m.entries()) out.push({ ...k, ...v });
  return out.sort((a, b) => (a.ip === b.ip ? a.port - b.port : a.ip < b.ip ? -1 : 1));
}

/** One line per exclusion, for the agent's log and `meshbpf exclude list`. */
export function describeExclusion(e: Exclusion): string {
  const dst = e.ip.includes(':') ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`;
  if (e.reason === 'splice') return `${dst}: splice(2) reader ${e.comm || '?'} (pid ${e.pid}), ${e.hits} splice read(s) of bypassed sockets`;
  if (e.reason === 'operator') return `${dst}: excluded by the operator${e.hits ? ` (${e.hits} splice read(s) seen before)` : ''}`;
  return `${dst}: excluded (reason code unknown to this meshbpf)`;
}
