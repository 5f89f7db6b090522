// The WDS rows of the kind table, their validators, and the unknown-field scan.
import test from 'ava';
import protobuf from 'protobufjs';
import { KINDS, kindOfType, kindsOf, label, resourceName, resourcesOf, validateResource, validateSet } from '../../src/xds/kinds.js';
import { mustType } from '../../src/xds/protos.js';
import { unknownFields } from '../../src/xds/unknown.js';
import { emptySnapshot, isWdsSnapshot, TYPE_ADDRESS, TYPE_AUTHORIZATION } from '../../src/xds/types.js';

test('WDS kinds: type URLs, names derived from the body, snapshot maps', (t) => {
  t.is(kindOfType(TYPE_ADDRESS), 'address');
  t.is(kindOfType(TYPE_AUTHORIZATION), 'authorization');
  t.deepEqual(kindsOf('wds'), ['address', 'authorization']);
  t.deepEqual(kindsOf('envoy'), ['cds', 'eds', 'lds']);
  t.is(KINDS.address.api, 'wds');
  t.is(resourceName('address', { workload: { uid: 'Kubernetes//Pod/ns/p' } }), 'Kubernetes//Pod/ns/p');
  t.is(resourceName('address', { service: { namespace: 'ns', hostname: 'h.ns.svc.cluster.local' } }), 'ns/h.ns.svc.cluster.local');
  t.is(resourceName('address', {}), undefined);
  t.is(resourceName('authorization', { name: 'p', namespace: 'ns' }), 'ns/p');
  t.is(label('authorization', { name: 'p', namespace: 'ns' }), 'Authorization "ns/p"');
  const e = emptySnapshot();
  t.false(isWdsSnapshot(e));
  const w = emptySnapshot('wds');
  t.true(isWdsSnapshot(w));
  t.is(resourcesOf(w, 'address'), w.addresses as never);
  t.is(resourcesOf(w, 'authorization'), w.authorizations as never);
});

test('WDS validators: what would make a verdict wrong is an error; what is merely new is not', (t) => {
  t.is(validateResource('address', { workload: { uid: 'u', addresses: ['xhIBAQ==', '/QAAAAAAAAAAAAAAAAEAAQ=='] } }), undefined);
  t.is(validateResource('address', {}), undefined, 'a oneof member newer than our protos');
  t.regex(validateResource('address', { workload: { uid: 'u', addresses: ['AQID'] } }) ?? '', /Address "u": workload.addresses\[0\]: an IP address must be 4 or 16 bytes, got 3/);
  t.regex(validateResource('address', { workload: { uid: 'u', addresses: ['10.0.0.1'] } }) ?? '', /not base64 bytes/);
  t.regex(
    validateResource('address', { workload: { uid: 'u', services: { 'ns/h': { ports: [{ service_port: 70000 }] } } } }) ?? '',
    /services\["ns\/h"\]\.ports\[0\]\.service_port: port out of range/,
  );
  t.regex(validateResource('address', { workload: { uid: 'u', waypoint: { address: { address: 'AQ==' } } } }) ?? '', /workload.waypoint.address.address: an IP address must be 4 or 16 bytes, got 1/);
  t.regex(validateResource('address', { service: { namespace: 'ns' } }) ?? '', /missing required field hostname/);
  t.regex(validateResource('address', { service: { hostname: 'h', addresses: [{ address: 'xhIBAQ==', length: 200 }] } }) ?? '', /bad prefix length 200/);
  t.regex(validateResource('address', { workload: { uid: 'u' }, service: { hostname: 'h' } }) ?? '', /both workload and service/);
  t.regex(validateResource('authorization', { namespace: 'ns' }) ?? '', /missing required field name/);
  // the Delta Resource.name is the key for WDS: istiod names Addresses, the body need not agree
  const v = validateSet('address', [
    { res: { workload: { uid: 'u1' } }, index: 0, name: 'other-name' },
    { res: {}, index: 1 },
  ]);
  t.deepEqual([...v.ok.keys()], ['other-name']);
  t.regex(v.errors[0] ?? '', /Address #1 \(no name\): no resource name/);
});

test('unknown wire fields are found at any depth, in map values too; known encodings are not flagged', (t) => {
  const future = protobuf.parse(
    `syntax = "proto3"; package future;
    message Port { uint32 service_port = 1; uint32 target_port = 2; uint32 brand_new = 9; }
    message PortList { repeated Port ports = 1; }
    message Workload { string uid = 20; repeated bytes addresses = 3; map<string, PortList> services = 22; string future_name = 77; }
    message Address { oneof type { Workload workload = 1; } }`,
    { keepCase: true },
  ).root;
  const F = future.lookupType('future.Address');
  const bytes = F.encode({
    workload: { uid: 'u', addresses: [Buffer.from([10, 0, 0, 1])], services: { 'ns/h': { ports: [{ service_port: 80, target_port: 8080, brand_new: 1 }] } }, future_name: 'x' },
  }).finish();
  const A = mustType('istio.workload.Address');
  t.deepEqual(unknownFields(A, bytes).sort(), ['workload#77', 'workload.services[].ports#9']);
  const known = F.encode({ workload: { uid: 'u', addresses: [Buffer.from([10, 0, 0, 1])], services: { 'ns/h': { ports: [{ service_port: 80, target_port: 8080 }] } } } }).finish();
  t.deepEqual(unknownFields(A, known), []);
});
