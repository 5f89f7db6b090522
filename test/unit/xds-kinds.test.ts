// The resource-kind table: every kind round-trips through its type URL, names
// resources by its own field, and validates with its own validator.
import test from 'ava';
import { KIND_NAMES, KINDS, kindOfType, label, resourceName, resourcesOf, validateResource } from '../../src/xds/kinds.js';
import { emptySnapshot } from '../../src/xds/types.js';

test('type URL <-> kind, for each kind and nothing else', (t) => {
  for (const k of KIND_NAMES) t.is(kindOfType(KINDS[k].typeUrl), k);
  t.is(kindOfType('type.googleapis.com/envoy.config.route.v3.RouteConfiguration'), undefined);
  t.is(kindOfType(undefined), undefined);
});

test('names, labels and snapshot maps come from the descriptor', (t) => {
  t.is(resourceName('eds', { cluster_name: 'a' }), 'a');
  t.is(resourceName('eds', { name: 'a' }), undefined);
  t.is(label('cds', { name: 'x' }), 'cluster "x"');
  t.is(label('lds', undefined, 3), 'listener #3 (no name)');
  const s = emptySnapshot();
  t.is(resourcesOf(s, 'eds'), s.endpoints);
  t.is(resourcesOf(s, 'lds'), s.listeners);
});

test('each kind is checked by its own validator', (t) => {
  t.is(validateResource('eds', { cluster_name: 'c' }), undefined);
  t.regex(validateResource('eds', { name: 'c' }) ?? '', /missing required field cluster_name/);
  t.regex(validateResource('cds', { cluster_name: 'c' }) ?? '', /missing required field name/);
  t.regex(validateResource('lds', { name: 'l', address: { socket_address: { address: 'nope', port_value: 1 } } }) ?? '', /listener "l": address.socket_address: bad IP address/);
  t.is(validateResource('cds', []), 'cluster #?: not an object');
});
