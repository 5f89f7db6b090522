// The agent's HTTP server must survive any request line: a URL that does not
// parse is a 400, and the next request is still answered (issue 10).
import test from 'ava';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Agent } from '../../src/agent/agent.js';
import { startServer } from '../../src/agent/server.js';

const fakeAgent = {
  health: () => ({ healthy: true, ready: true, problems: [] }),
  metrics: { registry: { metrics: async () => 'x 1\n', contentType: 'text/plain' } },
  debugState: () => ({}),
  status: () => ({}),
} as unknown as Agent;

/** Send raw bytes, return the status line of the answer ('' when the server closed without one). */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(request));
    let text = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (text += d));
    s.on('end', () => resolve(text.split('\r\n')[0] ?? ''));
    s.on('error', reject);
  });
}

for (const target of ['//[', 'http://[/healthz', 'http://a:99999999/']) {
  test.serial(`GET ${target} is answered 400 and the server keeps serving`, async (t) => {
    const server = await startServer(fakeAgent, '127.0.0.1:0');
    try {
      const port = (server.address() as AddressInfo).port;
      t.regex(await raw(port, `GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`), /^HTTP\/1\.1 400 /);
      t.regex(await raw(port, 'GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), /^HTTP\/1\.1 200 /);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
}

test.serial('a malformed request line is a 400, not an error event', async (t) => {
  const server = await startServer(fakeAgent, '127.0.0.1:0');
  try {
    const port = (server.address() as AddressInfo).port;
    t.regex(await raw(port, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400 /);
    t.regex(await raw(port, 'GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), /^HTTP\/1\.1 200 /);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
