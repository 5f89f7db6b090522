// The last applied desired state's rule reasons, kept next to (not in) the pin
// directory: bpffs holds only BPF objects. Read by `policy explain`.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, join, resolve } from 'node:path';
import type { Exclusions, RuleInfo } from '../policy/types.js';

/**
 * Keyed by the full pin path (its last element plus a hash of all of it): two
 * pin directories with the same last name must not share state.
 */
export function stateDir(pinDir: string): string {
  const full = resolve(pinDir);
  return join(process.env.MESHBPF_STATE_DIR || '/run/meshbpf', `${basename(full)}-${createHash('sha256').update(full).digest('hex').slice(0, 12)}`);
}

export function writeRules(pinDir: string, rules: RuleInfo[]): void {
  const dir = stateDir(pinDir);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, 'rules.json.tmp');
  writeFileSync(tmp, JSON.stringify(rules));
  renameSync(tmp, join(dir, 'rules.json')); // atomic for readers
}

export function readRuleReasons(pinDir: string, ruleId: number): string[] {
  const f = join(stateDir(pinDir), 'rules.json');
  if (!existsSync(f)) return [];
  try {
    const rules = JSON.parse(readFileSync(f, 'utf8')) as RuleInfo[];
    return rules.find((r) => r.id === ruleId)?.reasons ?? [];
  } catch {
    return [];
  }
}

/** The operator's exclusions of the last sync (none: the file is removed), for `policy explain`. */
export function writeExclusions(pinDir: string, ex: Exclusions | undefined): void {
  const dir = stateDir(pinDir);
  mkdirSync(dir, { recursive: true });
  const f = join(dir, 'exclude.json');
  if (!ex) return void rmSync(f, { force: true });
  writeFileSync(`${f}.tmp`, JSON.stringify(ex));
  renameSync(`${f}.tmp`, f);
}

export function readExclusions(pinDir: string): Exclusions | undefined {
  const f = join(stateDir(pinDir), 'exclude.json');
  if (!existsSync(f)) return undefined;
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as Exclusions;
  } catch {
    return undefined;
  }
}
