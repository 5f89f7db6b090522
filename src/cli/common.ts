// Option builders and output helpers shared by every command module.
import { InvalidArgumentError, Option } from 'commander';
import { DEFAULT_PIN_DIR } from '../maps/pinned.js';

export function intArg(name: string, min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v.trim())) throw new InvalidArgumentError(`${name} must be a whole number`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be between ${min} and ${max}`);
    return n;
  };
}

export function outputOption(): Option {
  return new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table');
}

export function pinDirOption(): Option {
  return new Option('--pin-dir <dir>', 'bpffs directory holding meshbpf pins').default(DEFAULT_PIN_DIR).env('MESHBPF_PIN_DIR');
}

export function print(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
}

export function json(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x), 2);
}
