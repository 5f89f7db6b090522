// Test peer for the ordering test: a TCP server (run outside the meshbpf cgroup,
// so sockops never inserts it) that accepts one connection PAUSED (nothing is
// read), inserts its own socket into mb_sockets on "insert", and on "read"
// drains the connection and prints the sha256 of everything it received.
// Protocol: commands on stdin, one per line; answers on stdout, one per line.
import { createServer, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { openMaps } from '../../src/maps/pinned.js';
import { mapUpdate } from '../../src/sys/libbpf.js';

const [pinDir, host, portText] = process.argv.slice(2) as [string, string, string];
let conn: Socket | undefined;
const hash = createHash('sha256');
let bytes = 0;

const server = createServer({ pauseOnConnect: true }, (s) => {
  conn = s;
  console.log('accepted');
});
server.listen(Number(portText), host, () => console.log('listening'));

createInterface({ input: process.stdin }).on('line', (cmd) => {
  const s = conn;
  if (!s) return console.log('error no connection');
  if (cmd === 'insert') {
    const m = openMaps(pinDir);
    try {
      const key = Buffer.alloc(m.sockets.keyCodec.size);
      m.sockets.keyCodec.encode(key, 0, { localIp: s.localAddress!, remoteIp: s.remoteAddress!, localPort: s.localPort!, remotePort: s.remotePort!, netnsCookie: 0n });
      const fd = Buffer.alloc(8);
      fd.writeBigUInt64LE(BigInt((s as unknown as { _handle: { fd: number } })._handle.fd));
      mapUpdate(m.sockets.fd, key, fd);
    } finally {
      m.close();
    }
    console.log('inserted');
  } else if (cmd === 'read') {
    s.on('data', (d: Buffer) => {
      hash.update(d);
      bytes += d.length;
    });
    s.on('end', () => {
      console.log(`done ${bytes} ${hash.digest('hex')}`);
      server.close();
      process.exit(0);
    });
    s.resume();
  }
});
