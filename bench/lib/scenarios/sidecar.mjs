// The auth sidecar in front of a trivial node:http service vs the service called directly (and,
// as the ceiling of any node:http proxy here, a bare reverse proxy without authentication).
import { BenchError, compareTargets, freePort, http, log, startNode, step, waitHttp } from '../common.mjs';
import { AUDIENCE, SIDECAR_MAIN, assertBuilt, checkedToken } from '../broker.mjs';
import { ratio, sharedStack } from './shared.mjs';

// The trivial upstream: a small JSON answer; /check echoes the identity it received.
const UPSTREAM_SOURCE = `
const http = require('node:http');
const body = Buffer.from('{"ok":true}');
http.createServer((req, res) => {
  if (req.url === '/check') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ sub: req.headers['x-meridian-sub'] ?? null, scope: req.headers['x-meridian-scope'] ?? null }));
    return;
  }
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

// The least a node:http reverse proxy does (keep-alive agent, headers copied, response piped).
const BARE_PROXY_SOURCE = `
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
const up = new URL(process.env.UPSTREAM);
http.createServer((req, res) => {
  const headers = { ...req.headers, host: up.host };
  delete headers.connection;
  const r = http.request({ hostname: up.hostname, port: up.port, method: req.method, path: req.url, headers, agent }, (ur) => {
    res.writeHead(ur.statusCode, ur.headers);
    ur.pipe(res);
  });
  r.on('error', () => { res.statusCode = 502; res.end(); });
  req.pipe(r);
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

export const sidecar = {
  name: 'sidecar',
  title: 'auth sidecar in front of a trivial service vs the service directly',
  async run(ctx) {
    assertBuilt(SIDECAR_MAIN);
    const { client, broker } = await sharedStack();
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };
    const upPort = await freePort();
    const upstream = startNode('sc-upstream', ['-e', UPSTREAM_SOURCE], {
      env: { ...env, PORT: String(upPort) },
    });
    const upstreamUrl = `http://127.0.0.1:${upPort}`;
    await waitHttp('sidecar: start trivial upstream', upstreamUrl, upstream, 15_000);
    const bpPort = await freePort();
    const bare = startNode('sc-bare-proxy', ['-e', BARE_PROXY_SOURCE], {
      env: { ...env, PORT: String(bpPort), UPSTREAM: upstreamUrl },
    });
    const bareUrl = `http://127.0.0.1:${bpPort}`;
    await waitHttp('sidecar: start bare proxy', bareUrl, bare, 15_000);
    const scPort = await freePort();
    const sc = startNode('sidecar', [SIDECAR_MAIN], {
      env: {
        ...env,
        PORT: String(scPort),
        HOST: '127.0.0.1',
        SIDECAR_UPSTREAM: upstreamUrl,
        SIDECAR_AUDIENCE: AUDIENCE,
        SIDECAR_TRUST_BUNDLE_URL: `${broker.issuer}/.well-known/meridian/trust-bundle`,
        SIDECAR_REQUIRED_SCOPES: 'read',
        LOG_LEVEL: 'warn',
      },
    });
    const scUrl = `http://127.0.0.1:${scPort}`;
    await waitHttp('sidecar: start sidecar', `${scUrl}/readyz`, sc, 30_000);
    try {
      const { token } = await checkedToken(broker, client);
      const headers = { authorization: `Bearer ${token}` };
      await step('sidecar: check it forwards the identity and refuses no token', async () => {
        const ok = await http('sidecar check', `${scUrl}/check`, { headers });
        if (ok.status !== 200 || ok.json?.sub !== client.clientId)
          throw new BenchError('sidecar: check', `with a token: ${ok.status} ${ok.text.slice(0, 300)}`);
        const no = await http('sidecar check', `${scUrl}/check`);
        if (no.status !== 401)
          throw new BenchError('sidecar: check', `without a token: ${no.status} (expected 401)`);
      });
      const path = '/orders/42';
      const res = await compareTargets(
        [
          {
            name: 'direct',
            label: 'service directly',
            request: { url: `${upstreamUrl}${path}`, headers },
            pids: [{ name: 'upstream', pid: upstream.pid }],
          },
          {
            name: 'bare_proxy',
            label: 'bare node:http proxy, no auth',
            request: { url: `${bareUrl}${path}`, headers },
            pids: [
              { name: 'proxy', pid: bare.pid },
              { name: 'upstream', pid: upstream.pid },
            ],
          },
          {
            name: 'sidecar',
            label: 'through the sidecar',
            request: { url: `${scUrl}${path}`, headers },
            pids: [
              { name: 'proxy', pid: sc.pid },
              { name: 'upstream', pid: upstream.pid },
            ],
          },
        ],
        ctx.load,
      );
      const d = res.direct.summary;
      const s = res.sidecar.summary;
      const out = {
        connections: ctx.load.connections,
        targets: res,
        ratio: ratio(s.rps, d.rps),
        ofBareProxy: ratio(s.rps, res.bare_proxy.summary.rps),
        addedMs: { p50: s.p50.median - d.p50.median, p99: s.p99.median - d.p99.median },
        authCpuUsPerReq: (s.cpuUsPerReq?.median ?? NaN) - (res.bare_proxy.summary.cpuUsPerReq?.median ?? NaN),
      };
      log(
        `sidecar/direct ${out.ratio?.median.toFixed(2)}×, added p50 ${out.addedMs.p50.toFixed(2)} ms, p99 ${out.addedMs.p99.toFixed(2)} ms`,
      );
      return out;
    } finally {
      await Promise.allSettled([sc.stop(), bare.stop(), upstream.stop()]);
    }
  },
};
