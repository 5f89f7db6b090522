// Command line of `npm run bench` (pure, unit-tested).
import { UserError } from '../../src/errors.js';
export type Family = 'v4' | 'v6';
export type TopoKind = 'veth' | 'bridge';

export interface BenchOptions {
  quick: boolean;
  seconds: number; // per throughput run
  rrSeconds: number; // per latency / connection-rate run
  rounds: number;
  out: string;
  sizes: number[]; // throughput write sizes
  rrSizes: number[]; // request/response sizes
  families: Family[];
  topologies: TopoKind[];
  experiments: boolean;
  /** which parts run (default all): throughput, latency, connect, vip */
  only: Part[];
  /** throughput also through SK_PASS variants of the minimal program (a psock, but the stack) */
  variants: boolean;
  /** throughput modes to run (a focused run, e.g. under perf): default all */
  modes?: string[];
}

export type Part = 'throughput' | 'latency' | 'connect' | 'vip';
export const PARTS: Part[] = ['throughput', 'latency', 'connect', 'vip'];

export const FULL_SIZES = [1, 64, 256, 1024, 4096, 16384, 65536, 1 << 20];
export const RR_SIZES = [64, 1024, 16384];

export const USAGE = `usage: npm run bench -- [--quick] [--seconds N] [--rounds N] [--out DIR]
                          [--family v4|v6|both] [--topology veth|bridge|both] [--no-experiments]
                          [--sizes N,N,...] [--only throughput,latency,connect,vip] [--variants]
  --quick       smoke run: one size per metric, one round, 1 s runs, IPv4, veth only
  --seconds N   seconds per iperf3 run (default 2; latency and connection-rate runs take half, at least 1)
  --rounds N    alternating stack/bypass rounds per figure (default 3; the median is reported)
  --out DIR     where report.json, REPORT.md and throughput-ratio.svg go (default bench/report)
  --sizes LIST  throughput write sizes in bytes (default ${FULL_SIZES.join(',')})
  --only LIST   run only these parts (a focused run; the report says which ran)
  --variants    throughput also through SK_PASS variants of the minimal redirect (psock cost)
  --modes LIST  throughput through these modes only (stack,bypass,minimal,unix,pass,passApply; for profiling)`;

export class ArgError extends UserError {
  override name = 'ArgError';
}

function int(name: string, v: string | undefined, lo: number, hi: number): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < lo || n > hi) throw new ArgError(`${name} takes an integer from ${lo} to ${hi}, got ${JSON.stringify(v)}`);
  return n;
}

export function parseArgs(argv: string[], defaultOut: string): BenchOptions {
  let quick = false;
  let seconds: number | undefined;
  let rounds: number | undefined;
  let out = defaultOut;
  let family: string | undefined;
  let topology: string | undefined;
  let experiments = true;
  let sizes: number[] | undefined;
  let only: Part[] | undefined;
  let variants = false;
  let modes: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--quick':
        quick = true;
        break;
      case '--seconds':
        seconds = int('--seconds', value(), 1, 60);
        break;
      case '--rounds':
        rounds = int('--rounds', value(), 1, 15);
        break;
      case '--out': {
        const v = value();
        if (!v) throw new ArgError('--out takes a directory');
        out = v;
        break;
      }
      case '--family':
        family = value();
        if (!['v4', 'v6', 'both'].includes(family ?? '')) throw new ArgError('--family takes v4, v6 or both');
        break;
      case '--topology':
        topology = value();
        if (!['veth', 'bridge', 'both'].includes(topology ?? '')) throw new ArgError('--topology takes veth, bridge or both');
        break;
      case '--no-experiments':
        experiments = false;
        break;
      case '--sizes': {
        const v = value() ?? '';
        sizes = v.split(',').map((x) => int('--sizes', x, 1, 1 << 24));
        break;
      }
      case '--only': {
        const v = (value() ?? '').split(',');
        for (const x of v) if (!PARTS.includes(x as Part)) throw new ArgError(`--only takes a list of ${PARTS.join(', ')}`);
        only = v as Part[];
        break;
      }
      case '--variants':
        variants = true;
        break;
      case '--modes':
        modes = (value() ?? '').split(',').filter(Boolean);
        if (!modes.length || modes.some((m) => !['stack', 'bypass', 'minimal', 'unix', 'pass', 'passApply'].includes(m)))
          throw new ArgError('--modes takes a list of stack, bypass, minimal, unix, pass, passApply');
        break;
      case '-h':
      case '--help':
        throw new ArgError(USAGE);
      default:
        throw new ArgError(`unknown option ${a}\n${USAGE}`);
    }
  }
  const s = seconds ?? (quick ? 1 : 2);
  const fams: Family[] = family === 'both' || (family === undefined && !quick) ? ['v4', 'v6'] : [(family ?? 'v4') as Family];
  const topos: TopoKind[] = topology === 'both' || (topology === undefined && !quick) ? ['veth', 'bridge'] : [(topology ?? 'veth') as TopoKind];
  return {
    quick,
    seconds: s,
    rrSeconds: Math.max(1, Math.round(s / 2)),
    rounds: rounds ?? (quick ? 1 : 3),
    out,
    sizes: sizes ?? (quick ? [16384] : FULL_SIZES),
    rrSizes: quick ? [64] : RR_SIZES,
    families: fams,
    topologies: topos,
    experiments: experiments && !quick && (only === undefined || only.includes('throughput')),
    only: only ?? PARTS,
    variants,
    ...(modes ? { modes } : {}),
  };
}
