// The applications of the sidecar tests, run inside pods as real HTTP peers
// (node:http, keep-alive):
//   node httpapp.js serve PORT
//     answers every request with JSON { sha256, bytes, out, in }: the body's
//     hash and the x-sidecar-out / x-sidecar-in headers the sidecars added.
//   node httpapp.js post URL SIZE COUNT
//     sends COUNT POSTs of SIZE random bytes over one keep-alive connection and
//     prints a JSON array of { sent, sha256, bytes, out, in, status }.
//   node httpapp.js time URL SIZE COUNT
//     the same, but prints { us: [per-request latency], ms, bytes, ok } where
//     ok counts responses with both sidecars' headers and an intact body.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';

const [mode, a1, a2, a3] = process.argv.slice(2);

if (mode === 'serve') {
  http
    .createServer((req, res) => {
      const h = createHash('sha256');
      let bytes = 0;
      req.on('data', (d: Buffer) => {
        h.update(d);
        bytes += d.length;
      });
      req.on('end', () => {
        const body = JSON.stringify({ sha256: h.digest('hex'), bytes, out: req.headers['x-sidecar-out'] ?? null, in: req.headers['x-sidecar-in'] ?? null });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
    })
    .listen(Number(a1), '::');
} else if (mode === 'post' || mode === 'time') {
  const url = new URL(a1 as string);
  const size = Number(a2);
  const count = Number(a3 ?? 1);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const results: Array<{ sent: string; sha256?: string; out?: string | null; in?: string | null; status?: number | undefined }> = [];
  const us: number[] = [];
  const one = (body: Buffer) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          host: url.hostname.replace(/^\[|\]$/g, ''),
          port: Number(url.port),
          path: url.pathname,
          method: 'POST',
          agent,
          headers: { 'content-length': body.length, 'content-type': 'application/octet-stream' },
        },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('end', () => {
            const r = JSON.parse(Buffer.concat(parts).toString('utf8')) as object;
            results.push({ sent: createHash('sha256').update(body).digest('hex'), status: res.statusCode, ...r });
            resolve();
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const run = async () => {
    const t0 = process.hrtime.bigint();
    const body = mode === 'time' ? randomBytes(size) : undefined; // timing: one body, no per-request RNG cost
    for (let i = 0; i < count; i++) {
      const s = process.hrtime.bigint();
      await one(body ?? randomBytes(size));
      us.push(Number(process.hrtime.bigint() - s) / 1000);
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    agent.destroy();
    if (mode === 'time') {
      const ok = results.filter((r) => r.status === 200 && r.sha256 === r.sent && r.out && r.in).length;
      process.stdout.write(JSON.stringify({ us, ms, bytes: size * count, ok }));
    } else process.stdout.write(JSON.stringify(results));
  };
  run().catch((e: Error) => {
    process.stderr.write(`httpapp: ${e.message}\n`);
    process.exit(1);
  });
} else {
  process.stderr.write('usage: httpapp serve PORT | post URL SIZE COUNT | time URL SIZE COUNT\n');
  process.exit(2);
}
