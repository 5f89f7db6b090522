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
import type { EndpointEntry, EntrySink, Locality, PolicyEntry } from './types.js';
import { obj, Problems } from './json.js';
import { AddressBook } from './addresses.js';
import { EndpointIndex } from './endpoints.js';
import { compileListener } from './chains.js';
import { Emitter } from './emit.js';
import { buildOutput } from './output.js';
import { ServiceCollector, type ServiceDraft } from './services.js';
import type { CompileContext, CompiledState, CompiledSummary } from './model.js';
import { isWdsSnapshot } from '../xds/types.js';
import { compileWds } from './wds.js';

export type { CompiledState, CompiledSummary, SkippedEndpoint } from './model.js';

/** For the sync paths of a large snapshot (the compiler itself stays pure). */
export interface CompileHooks {
  /**
   * Called once between the listeners and the output, with the number of
   * address records: the endpoint index (a target per EDS endpoint) and the
   * listeners' scraps are garbage there, and a collection then keeps them from
   * being held beside the output's buffers.
   */
  beforeOutput?: (addresses: number) => void;
}

/** Run the stages, entries to `sink`; the problems say whether the snapshot is acceptable. */
function run(snapshot: XdsSnapshot, locality: Locality, sink: EntrySink, hooks: CompileHooks = {}): { state: CompiledSummary; problems: string[] } {
  // Istio ambient (WDS): workloads and services instead of listeners (wds.ts)
  if (isWdsSnapshot(snapshot)) {
    const { state, problems } = compileWds(snapshot, locality);
    const { endpoints, policies, ...rest } = state;
    for (const e of endpoints) sink.endpoint(e);
    for (const p of policies) sink.policy(p);
    return { state: rest, problems };
  }
  const ctx: CompileContext = { snap: snapshot, loc: locality, problems: new Problems(), skipped: [], notes: [] };
  const book = new AddressBook(locality);
  const services = compileListeners(ctx, book);
  hooks.beforeOutput?.(book.size);
  return { state: buildOutput(ctx, book, sink, services), problems: ctx.problems.list };
}

/** run() with the entries kept in lists: the CompiledState that all but the sync paths read. */
function runToLists(snapshot: XdsSnapshot, locality: Locality): { state: CompiledState; problems: string[] } {
  if (isWdsSnapshot(snapshot)) return compileWds(snapshot, locality);
  const endpoints: EndpointEntry[] = [];
  const policies: PolicyEntry[] = [];
  const { state, problems } = run(snapshot, locality, { endpoint: (e) => void endpoints.push(e), policy: (p) => void policies.push(p) });
  return { state: { endpoints, policies, ...state }, problems };
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
  return runToLists(snapshot, locality).state;
}

/** compile(), with the endpoint and policy entries handed to `sink` in order instead of kept in the result's lists. */
export function compileInto(snapshot: XdsSnapshot, locality: Locality, sink: EntrySink, hooks?: CompileHooks): CompiledSummary {
  return run(snapshot, locality, sink, hooks).state;
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

/** A resource that is not an object: refused before any stage runs. */
function shapeProblem(snapshot: XdsSnapshot): string | undefined {
  for (const [kind, m] of [
    ['cluster', snapshot.clusters],
    ['ClusterLoadAssignment', snapshot.endpoints],
    ['listener', snapshot.listeners],
    ['Address', snapshot.addresses ?? new Map()],
    ['Authorization', snapshot.authorizations ?? new Map()],
  ] as const) {
    for (const [k, v] of m) if (!obj(v as Json)) return `${kind} ${k}: resource must be an object`;
  }
  return undefined;
}

/** The NACK reason for the compiler's problems (undefined: none). */
function problemText(p: string[]): string | undefined {
  if (p.length === 0) return undefined;
  return p.length === 1 ? (p[0] as string) : `${p[0]} (and ${p.length - 1} more problem${p.length > 2 ? 's' : ''})`;
}

/**
 * validate() and compile() in one pass: the agent validates every update and
 * then needs its compiled state; compiling twice doubled the time and the
 * garbage of a 100k-endpoint sync.
 */
export function compileChecked(snapshot: XdsSnapshot, locality: Locality): { state: CompiledState } | { error: string } {
  const bad = shapeProblem(snapshot);
  if (bad !== undefined) return { error: bad };
  const { state, problems } = runToLists(snapshot, locality);
  const error = problemText(problems);
  return error === undefined ? { state } : { error };
}

/**
 * compileChecked(), with the endpoint and policy entries handed to `sink` in
 * order instead of kept in lists (the sync paths encode them as they come). On
 * an error the sink has seen entries of a refused snapshot: drop it.
 */
export function compileCheckedInto(snapshot: XdsSnapshot, locality: Locality, sink: EntrySink, hooks?: CompileHooks): { state: CompiledSummary } | { error: string } {
  const bad = shapeProblem(snapshot);
  if (bad !== undefined) return { error: bad };
  const { state, problems } = run(snapshot, locality, sink, hooks);
  const error = problemText(problems);
  return error === undefined ? { state } : { error };
}
