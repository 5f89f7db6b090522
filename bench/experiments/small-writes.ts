// Small-writes experiment: why 64-byte streaming writes are slower through the
// bypass, and whether an sk_msg variant fixes it. Loads EXPERIMENTAL programs
// (bench/experiments/sk_msg_variants.c) into the throwaway node's own maps,
// swaps them in as the sockhash's sk_msg program, measures, and puts the
// product program back. bpf/ and src/ are not changed.
//
// Streaming uses mbrr stream -> mbrr sink (receiver-side bytes) rather than
// iperf3: with cork the small iperf3 control messages would stall too.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Topology } from '../../src/topo/topology.js';
import type { MeshMaps } from '../../src/maps/pinned.js';
import { MAP_NAMES, pinPaths } from '../../src/maps/pinned.js';
import { AttachType, closeFd, map as mapApi, obj as objApi, objGet, prog as progApi, progAttach, type ObjHandle } from '../../src/sys/libbpf.js';
import { PROJECT_ROOT } from '../../src/paths.js';
import { clangArgs } from '../../src/loader/compile.js';
import type { Experiment } from '../lib/report.js';
import { ratio, roundRatio, roundSummary, summarize } from '../lib/stats.js';
import { mbrrPingPong, runIn, spawnIn, waitForListen } from '../lib/peers.js';

export interface ExperimentCtx {
  topo: Topology;
  maps: MeshMaps;
  server: string;
  port: number;
  rrPort: number;
  mbrr: string;
  seconds: number;
  rrSeconds: number;
  rounds: number;
  log: (s: string) => void;
}

type Variant = 'stack' | 'bypass' | 'apply' | 'cork';
const SINK_PORT = 7301;
const SIZES = [64, 256, 4096];

/** The variant object, loaded against the node's pinned maps; attach() makes one of its programs the sockhash's. */
class Variants {
  private readonly o: ObjHandle;
  private readonly socketsFd: number;
  private readonly origFd: number;
  constructor(pinDir: string) {
    const src = join(PROJECT_ROOT, 'bench', 'experiments', 'sk_msg_variants.c');
    const outDir = join(PROJECT_ROOT, 'build', 'bench');
    mkdirSync(outDir, { recursive: true });
    const out = join(outDir, 'sk_msg_variants.o');
    execFileSync('clang', clangArgs(src, out), { stdio: ['ignore', 'pipe', 'pipe'] });
    const p = pinPaths(pinDir);
    this.o = objApi.open(out);
    const fds: number[] = [];
    try {
      for (const m of objApi.maps(this.o)) {
        const name = mapApi.def(m).name;
        if (!MAP_NAMES.includes(name as (typeof MAP_NAMES)[number])) continue;
        const fd = objGet(p.map(name));
        fds.push(fd);
        mapApi.reuseFd(m, fd);
      }
      objApi.load(this.o);
    } catch (e) {
      objApi.close(this.o);
      throw e;
    } finally {
      for (const fd of fds) closeFd(fd);
    }
    this.socketsFd = objGet(p.map('mb_sockets'));
    this.origFd = objGet(p.prog('mb_sk_msg'));
  }
  private fd(name: string): number {
    for (const pr of objApi.programs(this.o)) if (progApi.name(pr) === name) return progApi.fd(pr);
    throw new Error(`no program ${name}`);
  }
  /** New sockets inserted into mb_sockets get this program (existing ones keep theirs). */
  attach(v: Variant): void {
    const fd = v === 'apply' ? this.fd('mbx_apply') : v === 'cork' ? this.fd('mbx_cork') : this.origFd;
    progAttach(fd, this.socketsFd, AttachType.SK_MSG_VERDICT);
  }
  close(): void {
    try {
      this.attach('bypass'); // the product program back on the map
    } finally {
      closeFd(this.socketsFd);
      closeFd(this.origFd);
      objApi.close(this.o);
    }
  }
}

async function streamOnce(ctx: ExperimentCtx, size: number): Promise<number> {
  const sink = spawnIn(ctx.topo, 'b', 'topo', [ctx.mbrr, 'sink', ctx.server, String(SINK_PORT)]);
  let out = '';
  sink.stdout?.on('data', (d) => (out += d));
  const done = new Promise<void>((res) => sink.on('exit', () => res()));
  await waitForListen(ctx.topo, 'b', SINK_PORT);
  await runIn(ctx.topo, 'a', 'topo', [ctx.mbrr, 'stream', ctx.server, String(SINK_PORT), String(size), String(ctx.seconds)], (ctx.seconds + 20) * 1000);
  await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))]);
  if (sink.exitCode === null) sink.kill('SIGKILL');
  const j = JSON.parse(out || '{}') as { bits_per_second?: number };
  if (!j.bits_per_second) throw new Error(`mbrr sink reported nothing (${out.trim()})`);
  return j.bits_per_second;
}

export async function runExperiments(ctx: ExperimentCtx): Promise<Experiment[]> {
  const v = new Variants(ctx.topo.pinDir);
  const key = { ip: ctx.server, port: SINK_PORT };
  const rows: Experiment['rows'] = [];
  const modes: Variant[] = ['stack', 'bypass', 'apply', 'cork'];
  try {
    for (const size of SIZES) {
      const res: Record<Variant, number[]> = { stack: [], bypass: [], apply: [], cork: [] };
      for (let r = 0; r < ctx.rounds; r++) {
        for (const m of r % 2 ? [...modes].reverse() : modes) {
          if (m === 'stack') ctx.maps.policy.delete(key);
          else ctx.maps.policy.set(key, { verdict: 'bypass', ruleId: 1 });
          v.attach(m);
          const bps = await streamOnce(ctx, size);
          res[m].push(bps);
          ctx.log(`[experiment] veth v4 stream ${size} B ${m} round ${r + 1}/${ctx.rounds}: ${(bps / 1e9).toFixed(2)} Gbit/s`);
        }
      }
      const s = summarize(res.stack);
      const b = summarize(res.bypass);
      for (const m of ['bypass', 'apply', 'cork'] as const) {
        const x = summarize(res[m]);
        rows.push({
          metric: `stream: ${m === 'bypass' ? 'bypass (product sk_msg)' : m === 'apply' ? 'bypass + apply_bytes 1 MiB' : 'bypass + cork_bytes 16 KiB'} vs stack`,
          size,
          baseline: roundSummary(s),
          variant: roundSummary(x),
          ratio: roundRatio(ratio(x, s)),
          unit: 'bits/s',
        });
        if (m !== 'bypass') rows.push({ metric: `stream: ${m} vs product bypass`, size, baseline: roundSummary(b), variant: roundSummary(x), ratio: roundRatio(ratio(x, b)), unit: 'bits/s' });
      }
    }
    // Request/response with each variant: apply_bytes must not hurt; cork stalls.
    const rrKey = { ip: ctx.server, port: ctx.rrPort };
    ctx.maps.policy.set(rrKey, { verdict: 'bypass', ruleId: 1 });
    const lat: Record<'bypass' | 'apply', number[]> = { bypass: [], apply: [] };
    for (let r = 0; r < ctx.rounds; r++) {
      for (const m of r % 2 ? (['apply', 'bypass'] as const) : (['bypass', 'apply'] as const)) {
        v.attach(m);
        const x = await mbrrPingPong(ctx.topo, ctx.mbrr, 'a', ctx.server, ctx.rrPort, 64, ctx.rrSeconds);
        lat[m].push(x.p50);
        ctx.log(`[experiment] veth v4 ping-pong 64 B ${m} round ${r + 1}/${ctx.rounds}: p50 ${x.p50.toFixed(1)} us`);
      }
    }
    const lb = summarize(lat.bypass);
    const la = summarize(lat.apply);
    rows.push({ metric: 'ping-pong p50: apply_bytes vs product bypass', size: 64, baseline: roundSummary(lb), variant: roundSummary(la), ratio: roundRatio(ratio(la, lb)), unit: 'µs' });
    v.attach('cork');
    let corkNote: string;
    try {
      const x = await mbrrPingPong(ctx.topo, ctx.mbrr, 'a', ctx.server, ctx.rrPort, 64, 1, 5000);
      corkNote = `cork + 64 B ping-pong completed (p50 ${x.p50.toFixed(1)} µs)`;
    } catch {
      corkNote = 'cork + 64 B ping-pong STALLED: no reply within 5 s (the 64-byte request sits in the cork waiting for 16 KiB)';
    }
    ctx.log(`[experiment] ${corkNote}`);
    ctx.maps.policy.delete(rrKey);
    const last = rows[rows.length - 1];
    if (last) last.note = corkNote;
  } finally {
    ctx.maps.policy.delete(key);
    v.close();
  }
  return [
    {
      name: 'sk_msg variants for small writes (veth pair, IPv4, mbrr stream → mbrr sink)',
      description:
        "Experimental programs in bench/experiments/sk_msg_variants.c, swapped in as the sockhash's sk_msg program for new connections. " +
        '*apply* = `bpf_msg_apply_bytes(1 MiB)` (program and lookup once per MiB). *cork* = `bpf_msg_cork_bytes(16 KiB)` (kernel batches writes before the verdict). ' +
        'Stream throughput measured at the receiver; Nagle on, as iperf3.',
      rows,
    },
  ];
}
