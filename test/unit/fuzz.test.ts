// Fuzz (issue 10): a seeded generator mutates the real Istio fixtures (bytes,
// truncation, JSON structure) and makes random bytes, and feeds thousands of
// cases through the file source and the ADS client. No case may crash or hang
// either, and every rejected input leaves the state the agent would apply to
// the maps equal to the last good one.
// Seed and size: MESHBPF_FUZZ_SEED (a number, or "random"; CI uses the fixed
// default) and MESHBPF_FUZZ_CASES; `node scripts/fuzz.mjs --seed random` runs it.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XdsClient } from '../../src/xds/client.js';
import { XdsFileSource } from '../../src/xds/file.js';
import { FakeAdsServer, type RecordedRequest } from '../helpers/ads-server.js';
import { TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, type Json, type JsonObject, type XdsSnapshot } from '../../src/xds/types.js';
import { compile, compileChecked } from '../../src/policy/index.js';
import { asCurrent, encodeDesired, type CurrentState } from '../../src/maps/plan.js';
import type { Locality } from '../../src/policy/types.js';

const seedEnv = process.env.MESHBPF_FUZZ_SEED ?? '20261201';
const SEED = seedEnv === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(seedEnv);
const CASES = Number(process.env.MESHBPF_FUZZ_CASES ?? '2000');
console.log(`fuzz seed ${SEED} (rerun with MESHBPF_FUZZ_SEED=${SEED}), ${CASES} file cases, ${Math.ceil(CASES / 3)} ADS cases`);

/** mulberry32: small, seeded, good enough to pick mutations. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const here = path.dirname(fileURLToPath(import.meta.url));
const root = [path.resolve(here, '../../..'), path.resolve(here, '../..')].find((d) => fs.existsSync(path.join(d, 'test', 'fixtures', 'istio'))) as string;
const FIXTURES = ['sidecar-endpoints-configdump.json', 'waypoint-configdump.json', 'clusters-listeners-configdump.json'].map((f) =>
  fs.readFileSync(path.join(root, 'test', 'fixtures', 'istio', f), 'utf8'),
);
FIXTURES.push(fs.readFileSync(path.join(root, 'examples', 'snapshot.yaml'), 'utf8'));
const locality: Locality = { nodeIps: ['10.244.0.1'], podCidrs: ['10.244.0.0/16', '198.18.0.0/24'], network: '' };

const WEIRD: Json[] = [
  null,
  true,
  0,
  -1,
  65536,
  4294967296,
  1e308,
  0.5,
  '',
  'x',
  '10.0.0.999',
  '::ffff:1.2.3.4',
  '0.0.0.0',
  [],
  {},
  [[[]]],
  { '@type': 'type.googleapis.com/envoy.api.v2.Cluster' },
  'a'.repeat(5000),
];

class Mutator {
  constructor(readonly r: () => number) {}
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  bytes(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(this.int(256));
    return s;
  }
  /** A random node of a JSON tree (and how to replace or delete it). */
  node(doc: Json): { set(v: Json): void; del(): void; value: Json } | undefined {
    const slots: { parent: JsonObject | Json[]; key: string | number }[] = [];
    const walk = (v: Json): void => {
      if (slots.length > 20_000) return;
      if (Array.isArray(v)) v.forEach((x, i) => (slots.push({ parent: v, key: i }), walk(x)));
      else if (v && typeof v === 'object') for (const k of Object.keys(v)) (slots.push({ parent: v, key: k }), walk(v[k] as Json));
    };
    walk(doc);
    if (!slots.length) return undefined;
    const s = this.pick(slots);
    const p = s.parent as Record<string | number, Json>;
    return {
      value: p[s.key] as Json,
      set: (v) => void (p[s.key] = v),
      del: () => (Array.isArray(s.parent) ? void s.parent.splice(s.key as number, 1) : void delete p[s.key]),
    };
  }
  /** Mutate a JSON document in place a few times. */
  structure(doc: Json): Json {
    for (let i = 0, n = 1 + this.int(4); i < n; i++) {
      const nd = this.node(doc);
      if (!nd) break;
      const op = this.int(4);
      if (op === 0) nd.set(this.pick(WEIRD));
      else if (op === 1) nd.del();
      else if (op === 2)
        nd.set(structuredClone(nd.value)); // unchanged value, but a later op may hit the copy
      else if (typeof nd.value === 'number') nd.set(nd.value + this.pick([-1, 1, 65536, -65536]));
      else if (typeof nd.value === 'string') nd.set(nd.value.slice(0, this.int(nd.value.length + 1)) + this.pick(['', '.', '|', '\u0000', '/33']));
    }
    return doc;
  }
  text(base: string): string {
    const op = this.int(7);
    const at = this.int(base.length);
    if (op === 0) return base.slice(0, at); // truncated (a half-written file)
    if (op === 1) return base.slice(0, at) + this.bytes(1 + this.int(8)) + base.slice(at + 1 + this.int(8));
    if (op === 2) return base.slice(0, at) + base.slice(at + this.int(200));
    if (op === 3) return this.bytes(this.int(2048)); // random bytes
    if (op === 4) return base.slice(0, at) + base.slice(this.int(base.length));
    try {
      return JSON.stringify(this.structure(JSON.parse(base) as Json), null, op === 5 ? 1 : 0);
    } catch {
      return base.slice(0, at); // YAML fixture: truncate instead
    }
  }
}

function mapsOf(s: XdsSnapshot): CurrentState {
  return asCurrent(encodeDesired(compile(s, locality)));
}

function sameMaps(a: CurrentState, b: CurrentState): boolean {
  const eq = (x: Map<string, string>, y: Map<string, string>) => x.size === y.size && [...x].every(([k, v]) => y.get(k) === v);
  return eq(a.endpoints, b.endpoints) && eq(a.policy, b.policy);
}

test('file source: mutated fixtures and random bytes never crash; a rejected file keeps the last good state', (t) => {
  const m = new Mutator(rng(SEED));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mbt-fuzz-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'dump.json');
  fs.writeFileSync(file, FIXTURES[0] as string);
  const validate = (s: XdsSnapshot): string | undefined => {
    const r = compileChecked(s, locality);
    return 'error' in r ? r.error : undefined;
  };
  const src = new XdsFileSource({ path: file, watch: false, validate, logger: silentLogger() });
  t.teardown(() => src.close());
  src.start();
  let good = src.snapshot();
  let maps = mapsOf(good); // what the agent applied
  src.on('snapshot', (s) => (maps = mapsOf(s)));
  let accepted = 0;
  let rejected = 0;
  for (let i = 0; i < CASES; i++) {
    const text = m.text(m.pick(FIXTURES));
    fs.writeFileSync(file, text, 'latin1');
    let ok: boolean;
    try {
      ok = src.reload();
    } catch (e) {
      t.fail(`case ${i} (seed ${SEED}) threw: ${(e as Error).stack}`);
      return;
    }
    if (ok) {
      accepted++;
      good = src.snapshot();
    } else {
      rejected++;
      if (src.snapshot() !== good) return void t.fail(`case ${i} (seed ${SEED}): rejected, but the snapshot changed`);
      if (!sameMaps(maps, mapsOf(good))) return void t.fail(`case ${i} (seed ${SEED}): rejected, but the maps differ from the last good state`);
      const err = src.status().lastError ?? '';
      if (!err || err.length > 4100) return void t.fail(`case ${i} (seed ${SEED}): lastError ${err.length} chars`);
    }
  }
  t.log(`${accepted} accepted, ${rejected} rejected`);
  t.true(rejected > CASES / 4, 'the mutations do produce invalid files');
  t.true(accepted > 0, 'and valid ones');
});

const TYPES = [TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER] as const;

/** The fixtures' resources by type (the Any bodies as a control plane would send them). */
function fixtureResources(): Record<string, JsonObject[]> {
  const out: Record<string, JsonObject[]> = { [TYPE_CLUSTER]: [], [TYPE_ENDPOINT]: [], [TYPE_LISTENER]: [] };
  const visit = (v: Json): void => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (v && typeof v === 'object') {
      const t = v['@type'];
      if (typeof t === 'string' && t in out) out[t]!.push(v);
      else Object.values(v).forEach(visit);
    }
  };
  for (const f of FIXTURES.slice(0, 3)) visit(JSON.parse(f) as Json);
  return out;
}

test('ADS client: mutated resources and random Any bytes never crash; a NACK keeps the last good state', async (t) => {
  const m = new Mutator(rng(SEED ^ 0x5eed));
  const server = new FakeAdsServer();
  await server.start();
  const validate = (s: XdsSnapshot): string | undefined => {
    const r = compileChecked(s, locality);
    return 'error' in r ? r.error : undefined;
  };
  const client = new XdsClient({
    server: server.address(),
    node: { podName: 'fuzz', namespace: 'istio-system', ips: ['10.244.0.1'] },
    backoff: { initialMs: 20, maxMs: 100 },
    validate,
    logger: silentLogger(),
  });
  t.teardown(async () => {
    client.close();
    await server.stop();
  });
  client.start();
  await server.waitFor((r) => r.req.type_url === TYPE_CLUSTER);
  const res = fixtureResources();
  let acks = 0;
  let nacks = 0;
  let unencodable = 0;
  const n = Math.ceil(CASES / 3);
  for (let i = 0; i < n; i++) {
    const type = m.pick(TYPES);
    const pool = res[type] ?? [];
    const chosen = pool.filter(() => m.r() < 0.5).map((r) => structuredClone(r));
    const resources = m.int(5) === 0 ? [{ raw: { type_url: type, value: Buffer.from(m.bytes(m.int(300)), 'latin1') } }] : chosen.map((r) => (m.int(2) ? (m.structure(r) as JsonObject) : r));
    const before = client.snapshot();
    const mapsBefore = mapsOf(before);
    let nonce: string;
    try {
      nonce = server.sendSotw(type, resources, `v${i}`);
    } catch {
      unencodable++; // the mutation is not even a valid proto (the server cannot encode it)
      continue;
    }
    const from = server.requests.length;
    const reply = await server.waitFor((r: RecordedRequest) => r.req.type_url === type && r.req.response_nonce === nonce, { from: Math.max(0, from - 1), timeoutMs: 10_000 }).catch((e: Error) => e);
    if (reply instanceof Error) return void t.fail(`case ${i} (seed ${SEED}): no ACK/NACK: ${reply.message.slice(0, 300)}`);
    if (reply.req.error_detail) {
      nacks++;
      const after = client.snapshot();
      if (after !== before && !sameMaps(mapsOf(after), mapsBefore)) return void t.fail(`case ${i} (seed ${SEED}): NACKed, but the state changed`);
      if (String((reply.req.error_detail as JsonObject).message ?? '').length > 4100) return void t.fail(`case ${i} (seed ${SEED}): NACK detail unbounded`);
    } else acks++;
  }
  t.log(`${acks} ACKs, ${nacks} NACKs, ${unencodable} not encodable`);
  t.true(nacks > 0 && acks > 0, 'both outcomes were exercised');
});

function silentLogger() {
  // pino's API without output: the fuzz cases would log thousands of warnings
  const noop = () => undefined;
  const l = { warn: noop, info: noop, debug: noop, error: noop, trace: noop, fatal: noop, child: () => l };
  return l as never;
}
