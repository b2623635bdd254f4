/**
 * A demo service behind the auth sidecar: it trusts the sidecar (listening on loopback only) and
 * answers with what it received — the `x-meridian-*` identity headers — so the demo app can show
 * what a service learns about a person.
 */
import { createServer, type Server } from 'node:http';

export interface DemoServiceOptions {
  name: string;
  region: string;
  port: number;
}

export async function startDemoService(o: DemoServiceOptions): Promise<{ close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const received: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (k.startsWith('x-meridian-') && typeof v === 'string') received[k] = v;
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(
      JSON.stringify({
        service: o.name,
        region: o.region,
        path: req.url,
        received,
        orders: [{ id: 'A-1001', item: 'demo order', region: o.region }],
      }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, '127.0.0.1', () => resolve());
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
