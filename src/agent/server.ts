// The agent's HTTP endpoints. Everything here is read-only: nothing a request
// does can change the maps or crash the agent (errors become 500s, a request
// URL that does not parse a 400: nothing may throw outside the handler).
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { Agent } from './agent.js';
import { UserError } from '../errors.js';

function send(res: ServerResponse, code: number, body: unknown, type = 'application/json'): void {
  const text = type === 'application/json' ? `${JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n` : String(body);
  res.writeHead(code, { 'content-type': type });
  res.end(text);
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(listen);
  if (!m) throw new UserError(`--listen must be HOST:PORT (e.g. 127.0.0.1:9750), not ${JSON.stringify(listen)}`);
  const port = Number(m[3]);
  // checked here, before anything is loaded (Node would only refuse it at listen time)
  if (port > 65535) throw new UserError(`--listen ${listen}: port ${m[3]} is out of range (0-65535)`);
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}

/** The request target as a URL, or undefined when it does not parse (`//[`, `http://a:99999999/`). */
function requestUrl(target: string | undefined): URL | undefined {
  try {
    return new URL(target ?? '/', 'http://agent');
  } catch {
    return undefined;
  }
}

export async function startServer(agent: Agent, listen: string): Promise<Server> {
  const { host, port } = parseListen(listen);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'read-only endpoint: GET only' });
    const url = requestUrl(req.url);
    if (!url) return send(res, 400, { error: 'bad request URL' });
    const path = url.pathname;
    void (async () => {
      try {
        switch (path) {
          case '/metrics':
            return send(res, 200, await agent.metrics.registry.metrics(), agent.metrics.registry.contentType);
          case '/healthz': {
            const h = agent.health();
            return send(res, h.healthy ? 200 : 503, { healthy: h.healthy, problems: h.problems });
          }
          case '/readyz': {
            const h = agent.health();
            return send(res, h.ready ? 200 : 503, { ready: h.ready, problems: h.problems });
          }
          case '/debug/state':
            return send(res, 200, agent.debugState({ full: url.searchParams.get('full') === '1' }));
          case '/debug/status':
            return send(res, 200, agent.status());
          default:
            return send(res, 404, { error: 'not found', endpoints: ['/metrics', '/healthz', '/readyz', '/debug/state[?full=1]', '/debug/status'] });
        }
      } catch (e) {
        if (res.headersSent) return void res.destroy();
        return send(res, 500, { error: (e as Error).message });
      }
    })();
  });
  // A malformed request line or header is answered 400 by Node; never let it reach 'error'.
  server.on('clientError', (_e, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
