// Codecs and address parsing: round trips, byte order, canonical text, key construction.
import test from 'ava';
import * as c from '../../src/maps/codecs.js';
import { AddressError } from '../../src/errors.js';
import { formatCidr, formatIp, parseCidr, parseIp, parsePort, cidrContains } from '../../src/net/ip.js';

function roundTrip<T>(codec: c.Codec<T>, v: T): { buf: Buffer; back: T } {
  const buf = Buffer.alloc(codec.size + 8, 0xee);
  codec.encode(buf, 4, v);
  return { buf, back: codec.decode(buf, 4) };
}

test('sock key: round trip, network-order ports, zeroed padding, offset respected', (t) => {
  const k: c.SockKey = { localIp: 'fd00::1', remoteIp: '198.18.0.9', localPort: 443, remotePort: 51000, netnsCookie: 4096n };
  const { buf, back } = roundTrip(c.sockKey, k);
  t.deepEqual(back, k);
  t.is(buf.readUInt16BE(4 + 32), 443);
  t.is(buf[4 + 32], 0x01, 'high byte first: 443 = 0x01bb');
  t.is(buf.readUInt32LE(4 + 36), 0, 'padding zeroed');
  t.is(buf[0], 0xee, 'bytes before the offset untouched');
  t.is(buf[4 + 48], 0xee, 'bytes after the key untouched');
});

test('mirror key is what the peer socket inserted', (t) => {
  const client: c.SockKey = { localIp: '198.18.0.2', remoteIp: '198.18.0.3', localPort: 40000, remotePort: 5201, netnsCookie: 0n };
  const server: c.SockKey = { localIp: '198.18.0.3', remoteIp: '198.18.0.2', localPort: 5201, remotePort: 40000, netnsCookie: 0n };
  t.deepEqual(c.mirrorSockKey(client), server);
  t.deepEqual(c.mirrorSockKey(c.mirrorSockKey(client)), client);
});

test('IPv4 and IPv4-mapped IPv6 produce the same key bytes', (t) => {
  const a = Buffer.alloc(48);
  const b = Buffer.alloc(48);
  c.sockKey.encode(a, 0, { localIp: '10.1.2.3', remoteIp: '10.1.2.4', localPort: 1, remotePort: 2, netnsCookie: 0n });
  c.sockKey.encode(b, 0, { localIp: '::ffff:10.1.2.3', remoteIp: '::ffff:a01:204', localPort: 1, remotePort: 2, netnsCookie: 0n });
  t.true(a.equals(b));
});

test('endpoint key: prefix length over 16 bytes, IPv4 adds 96, canonical text back', (t) => {
  const { buf, back } = roundTrip(c.endpointKey, '10.244.1.0/24');
  t.is(buf.readUInt32LE(4), 120);
  t.is(back, '10.244.1.0/24');
  t.is(roundTrip(c.endpointKey, 'fd00:10::/64').back, 'fd00:10::/64');
  t.is(roundTrip(c.endpointKey, '10.0.0.7').back, '10.0.0.7/32', 'bare IP is a host prefix');
  t.is(roundTrip(c.endpointKey, 'FD00::0:5').back, 'fd00::5/128');
});

test('endpoint and policy values: flags and verdict names', (t) => {
  const v: c.EndpointValue = { local: true, mesh: false, networkId: 7, workloadId: 0xffffffff };
  const { buf, back } = roundTrip(c.endpointValue, v);
  t.deepEqual(back, v);
  t.is(buf.readUInt32LE(4), c.EP_LOCAL);
  t.deepEqual(roundTrip(c.policyValue, { verdict: 'proxy', ruleId: 9 }).back, { verdict: 'proxy', ruleId: 9 });
  const unknown = Buffer.alloc(8);
  unknown.writeUInt32LE(77, 0);
  t.is(c.policyValue.decode(unknown, 0).verdict, 'none', 'an unknown verdict code reads as none (never bypass)');
  t.deepEqual(roundTrip(c.policyKey, { ip: 'fd00::9', port: 65535 }).back, { ip: 'fd00::9', port: 65535 });
});

test('address parsing: forms, errors, containment', (t) => {
  t.is(formatIp(parseIp('::ffff:198.18.0.1').bytes), '198.18.0.1');
  t.is(parseIp('::ffff:198.18.0.1').family, 4);
  t.is(formatIp(parseIp('fd00:0:0:1:0:0:0:2').bytes), 'fd00:0:0:1::2');
  t.is(formatIp(parseIp('2001:db8:0:0:1:0:0:1').bytes), '2001:db8::1:0:0:1', 'first longest zero run');
  t.is(formatIp(parseIp('::').bytes), '::');
  t.throws(() => parseIp('300.1.1.1'), { instanceOf: AddressError });
  t.throws(() => parseIp('fe80::1%eth0'), { instanceOf: AddressError });
  t.throws(() => parseCidr('10.0.0.0/33'), { message: /bad prefix length/ });
  t.throws(() => parseCidr('10.0.0.1/24'), { message: /host bits set; did you mean 10\.0\.0\.0\/24/ });
  t.is(formatCidr(parseCidr('0.0.0.0/0')), '0.0.0.0/0');
  const contains = (c: string, ip: string) => {
    const p = parseCidr(c);
    return cidrContains({ bytes: p.ip.bytes, prefixLen: p.prefixLen }, parseIp(ip).bytes);
  };
  t.true(contains('10.244.0.0/16', '10.244.9.9'));
  t.false(contains('10.244.0.0/16', '10.245.0.1'));
  t.false(contains('10.244.0.0/16', 'fd00::1'), 'families never mix');
  t.true(contains('fd00::/8', 'fd12::1'));
  t.true(contains('10.244.1.0/25', '10.244.1.127'), 'a partial byte');
  t.false(contains('10.244.1.0/25', '10.244.1.128'));
  t.true(contains('0.0.0.0/0', '1.2.3.4'));
  t.false(contains('0.0.0.0/0', '::1'), 'an IPv4 /0 is not every address');
  t.true(contains('::/0', '1.2.3.4'));
  t.is(parsePort('8080'), 8080);
  for (const bad of ['0', '65536', '-1', '80a', '']) t.throws(() => parsePort(bad), { instanceOf: AddressError }, bad);
});

test('stat names are unique and say what they count', (t) => {
  t.is(new Set(c.STAT_NAMES).size, c.STAT_NAMES.length);
  t.true(c.STAT_NAMES.includes('redirect_bytes'));
  t.true(c.STAT_NAMES.length <= c.MB_STAT_SLOTS);
});
