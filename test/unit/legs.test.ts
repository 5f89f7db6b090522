import test from 'ava';
import { classifyLeg, type LegFacts } from '../../src/policy/legs.js';
import { ISTIO_SIDECAR_DEFAULTS } from '../../src/maps/sidecar.js';

const config = { enabled: true, ...ISTIO_SIDECAR_DEFAULTS };
const A = '198.18.20.1';
const B = '198.18.20.2';
const C = '198.18.20.3';
type Over = { owner?: LegFacts['owner']; config?: LegFacts['config']; src?: Partial<LegFacts['src']>; dst?: Partial<LegFacts['dst']> };
const facts = (over: Over): LegFacts => ({
  owner: over.owner ?? 'app',
  config: over.config ?? config,
  src: { ip: A, local: true, captured: true, networkId: 0, ...over.src },
  dst: { ip: B, port: 8080, local: true, captured: true, networkId: 0, ...over.dst },
});

test('app in a captured pod: the outbound leg to its own sidecar on 127.0.0.1:15001 (::1 for IPv6), whatever the destination', (t) => {
  t.like(classifyLeg(facts({})), { leg: 'outbound', expects: '127.0.0.1:15001', inPod: true });
  t.like(classifyLeg(facts({ dst: { ip: '203.0.113.9', local: false, captured: false } })), { leg: 'outbound' }, 'off-node destinations still cross leg 1');
  t.like(classifyLeg(facts({ src: { ip: 'fd00:20::1' }, dst: { ip: 'fd00:20::2' } })), { leg: 'outbound', expects: '[::1]:15001' });
});

test('app to itself, to loopback or to an excluded outbound port: not captured, the direct rule decides', (t) => {
  t.like(classifyLeg(facts({ dst: { ip: A } })), { leg: 'direct' });
  t.like(classifyLeg(facts({ dst: { ip: '127.0.0.1' } })), { leg: 'direct' });
  t.like(classifyLeg(facts({ config: { ...config, outboundExclude: [8080] } })), { leg: 'direct' });
});

test('the proxy (uid 1337) to a captured local pod: the mesh leg to its 15006; excluded inbound ports are not', (t) => {
  t.like(classifyLeg(facts({ owner: 'proxy' })), { leg: 'mesh', expects: `${B}:15006`, inPod: false });
  t.like(classifyLeg(facts({ owner: 'proxy', dst: { port: 15020 } })), { leg: 'direct' });
  t.like(classifyLeg(facts({ owner: 'proxy', dst: { networkId: 2 } })), { leg: 'direct' }, 'another network is never a leg');
});

test('a pod without a sidecar: to a captured pod it is a mesh leg, to a plain pod nothing changes', (t) => {
  t.like(classifyLeg(facts({ src: { ip: C, captured: false } })), { leg: 'mesh', expects: `${B}:15006` });
  t.like(classifyLeg(facts({ src: { ip: C, captured: false }, dst: { captured: false } })), { leg: 'direct', why: 'neither end is captured' });
});

test('the sidecar to a plain local pod: mesh leg to the real destination', (t) => {
  t.like(classifyLeg(facts({ owner: 'proxy', dst: { ip: C, captured: false } })), { leg: 'mesh', expects: `${C}:8080` });
});

test('inbound passthrough (127.0.0.6 / ::6 -> the pod IP): the inbound leg inside the pod, only for the proxy', (t) => {
  t.like(classifyLeg(facts({ owner: 'proxy', src: { ip: '127.0.0.6', captured: false, local: false } })), { leg: 'inbound', expects: `${B}:8080`, inPod: true });
  t.like(classifyLeg(facts({ owner: 'proxy', src: { ip: '::6', captured: false, local: false }, dst: { ip: 'fd00:20::2' } })), { leg: 'inbound' });
  t.like(classifyLeg(facts({ owner: 'app', src: { ip: '127.0.0.6', captured: false, local: false } })), { leg: 'direct' });
});

test('unknown owner in a captured pod is never guessed; pairing off is the direct rule', (t) => {
  t.like(classifyLeg(facts({ owner: 'unknown' })), { leg: 'never' });
  t.like(classifyLeg(facts({ config: { ...config, enabled: false } })), { leg: 'direct', why: 'sidecar pairing is off' });
});
