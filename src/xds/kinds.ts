// One descriptor per xDS resource kind: its type URL, how reasons name it, the
// field it is keyed by, where the snapshot keeps it, how it is subscribed, and
// its validator. Code that differs by kind reads it from here instead of
// testing `kind === 'cds' ? ...`.
import { InvalidResource, validateClaBody, validateClusterBody, validateListenerBody } from './validate.js';
import { addressName, authorizationName, validateAddressBody, validateAuthorizationBody } from './validate-wds.js';
import {
  TYPE_ADDRESS,
  TYPE_AUTHORIZATION,
  TYPE_CLUSTER,
  TYPE_ENDPOINT,
  TYPE_LISTENER,
  type EnvoyKind,
  type Json,
  type JsonObject,
  type WdsKind,
  type XdsApi,
  type XdsKind,
  type XdsSnapshot,
} from './types.js';

export interface ResourceKind {
  readonly kind: XdsKind;
  readonly typeUrl: string;
  /** how reasons name a resource: `cluster "x"` */
  readonly label: string;
  readonly api: XdsApi;
  /** the field a resource is keyed by; undefined when the name is derived (WDS: see `name`) */
  readonly nameField: 'name' | 'cluster_name' | undefined;
  /** the name a body implies when the transport gives none (WDS files); Envoy kinds read nameField */
  readonly name?: (r: JsonObject) => string | undefined;
  /**
   * the transport's name (Delta Resource.name) is the key and is not checked
   * against the body: an Address names no field of its own (istiod uses the
   * workload uid, or "namespace/hostname" for a service)
   */
  readonly transportNamed: boolean;
  /** where the snapshot keeps this kind */
  readonly snapshotKey: 'clusters' | 'endpoints' | 'listeners' | 'addresses' | 'authorizations';
  /** subscribed by resource name (EDS): a SotW response is a subset, not the whole set */
  readonly byName: boolean;
  /** a change can add or drop EDS resources (CDS names them, EDS must match them) */
  readonly prunesEndpoints: boolean;
  /** throws with a reason (without the resource's label) when the body is not usable */
  readonly validate: (r: JsonObject) => void;
}

export const KINDS: Readonly<Record<XdsKind, ResourceKind>> = {
  cds: {
    kind: 'cds',
    api: 'envoy',
    typeUrl: TYPE_CLUSTER,
    label: 'cluster',
    nameField: 'name',
    transportNamed: false,
    snapshotKey: 'clusters',
    byName: false,
    prunesEndpoints: true,
    validate: validateClusterBody,
  },
  eds: {
    kind: 'eds',
    api: 'envoy',
    typeUrl: TYPE_ENDPOINT,
    label: 'ClusterLoadAssignment',
    nameField: 'cluster_name',
    transportNamed: false,
    snapshotKey: 'endpoints',
    byName: true,
    prunesEndpoints: true,
    validate: validateClaBody,
  },
  lds: {
    kind: 'lds',
    api: 'envoy',
    typeUrl: TYPE_LISTENER,
    label: 'listener',
    nameField: 'name',
    transportNamed: false,
    snapshotKey: 'listeners',
    byName: false,
    prunesEndpoints: false,
    validate: validateListenerBody,
  },
  address: {
    kind: 'address',
    api: 'wds',
    typeUrl: TYPE_ADDRESS,
    label: 'Address',
    nameField: undefined,
    name: addressName,
    transportNamed: true,
    snapshotKey: 'addresses',
    byName: false,
    prunesEndpoints: false,
    validate: validateAddressBody,
  },
  authorization: {
    kind: 'authorization',
    api: 'wds',
    typeUrl: TYPE_AUTHORIZATION,
    label: 'Authorization',
    nameField: undefined,
    name: authorizationName,
    transportNamed: true,
    snapshotKey: 'authorizations',
    byName: false,
    prunesEndpoints: false,
    validate: validateAuthorizationBody,
  },
};

/** Every Envoy kind, in the order they are requested and reported (CDS, EDS, LDS). */
export const KIND_NAMES: readonly EnvoyKind[] = ['cds', 'eds', 'lds'];

/** Every WDS kind, in the order ztunnel subscribes (Address, then Authorization). */
export const WDS_KIND_NAMES: readonly WdsKind[] = ['address', 'authorization'];

/** The kinds a source of this API subscribes to and reports. */
export function kindsOf(api: XdsApi): readonly XdsKind[] {
  return api === 'wds' ? WDS_KIND_NAMES : KIND_NAMES;
}

/** The kind of a type URL (or "@type"); undefined for every other type. */
export function kindOfType(typeUrl: Json | undefined): XdsKind | undefined {
  return [...KIND_NAMES, ...WDS_KIND_NAMES].find((k) => KINDS[k].typeUrl === typeUrl);
}

/**
 * The snapshot's map for a kind. A WDS map missing from the snapshot (an Envoy
 * snapshot) is created on it, so callers that copied the snapshot can fill it.
 */
export function resourcesOf(s: XdsSnapshot, kind: XdsKind): Map<string, JsonObject> {
  const key = KINDS[kind].snapshotKey;
  if (key === 'addresses' || key === 'authorizations') return (s[key] ??= new Map());
  return s[key];
}

/** The name a resource is keyed by, or undefined when the required field is missing. */
export function resourceName(kind: XdsKind, r: JsonObject): string | undefined {
  const d = KINDS[kind];
  if (d.name) return d.name(r);
  const n = d.nameField === undefined ? undefined : r[d.nameField];
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
export function validateSet(kind: XdsKind, items: { res: JsonObject; index: number; name?: string }[]): { ok: Map<string, JsonObject>; errors: string[] } {
  const ok = new Map<string, JsonObject>();
  const errors: string[] = [];
  for (const { res, index, name } of items) {
    const reason = validateResource(kind, res, index);
    if (reason) {
      errors.push(reason);
      continue;
    }
    const own = resourceName(kind, res);
    const key = (KINDS[kind].transportNamed ? (name ?? own) : own) as string;
    if (key === undefined) {
      errors.push(`${label(kind, res, index)}: no resource name`);
      continue;
    }
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
