// Prometheus metrics (prom-client). Kernel counters are read on scrape, not
// polled: an idle agent does no work between scrapes.
import client from 'prom-client';
import { STAT_NAMES } from '../maps/codecs.js';
import type { XdsStateEvent } from '../xds/types.js';
import type { Agent } from './agent.js';
import { VIP_OUTCOME_STAT } from '../policy/explain.js';

const SKIP_REASONS: Record<string, string> = {
  skip_family: 'family',
  skip_local_unknown: 'local_not_mesh',
  skip_remote_unknown: 'remote_not_mesh',
  skip_network: 'other_network',
  skip_no_policy: 'no_verdict',
  skip_proxy: 'proxy_verdict',
  skip_loopback_no_cookie: 'loopback_without_netns_cookie',
  skip_excluded: 'excluded_destination',
  stream_kept: 'learned_stream',
};

/**
 * prom-client's default metrics include gauges named `..._total` (active
 * handles, requests, resources), which the exposition format reserves for
 * counters (promtool rejects them). Where the same gauge without the suffix
 * exists by type, the total is its sum() and the `_total` one goes; any other
 * is served without the suffix.
 */
function renameTotalGauges(r: client.Registry): void {
  for (const m of r.getMetricsAsArray() as unknown as client.Gauge[]) {
    const name = (m as unknown as { name: string }).name;
    if (m instanceof client.Counter || !name.endsWith('_total')) continue;
    r.removeSingleMetric(name);
    const base = name.slice(0, -'_total'.length);
    if (r.getSingleMetric(base)) continue;
    new client.Gauge({
      name: base,
      help: (m as unknown as { help: string }).help,
      labelNames: [...((m as unknown as { labelNames?: string[] }).labelNames ?? [])],
      registers: [r],
      async collect() {
        const v = await m.get();
        this.reset();
        for (const x of v.values) this.set(x.labels, x.value);
      },
    });
  }
}

export class AgentMetrics {
  readonly registry = new client.Registry();
  private readonly syncDuration: client.Histogram;
  private readonly syncs: client.Counter;
  private readonly xdsEvents: client.Counter;
  private readonly lastAck: client.Gauge;
  private readonly lastNack: client.Gauge;
  private readonly connected: client.Gauge;

  constructor(agent: Agent) {
    const r = this.registry;
    // The event-loop-delay monitor would wake the process every 10 ms; once a second is enough.
    client.collectDefaultMetrics({ register: r, prefix: 'meshbpf_process_', eventLoopMonitoringPrecision: 1000 });
    renameTotalGauges(r);
    const counter = (name: string, help: string, read: (s: NonNullable<ReturnType<Agent['stats']>>) => bigint) =>
      new client.Counter({
        name,
        help,
        registers: [r],
        collect() {
          const s = agent.stats();
          if (s) {
            this.reset();
            this.inc(Number(read(s)));
          }
        },
      });
    counter('meshbpf_redirected_messages_total', 'sendmsg calls moved socket to socket by sk_msg', (s) => s.redirect_msgs);
    counter('meshbpf_redirected_bytes_total', 'bytes moved socket to socket by sk_msg', (s) => s.redirect_bytes);
    counter('meshbpf_peer_missing_messages_total', 'messages whose peer socket was not found (took the normal stack)', (s) => s.peer_missing_msgs);
    counter('meshbpf_peer_missing_bytes_total', 'bytes whose peer socket was not found (took the normal stack)', (s) => s.peer_missing_bytes);
    counter('meshbpf_sockets_inserted_total', 'sockets inserted into mb_sockets', (s) => s.sockets_inserted);
    counter('meshbpf_sockets_established_total', 'established TCP sockets seen by sockops', (s) => s.sockops_established);
    counter('meshbpf_sockets_map_full_total', 'sockets not inserted because mb_sockets was full (they took the normal stack)', (s) => s.sockets_map_full);
    counter('meshbpf_splice_reads_total', 'splice(2)/sendfile(2) reads of bypassed sockets seen (their redirected bytes were lost)', (s) => s.splice_reads);
    counter('meshbpf_splice_refused_total', 'splice(2)/sendfile(2) reads of bypassed sockets refused with EINVAL before reading', (s) => s.splice_refused);
    counter('meshbpf_sockets_insert_failed_total', 'sockets not inserted for another error (e.g. key collision)', (s) => s.insert_failed);
    new client.Counter({
      name: 'meshbpf_sockets_skipped_total',
      help: 'established sockets left on the normal path, by reason',
      labelNames: ['reason'],
      registers: [r],
      collect() {
        const s = agent.stats();
        if (!s) return;
        this.reset();
        for (const n of STAT_NAMES) {
          const reason = SKIP_REASONS[n];
          if (reason) this.inc({ reason }, Number(s[n]));
        }
      },
    });
    // Service VIP connects by outcome (bpf/connect.c; the names of policy/explain.ts vipOutcome).
    const vipStats = Object.entries(VIP_OUTCOME_STAT);
    new client.Counter({
      name: 'meshbpf_vip_connects_total',
      help: 'connects to a service VIP:port, by outcome (translated to a local backend, or left to kube-proxy and why)',
      labelNames: ['outcome'],
      registers: [r],
      collect() {
        const s = agent.stats();
        if (!s) return;
        this.reset();
        for (const [outcome, stat] of vipStats) this.inc({ outcome }, Number(s[stat]));
      },
    });
    counter('meshbpf_vip_peername_restored_total', 'getpeername calls answered with the VIP of a translated socket', (s) => s.vip_peername_restored);
    counter('meshbpf_stream_switched_total', 'paired sockets moved to the stack as one-way streams of small writes (bpf/sk_msg.c)', (s) => s.stream_switched);
    counter('meshbpf_stream_learned_total', 'client -> destination pairs recorded in mb_streams after a switch (their next connections keep the stack)', (s) => s.stream_learned);
    counter('meshbpf_inpod_marked_total', 'in-pod (ambient): client sockets exempted from ztunnel outbound capture (mark 0x539) for a bypassed flow', (s) => s.inpod_marked);
    counter('meshbpf_inpod_steered_total', "in-pod (ambient): SYNs handed to the server app's own listener past the inbound capture", (s) => s.inpod_steered);
    counter('meshbpf_inpod_not_steered_total', 'in-pod (ambient): SYNs of exempted flows left to the inbound capture (no known listener, stale claim)', (s) => s.inpod_not_steered);
    // One walk of the maps per scrape: the entries gauge counts and also sets
    // the capacity gauge, which the registry collects right after it
    // (registration order).
    const capacity = new client.Gauge({ name: 'meshbpf_map_capacity', help: 'max_entries of each meshbpf map', labelNames: ['map'], registers: [] });
    new client.Gauge({
      name: 'meshbpf_map_entries',
      help: 'entries in each meshbpf map, counted in the kernel at scrape time',
      labelNames: ['map'],
      registers: [r],
      collect() {
        this.reset();
        capacity.reset();
        for (const [map, o] of Object.entries(agent.occupancy())) {
          this.set({ map }, o.entries);
          capacity.set({ map }, o.capacity);
        }
      },
    });
    r.registerMetric(capacity);
    new client.Gauge({
      name: 'meshbpf_programs_attached',
      help: '1 when sockops is attached to the cgroup and sk_msg to the sockhash',
      registers: [r],
      collect() {
        try {
          const i = agent.inspect();
          this.set(i.sockops.attached && i.skMsg.attached ? 1 : 0);
        } catch {
          this.set(0);
        }
      },
    });
    this.connected = new client.Gauge({ name: 'meshbpf_xds_connected', help: '1 while the xDS stream is up (file source: 1 after a good load)', registers: [r] });
    this.lastAck = new client.Gauge({ name: 'meshbpf_xds_last_ack_timestamp_seconds', help: 'time of the last accepted update, by type and version', labelNames: ['type', 'version'], registers: [r] });
    this.lastNack = new client.Gauge({
      name: 'meshbpf_xds_last_nack_timestamp_seconds',
      help: 'time of the last rejected update, by type and version',
      labelNames: ['type', 'version'],
      registers: [r],
    });
    this.xdsEvents = new client.Counter({ name: 'meshbpf_xds_events_total', help: 'xDS events by kind (ack, nack, connected, disconnected, loaded, error)', labelNames: ['kind'], registers: [r] });
    this.syncDuration = new client.Histogram({
      name: 'meshbpf_sync_duration_seconds',
      help: 'snapshot -> maps converged (compile + diff + apply)',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [r],
    });
    this.syncs = new client.Counter({ name: 'meshbpf_syncs_total', help: 'map syncs by result', labelNames: ['result'], registers: [r] });
  }

  onSourceState(e: XdsStateEvent): void {
    this.xdsEvents.inc({ kind: e.kind });
    if (e.kind === 'connected' || e.kind === 'loaded') this.connected.set(1);
    if (e.kind === 'disconnected' || e.kind === 'closed') this.connected.set(0);
    if (e.kind === 'ack') {
      this.lastAck.reset();
      this.lastAck.set({ type: e.type, version: e.version }, Date.now() / 1000);
    }
    if (e.kind === 'nack') {
      this.lastNack.reset();
      this.lastNack.set({ type: e.type, version: e.version }, Date.now() / 1000);
    }
  }

  observeSync(seconds: number, ok: boolean): void {
    this.syncDuration.observe(seconds);
    this.syncs.inc({ result: ok ? 'ok' : 'error' });
  }
}
