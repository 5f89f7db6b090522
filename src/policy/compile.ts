// xDS snapshot -> desired kernel state. Pure: no I/O, no clock, no randomness;
// output sorted so identical input gives identical output (and rule ids).
//
// Safety direction everywhere: unknown or unparseable input yields no entry
// (normal path) or PROXY, never BYPASS. PROXY beats BYPASS for one ip:port.
//
// Stages, one file each: addresses.ts (locality), endpoints.ts (EDS indexing,
// cluster resolution), chains.ts (chain classification and grouping),
// emit.ts (verdicts onto endpoints), output.ts (the sorted DesiredState).
//
// Decisions (see the tests in test/unit/policy*.test.ts):
// - Chains are grouped as Envoy matches them: (destination_port, prefix_ranges).
//   A group is BYPASS only if every chain in it is tcp_proxy + harmless filters.
// - Unknown network filter => PROXY (not "no entry"), so it also beats a BYPASS
//   that another listener derives for the same endpoint.
// - Any chain matching on application_protocols, transport_protocol or
//   server_names (sniffing/TLS detection), or terminating TLS => PROXY.
// - filter_chain_matcher is not evaluated: its chains give PROXY, never BYPASS.
// - Verdict entries go to EDS endpoints (real ip:port) behind a chain's
//   clusters; Istio inbound per-port chains map to LOCAL endpoints on that port.
//   Catch-all/ORIGINAL_DST/BlackHole clusters name no endpoints (BlackHole on a
//   per-port inbound chain is a deny => PROXY).
// - Foreign-network addresses: networkId != 0, local=false, no verdicts.
// - Service VIPs (services.ts): an outbound listener's specific address (or a
//   host prefix_range of a 0.0.0.0_PORT listener's chain) with the chain's
//   verdict and its clusters' LOCAL EDS targets; never an endpoint address.
import type { Json, XdsSnapshot } from '../xds/types.js';
import type { Locality } from './types.js';
import { obj, Problems } from './json.js';
import { AddressBook } from './addresses.js';
import { EndpointIndex } from './endpoints.js';
import { compileListener } from './chains.js';
import { Emitter } from './emit.js';
import { buildOutput } from './output.js';
import { ServiceCollector, type ServiceDraft } from './services.js';
import type { CompileContext, CompiledState } from './model.js';
import { isWdsSnapshot } from '../xds/types.js';
import { compileWds } from './wds.js';

export type { CompiledState, SkippedEndpoint } from './model.js';

/** Run the stages; the context's problems say whether the snapshot is acceptable. */
function run(snapshot: XdsSnapshot, locality: Locality): { state: CompiledState; problems: string[] } {
  // Istio ambient (WDS): workloads and services instead of listeners (wds.ts)
  if (isWdsSnapshot(snapshot)) return compileWds(snapshot, locality);
  const ctx: CompileContext = { snap: snapshot, loc: locality, problems: new Problems(), skipped: [], notes: [] };
  const book = new AddressBook(locality);
  const services = compileListeners(ctx, book);
  return { state: buildOutput(ctx, book, services), problems: ctx.problems.list };
}

/**
 * EDS indexing and the listeners: verdict slots on the book's addresses, and the
 * service VIPs. The endpoint index (a target per EDS endpoint) stays in here: it
 * is garbage before the output is built, not held beside it (a large snapshot's peak).
 */
function compileListeners(ctx: CompileContext, book: AddressBook): ServiceDraft[] {
  const index = new EndpointIndex(ctx, book);
  const emit = new Emitter(ctx, index);
  const services = new ServiceCollector(book, index);
  for (const n of [...ctx.snap.listeners.keys()].sort()) {
    const l = ctx.snap.listeners.get(n);
    if (l) compileListener(ctx, emit, n, l, services);
  }
  ctx.notes.push(...services.notes);
  return services.list();
}

/**
 * Compile an xDS snapshot into the desired kernel state for this node.
 * Throws only for a malformed `locality` (our own configuration).
 */
export function compile(snapshot: XdsSnapshot, locality: Locality): CompiledState {
  return run(snapshot, locality).state;
}

/**
 * A reason to refuse (NACK) a snapshot the compiler cannot accept safely:
 * malformed structure in fields that decide verdicts (ports, prefixes, chain
 * lists, filters). Unknown types or filters are NOT errors: they simply get
 * no entry (or PROXY). Returns undefined when the snapshot is acceptable.
 */
export function validate(snapshot: XdsSnapshot): string | undefined {
  const r = compileChecked(snapshot, { nodeIps: [], podCidrs: [], network: '' });
  return 'error' in r ? r.error : undefined;
}

/**
 * validate() and compile() in one pass: the agent validates every update and
 * then needs its compiled state; compiling twice doubled the time and the
 * garbage of a 100k-endpoint sync.
 */
export function compileChecked(snapshot: XdsSnapshot, locality: Locality): { state: CompiledState } | { error: string } {
  for (const [kind, m] of [
    ['cluster', snapshot.clusters],
    ['ClusterLoadAssignment', snapshot.endpoints],
    ['listener', snapshot.listeners],
    ['Address', snapshot.addresses ?? new Map()],
    ['Authorization', snapshot.authorizations ?? new Map()],
  ] as const) {
    for (const [k, v] of m) if (!obj(v as Json)) return { error: `${kind} ${k}: resource must be an object` };
  }
  const { state, problems: p } = run(snapshot, locality);
  if (p.length === 0) return { state };
  return { error: p.length === 1 ? (p[0] as string) : `${p[0]} (and ${p.length - 1} more problem${p.length > 2 ? 's' : ''})` };
}
