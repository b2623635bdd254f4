/**
 * Helpers for the abuse-limit and detector tests: raw HTTP from a chosen local address (so a
 * test can be an untrusted peer, 127.0.0.2, next to the trusted proxy 127.0.0.1), a webhook
 * receiver that checks every delivery's signature, and a TCP proxy in front of PostgreSQL that
 * can stop answering (a network partition between a broker and its region database).
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingHttpHeaders, type Server } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { verifyWebhookSignature } from '@meridian/security';

export interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: any;
}

export function raw(
  base: string,
  path: string,
  o: {
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    localAddress?: string;
    timeoutMs?: number;
  } = {},
): Promise<RawAnswer> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        hostname,
        port,
        path,
        method: o.method ?? 'GET',
        headers: o.headers,
        localAddress: o.localAddress,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode!, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(o.timeoutMs ?? 15_000, () => req.destroy(new Error(`no answer to ${path} in time`)));
    req.end(o.body);
  });
}

export function basic(clientId: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

/** A client_credentials request over raw HTTP (choose the peer address and X-Forwarded-For). */
export function ccRequest(
  base: string,
  client: { clientId: string; clientSecret: string },
  resource: string,
  o: { xff?: string; localAddress?: string } = {},
): Promise<RawAnswer> {
  return raw(base, '/token', {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
      authorization: basic(client.clientId, client.clientSecret),
      ...(o.xff ? { 'x-forwarded-for': o.xff } : {}),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource }).toString(),
    localAddress: o.localAddress,
  });
}

/** A documentation address (RFC 5737) no other test uses. */
export function someAddress(): string {
  const b = randomBytes(2);
  return `198.51.${b[0]}.${(b[1]! % 250) + 1}`;
}

export interface ReceivedAlert {
  id: string;
  detector: string;
  region: string;
  target: { type: string; id?: string };
  detail: Record<string, unknown>;
  containment?: string;
  verified: boolean;
  headers: IncomingHttpHeaders;
}

/** An alert webhook endpoint on loopback that verifies each delivery's HMAC signature. */
export async function startWebhookReceiver(secret: string) {
  const alerts: ReceivedAlert[] = [];
  const server: Server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const verified = verifyWebhookSignature(
        secret,
        {
          signature: req.headers['x-meridian-signature'] as string | undefined,
          timestamp: req.headers['x-meridian-timestamp'] as string | undefined,
        },
        body,
      );
      try {
        alerts.push({
          ...(JSON.parse(body) as Omit<ReceivedAlert, 'verified' | 'headers'>),
          verified,
          headers: req.headers,
        });
      } catch {
        alerts.push({
          id: '',
          detector: 'unparseable',
          region: '',
          target: { type: '' },
          detail: {},
          verified,
          headers: req.headers,
        });
      }
      res.writeHead(verified ? 204 : 401).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`;
  return {
    url,
    alerts,
    /** Waits for an alert matching `pred` (default 10 s). */
    async waitFor(pred: (a: ReceivedAlert) => boolean, timeoutMs = 10_000): Promise<ReceivedAlert> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = alerts.find(pred);
        if (found) return found;
        if (Date.now() > deadline)
          throw new Error(
            `no matching alert within ${timeoutMs} ms; got ${JSON.stringify(alerts.map((a) => a.detector))}`,
          );
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * A TCP proxy to PostgreSQL. `partition()` stops forwarding in both directions and holds new
 * connections without answering (packets dropped, nothing refused); `heal()` lets everything
 * through again, buffered data included.
 */
export async function startPgProxy(target: { host: string; port: number }) {
  let partitioned = false;
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  const held = new Set<Socket>();
  const connect = (client: Socket) => {
    const upstream = net.connect(target.port, target.host);
    const pair = { client, upstream };
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    if (partitioned) {
      client.pause();
      upstream.pause();
    }
  };
  const server = net.createServer((client) => {
    if (partitioned) {
      client.pause();
      held.add(client);
      client.on('close', () => held.delete(client)).on('error', () => held.delete(client));
      return;
    }
    connect(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    partition() {
      partitioned = true;
      for (const { client, upstream } of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
    },
    heal() {
      partitioned = false;
      for (const { client, upstream } of pairs) {
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
        upstream.resume();
      }
      for (const client of held) {
        held.delete(client);
        connect(client);
        client.resume();
      }
    },
    stop() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      for (const c of held) c.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
