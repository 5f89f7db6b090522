// One descriptor per xDS resource kind: its type URL, how reasons name it, the
// field it is keyed by, where the snapshot keeps it, how it is subscribed, and
// its validator. Code that differs by kind reads it from here instead of
// testing `kind === 'cds' ? ...`.
import { InvalidResource, validateClaBody, validateClusterBody, validateListenerBody } from './validate.js';
import { TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, type Json, type JsonObject, type XdsKind, type XdsSnapshot } from './types.js';

export interface ResourceKind {
  readonly kind: XdsKind;
  readonly typeUrl: string;
  /** how reasons name a resource: `cluster "x"` */
  readonly label: string;
  /** the field a resource is keyed by */
  readonly nameField: 'name' | 'cluster_name';
  /** where the snapshot keeps this kind */
  readonly snapshotKey: 'clusters' | 'endpoints' | 'listeners';
  /** subscribed by resource name (EDS): a SotW response is a subset, not the whole set */
  readonly byName: boolean;
  /** a change can add or drop EDS resources (CDS names them, EDS must match them) */
  readonly prunesEndpoints: boolean;
  /** throws with a reason (without the resource's label) when the body is not usable */
  readonly validate: (r: JsonObject) => void;
}

export const KINDS: Readonly<Record<XdsKind, ResourceKind>> = {
  cds: { kind: 'cds', typeUrl: TYPE_CLUSTER, label: 'cluster', nameField: 'name', snapshotKey: 'clusters', byName: false, prunesEndpoints: true, validate: validateClusterBody },
  eds: { kind: 'eds', typeUrl: TYPE_ENDPOINT, label: 'ClusterLoadAssignment', nameField: 'cluster_name', snapshotKey: 'endpoints', byName: true, prunesEndpoints: true, validate: validateClaBody },
  lds: { kind: 'lds', typeUrl: TYPE_LISTENER, label: 'listener', nameField: 'name', snapshotKey: 'listeners', byName: false, prunesEndpoints: false, validate: validateListenerBody },
};

/** Every kind, in the order they are requested and reported (CDS, EDS, LDS). */
export const KIND_NAMES: readonly XdsKind[] = ['cds', 'eds', 'lds'];

/** The kind of a type URL (or "@type"); undefined for every other type. */
export function kindOfType(typeUrl: Json | undefined): XdsKind | undefined {
  return KIND_NAMES.find((k) => KINDS[k].typeUrl === typeUrl);
}

/** The snapshot's map for a kind. */
export function resourcesOf(s: XdsSnapshot, kind: XdsKind): Map<string, JsonObject> {
  return s[KINDS[kind].snapshotKey];
}

/** The name a resource is keyed by, or undefined when the required field is missing. */
export function resourceName(kind: XdsKind, r: JsonObject): string | undefined {
  const n = r[KINDS[kind].nameField];
  return typeof n === 'string' && n !== '' ? n : undefined;
}

/** How a resource is named in reasons: `cluster "x"` or `cluster #3 (no name)`. */
export function label(kind: XdsKind, r: JsonObject | undefined, index?: number): string {
  const n = r ? resourceName(kind, r) : undefined;
  if (n !== undefined) return `${KINDS[kind].label} ${JSON.stringify(n)}`;
  return `${KINDS[kind].label} #${index ?? '?'} (no name)`;
}

/** Validate one resource. Returns a reason naming the resource, or undefined when valid. */
export function validateResource(kind: XdsKind, r: Json, index?: number): string | undefined {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) return `${KINDS[kind].label} #${index ?? '?'}: not an object`;
  try {
    KINDS[kind].validate(r);
  } catch (e) {
    if (e instanceof InvalidResource) return `${label(kind, r, index)}: ${e.message}`;
    throw e;
  }
  return undefined;
}

/**
 * Validate a whole set of resources of one kind: each resource, then duplicate
 * names. Returns the keyed map or every reason found.
 */
export function validateSet(
  kind: XdsKind,
  items: { res: JsonObject; index: number; name?: string }[],
): { ok: Map<string, JsonObject>; errors: string[] } {
  const ok = new Map<string, JsonObject>();
  const errors: string[] = [];
  for (const { res, index, name } of items) {
    const reason = validateResource(kind, res, index);
    if (reason) {
      errors.push(reason);
      continue;
    }
    const key = resourceName(kind, res) as string;
    if (name !== undefined && name !== key) {
      errors.push(`${label(kind, res, index)}: resource name ${JSON.stringify(name)} does not match`);
      continue;
    }
    if (ok.has(key)) {
      errors.push(`${label(kind, res, index)}: duplicate resource name in one response`);
      continue;
    }
    ok.set(key, res);
  }
  return { ok, errors };
}
