// The node agent: a thin loop around pure pieces.
//   source (ADS | file) --snapshot--> compile (pure) --desired--> syncMaps --> kernel
// It loads or adopts the pinned programs, keeps the maps in step with the
// control plane, and serves metrics, health and a read-only debug view.
// Stopping leaves programs attached and maps pinned (accelerated connections
// keep flowing through a restart) unless unloadOnExit is set.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { load, unload, type LoadOptions, type LoadResult } from '../loader/load.js';
import { inspect, type Inspection } from '../loader/inspect.js';
import { openMaps, readStats, type MeshMaps } from '../maps/pinned.js';
import { DesiredEncoder, encodeDesired, planSync, type EncodedState, type EntryCounts, type SyncCounts } from '../maps/plan.js';
import { readRaw, SyncError, syncMaps } from '../maps/sync.js';
import { stateDir, writeExclusions, writeRules } from '../maps/state.js';
import { compile, compileCheckedInto, compileInto, type CompiledSummary } from '../policy/index.js';
import { collectBeforeOutput, collectGarbage, LARGE_SYNC } from '../gc.js';
import type { Exclusions, Locality } from '../policy/types.js';
import type { SnapshotValidator, XdsSnapshot, XdsSource, XdsStateEvent, XdsStatus } from '../xds/types.js';
import { child } from '../log.js';
import { AgentMetrics } from './metrics.js';
import { applySidecar, SIDECAR_NEEDS_COOKIE, type SidecarSettings } from '../maps/sidecar.js';
import { probeFeatures } from '../loader/features.js';
import { UserError } from '../errors.js';
import { startServer } from './server.js';
import { acquireLock } from './lock.js';
import { existsSync } from 'node:fs';
import { pinPaths, PINNED_MAPS } from '../maps/pinned.js';
import type { Stats } from '../maps/codecs.js';
import { SpliceWatch } from './splice-watch.js';
import { InpodWatch } from './inpod-watch.js';

const log = child('agent');

/** A snapshot compiled for a sync: the entries only as encoded bytes and counts (no object per entry). */
interface Compiled {
  state: CompiledSummary;
  entries: EntryCounts;
  encoded: EncodedState;
}

function compileEncoded(snapshot: XdsSnapshot, locality: Locality): Compiled {
  const encoder = new DesiredEncoder();
  const state = compileInto(snapshot, locality, encoder, { beforeOutput: collectBeforeOutput });
  return { state, entries: encoder.entries, encoded: encoder.done() };
}

export interface AgentOptions extends LoadOptions {
  pinDir: string;
  locality: Locality;
  /** sidecar pairing settings; undefined = pairing off */
  sidecar?: SidecarSettings;
  /** builds the xDS source; the agent hands it the validator (compile once, NACK on problems) */
  source: (validate: SnapshotValidator) => XdsSource;
  /** host:port for metrics/health/debug; '' disables the server */
  listen: string;
  unloadOnExit?: boolean;
  /** coalesce bursts of snapshots (ms) */
  debounceMs?: number;
  /** how often to look at the map-full counter for the rate-limited log line */
  watchIntervalMs?: number;
  /** Istio ambient: enroll every pod netns that appears here (src/agent/inpod-watch.ts) */
  inpodNetnsDir?: string;
  /** only namespaces whose file name starts with this */
  inpodNetnsPrefix?: string;
}

export interface AgentStatus {
  pid: number;
  startedAt: string;
  pinDir: string;
  listen: string;
  load: { upgraded: boolean; cgroup: string } | null;
  synced: boolean;
  lastSync: { at: string; ms: number; counts: SyncCounts; error?: string } | null;
  desired: { endpoints: number; policies: number; bypass: number; proxy: number; skipped: number } | null;
  xds: XdsStatus;
  /** operator exclusions (WDS): never bypassed */
  exclude?: Exclusions;
  nodeName?: string;
}

/** Desired-state counts kept between syncs (the full state is rebuilt on request). */
interface DesiredSummary {
  endpoints: number;
  policies: number;
  bypass: number;
  proxy: number;
  skipped: number;
}

export class Agent {
  private maps: MeshMaps | undefined;
  readonly source: XdsSource;
  /** the state compiled while validating the snapshot the source is about to emit */
  private precompiled: (Compiled & { snapshot: XdsSnapshot; ms: number }) | undefined;
  private server: Server | undefined;
  private loadResult: LoadResult | undefined;
  private desired: DesiredSummary | undefined;
  private pending: XdsSnapshot | undefined;
  private timer: NodeJS.Timeout | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  private syncing = false;
  private stopped = false;
  private lastMapFull = 0n;
  private spliceWatch: SpliceWatch | undefined;
  private inpodWatch: InpodWatch | undefined;
  private lock: { release(): Promise<void> } | undefined;
  /** pins found missing (unloaded behind the agent's back); logged once */
  private pinsGone = false;
  readonly metrics: AgentMetrics;
  readonly startedAt = new Date();
  lastSync: AgentStatus['lastSync'] = null;
  listenAddress = '';

  constructor(readonly opts: AgentOptions) {
    this.metrics = new AgentMetrics(this);
    this.source = opts.source((s) => this.validate(s));
  }

  /** The source's veto: compile with this node's locality; problems become the NACK reason. */
  private validate(snapshot: XdsSnapshot): string | undefined {
    const t0 = performance.now();
    // Entries encoded as they are built: no object per entry is kept (a large sync's peak).
    const encoder = new DesiredEncoder();
    const r = compileCheckedInto(snapshot, this.opts.locality, encoder, { beforeOutput: collectBeforeOutput });
    if ('error' in r) return r.error;
    // The compiler's working state is garbage now: collected before the sync allocates
    // (V8 would collect it late, on top of the encoded buffers: a large sync's peak RSS).
    if (encoder.entries.endpoints + encoder.entries.policies > LARGE_SYNC) collectGarbage();
    const encoded = encoder.done();
    // A snapshot that cannot fit is NACKed here, before anything is written.
    if (this.maps) {
      for (const [name, n, cap, flag] of [
        ['mb_endpoints', encoded.endpoints.size, this.maps.endpoints.info.maxEntries, '--max-endpoints'],
        ['mb_policy', encoded.policy.size, this.maps.policy.info.maxEntries, '--max-policies'],
      ] as const) {
        if (n > cap) return `${name}: the snapshot needs ${n} entries, the map holds ${cap} (${flag})`;
      }
    }
    this.precompiled = { snapshot, state: r.state, entries: encoder.entries, encoded, ms: performance.now() - t0 };
    return undefined;
  }

  /** Load or adopt, reconcile, subscribe, serve. */
  async start(): Promise<void> {
    // Before anything is loaded: a second agent would overwrite the first's verdicts.
    this.lock = await acquireLock(this.opts.pinDir);
    this.loadResult = load(this.opts);
    log.info({ pinDir: this.opts.pinDir, cgroup: this.loadResult.cgroup.path, adopted: this.loadResult.upgraded }, this.loadResult.upgraded ? 'adopted pinned meshbpf' : 'loaded meshbpf');
    this.maps = openMaps(this.opts.pinDir);
    if (this.opts.sidecar && !probeFeatures().netnsCookie) throw new UserError(SIDECAR_NEEDS_COOKIE);
    const sc = applySidecar(this.maps, this.opts.sidecar);
    if (this.opts.sidecar) log.info({ captured: this.opts.sidecar.cidrs, ...this.opts.sidecar.config }, `sidecar pairing on for ${sc.captured} captured prefixes`);
    this.lastMapFull = readStats(this.maps.stats).sockets_map_full;
    this.spliceWatch = new SpliceWatch(this.opts.pinDir, this.maps, this.loadResult.spliceGuard.refuse);

    const src = this.source;
    src.on('snapshot', (s) => this.schedule(s));
    src.on('state', (e) => this.onSourceState(e));
    if (this.opts.listen) {
      this.server = await startServer(this, this.opts.listen);
      const a = this.server.address();
      this.listenAddress = a && typeof a === 'object' ? `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}` : this.opts.listen;
      log.info({ listen: this.listenAddress }, 'serving /metrics /healthz /readyz /debug/state /debug/status');
    }
    this.writeAgentFile();
    await src.start();
    // A source that already holds a snapshot (file source) may have emitted before we listened.
    const snap = src.snapshot();
    if (snap.clusters.size + snap.endpoints.size + snap.listeners.size > 0) this.schedule(snap);
    // Map-full is rare; one look every few seconds is enough (no busy polling).
    this.watchTimer = setInterval(() => this.watchMapFull(), this.opts.watchIntervalMs ?? 5000);
    this.watchTimer.unref();
    if (this.opts.inpodNetnsDir) {
      this.inpodWatch = new InpodWatch(this.opts.pinDir, this.opts.inpodNetnsDir, this.opts.inpodNetnsPrefix ?? '');
      this.inpodWatch.start();
      log.info({ dir: this.opts.inpodNetnsDir, prefix: this.opts.inpodNetnsPrefix ?? '' }, 'enrolling pod namespaces for in-pod capture skipping');
    }
  }

  private onSourceState(e: XdsStateEvent): void {
    this.metrics.onSourceState(e);
    if (e.kind === 'nack' || e.kind === 'error') log.warn(e, 'xDS update rejected; keeping the last good state');
    else if (e.kind === 'disconnected') log.warn(e, 'control plane disconnected; the maps keep the last good state');
    else log.debug(e, 'xDS');
  }

  private schedule(s: XdsSnapshot): void {
    this.pending = s;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.syncNow();
    }, this.opts.debounceMs ?? 50);
  }

  /** Compile the pending snapshot and make the kernel maps match it. */
  async syncNow(): Promise<void> {
    if (this.syncing || !this.pending || !this.maps) return;
    this.syncing = true;
    const snap = this.pending;
    this.pending = undefined;
    const pre = this.precompiled?.snapshot === snap ? this.precompiled : undefined;
    this.precompiled = undefined;
    // snapshot -> converged includes the compile, done while validating
    const t0 = performance.now() - (pre?.ms ?? 0);
    let applied = false;
    try {
      const { state: desired, entries, encoded } = pre ?? compileEncoded(snap, this.opts.locality);
      // Reconcile against what the kernel really holds (also repairs drift).
      const r = syncMaps(this.maps, desired, undefined, encoded);
      applied = true;
      this.desired = { endpoints: entries.endpoints, policies: entries.policies, bypass: entries.bypass, proxy: entries.proxy, skipped: desired.skipped.length };
      writeRules(this.opts.pinDir, desired.rules);
      writeExclusions(this.opts.pinDir, this.opts.locality.exclude);
      const ms = performance.now() - t0;
      this.lastSync = { at: new Date().toISOString(), ms, counts: r.counts };
      this.metrics.observeSync(ms / 1000, true);
      log.info({ ms: Math.round(ms), endpoints: r.counts.endpoints, policies: r.counts.policies }, 'maps synced');
      if (entries.endpoints + entries.policies > LARGE_SYNC) setImmediate(collectGarbage);
    } catch (e) {
      const ms = performance.now() - t0;
      this.lastSync = { at: new Date().toISOString(), ms, counts: this.lastSync?.counts ?? emptyCounts(), error: (e as Error).message };
      this.metrics.observeSync(ms / 1000, false);
      // Say what the maps really hold now.
      const what =
        e instanceof SyncError
          ? {
              unchanged: 'sync refused; the maps are unchanged',
              'rolled back': 'sync failed; the maps were rolled back to the previous state',
              mixed: 'sync failed and could not be rolled back; the maps are mixed until the next sync',
            }[e.state]
          : applied
            ? 'maps synced, but the step after failed'
            : 'sync failed before any write; the maps are unchanged';
      log.error({ err: (e as Error).message }, what);
    } finally {
      this.syncing = false;
    }
    if (this.pending) await this.syncNow();
  }

  /** The pins this agent syncs into; missing ones mean the maps it writes are no longer the node's. */
  private missingPins(): string[] {
    const p = pinPaths(this.opts.pinDir);
    return PINNED_MAPS.map((n) => p.map(n)).filter((f) => !existsSync(f));
  }

  private watchMapFull(): void {
    if (!this.maps) return;
    this.spliceWatch?.check(); // splice(2) readers the guard found (logs each destination)
    const gone = this.missingPins();
    if (gone.length && !this.pinsGone)
      log.error({ pinDir: this.opts.pinDir, missing: gone }, 'meshbpf pins were removed (unloaded behind the agent?): the agent is unhealthy; restart it to load again');
    this.pinsGone = gone.length > 0;
    try {
      const now = readStats(this.maps.stats).sockets_map_full;
      if (now > this.lastMapFull) {
        log.warn({ newEvents: Number(now - this.lastMapFull), capacity: this.maps.sockets.info.maxEntries }, 'mb_sockets is full: new connections take the normal stack (raise --max-sockets)');
        this.lastMapFull = now;
      }
    } catch {
      /* maps gone (unloaded behind our back): health reports it */
    }
  }

  inspect(): Inspection {
    return inspect(this.opts.pinDir);
  }

  stats(): Stats | undefined {
    return this.maps ? readStats(this.maps.stats) : undefined;
  }

  occupancy(): Record<string, { entries: number; capacity: number }> {
    const m = this.maps;
    if (!m) return {};
    // Counted in the kernel (what is there, not what should be): drift shows.
    return {
      mb_sockets: { entries: m.sockets.count(), capacity: m.sockets.info.maxEntries },
      mb_endpoints: { entries: m.endpoints.count(), capacity: m.endpoints.info.maxEntries },
      mb_policy: { entries: m.policy.count(), capacity: m.policy.info.maxEntries },
      mb_services: { entries: m.services.count(), capacity: m.services.info.maxEntries },
      mb_backends: { entries: m.backends.count(), capacity: m.backends.info.maxEntries },
    };
  }

  health(): { healthy: boolean; ready: boolean; problems: string[] } {
    const problems: string[] = [];
    let attached = false;
    try {
      const i = this.inspect();
      attached = i.sockops.attached && i.skMsg.attached;
      problems.push(...i.problems);
    } catch (e) {
      problems.push(`cannot inspect ${this.opts.pinDir}: ${(e as Error).message}`);
    }
    const synced = this.lastSync !== null && this.lastSync.error === undefined;
    if (!synced) problems.push(this.lastSync?.error ? `last sync failed: ${this.lastSync.error}` : 'no xDS snapshot applied yet');
    const gone = this.missingPins();
    if (gone.length) problems.push(`pins removed: ${gone.join(', ')} (the agent syncs into maps the node no longer uses)`);
    return { healthy: attached && synced && !gone.length, ready: synced && !gone.length, problems };
  }

  /**
   * Desired state next to what the kernel holds, so drift is visible. The
   * desired state is rebuilt from the source's last good snapshot on request
   * (the agent does not keep it). `full` adds every entry; otherwise the first
   * `limit` of each list.
   */
  debugState(opts: { full?: boolean; limit?: number } = {}): unknown {
    if (!this.maps || !this.desired) return { desired: null, note: 'no snapshot applied yet' };
    const desired = compile(this.source.snapshot(), this.opts.locality);
    const enc = encodeDesired(desired);
    const kernel = { endpoints: readRaw(this.maps.endpoints), policy: readRaw(this.maps.policy) };
    const { plan, counts } = planSync(enc, kernel);
    const pending =
      plan.endpointUpserts.length +
      plan.endpointDeletes.length +
      plan.policyNarrow.upserts.length +
      plan.policyNarrow.deletes.length +
      plan.policyWiden.upserts.length +
      plan.policyWiden.deletes.length;
    const cut = <T>(xs: T[]): T[] => (opts.full ? xs : xs.slice(0, opts.limit ?? 100));
    return {
      drift: {
        inSync: pending === 0,
        // what a sync would change right now
        endpoints: { missingOrDifferent: counts.endpoints.added + counts.endpoints.changed, extra: counts.endpoints.removed },
        policies: { missingOrDifferent: counts.policies.added + counts.policies.changed, extra: counts.policies.removed },
      },
      desired: {
        counts: { endpoints: desired.endpoints.length, policies: desired.policies.length, rules: desired.rules.length, skipped: desired.skipped.length },
        truncated: !opts.full,
        endpoints: cut(desired.endpoints),
        policies: cut(desired.policies),
        rules: cut(desired.rules),
        networks: desired.networks,
        skipped: cut(desired.skipped),
        notes: cut(desired.notes),
      },
      kernel: { endpoints: kernel.endpoints.size, policies: kernel.policy.size },
    };
  }

  status(): AgentStatus {
    const d = this.desired;
    return {
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      pinDir: this.opts.pinDir,
      listen: this.listenAddress,
      load: this.loadResult ? { upgraded: this.loadResult.upgraded, cgroup: this.loadResult.cgroup.path } : null,
      synced: this.lastSync !== null && this.lastSync.error === undefined,
      lastSync: this.lastSync,
      desired: d ?? null,
      xds: this.source.status(),
      ...(this.opts.locality.exclude ? { exclude: this.opts.locality.exclude } : {}),
      ...(this.opts.locality.nodeName ? { nodeName: this.opts.locality.nodeName } : {}),
    };
  }

  private writeAgentFile(): void {
    const dir = stateDir(this.opts.pinDir);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'agent.json'), JSON.stringify({ pid: process.pid, listen: this.listenAddress, startedAt: this.startedAt.toISOString() }));
  }

  /** Stop serving and syncing. Programs stay attached and maps pinned unless unloadOnExit. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.inpodWatch?.stop();
    await this.source.close();
    // Close idle keep-alive connections too, or close() waits for them.
    const closed = new Promise<void>((res) => (this.server ? this.server.close(() => res()) : res()));
    this.server?.closeAllConnections();
    await closed;
    this.maps?.close();
    this.maps = undefined;
    if (!this.lock) return; // never owned the directory: touch nothing of the owner's
    rmSync(join(stateDir(this.opts.pinDir), 'agent.json'), { force: true });
    if (this.opts.unloadOnExit) {
      unload({ pinDir: this.opts.pinDir });
      log.info({ pinDir: this.opts.pinDir }, 'unloaded (--unload-on-exit)');
    } else {
      log.info({ pinDir: this.opts.pinDir }, 'stopped; programs stay attached and maps pinned (accelerated connections keep flowing)');
    }
    await this.lock.release();
    this.lock = undefined;
  }
}

function emptyCounts(): SyncCounts {
  const z = { added: 0, changed: 0, removed: 0, unchanged: 0 };
  return { endpoints: { ...z }, policies: { ...z } };
}
