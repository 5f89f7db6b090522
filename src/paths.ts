// Where the project's own files are, whether running from dist/ or not.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync, readFileSync } from 'node:fs';

function findRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(resolve(d, 'package.json')) && existsSync(resolve(d, 'bpf'))) return d;
    d = dirname(d);
  }
  throw new Error('cannot find the meshbpf project root (package.json + bpf/)');
}

export const PROJECT_ROOT = findRoot();
export const BPF_SRC_DIR = resolve(PROJECT_ROOT, 'bpf');
export const BPF_OUT_DIR = resolve(PROJECT_ROOT, 'build', 'bpf');
/** The one version string: package.json's (CLI --version, xDS user_agent_version). */
export const VERSION: string = (JSON.parse(readFileSync(resolve(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
