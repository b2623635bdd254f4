#!/usr/bin/env node
// Memory per cached client (issue 7, MERIDIAN_CLIENT_CACHE_SIZE sizing): a broker with N extra
// clients (default 20,000; rows made as the growth scenario makes them), heap and RSS after a
// full GC before and after each client made one token request. `npm run bench:client-memory [N]`
// (needs `npm run build`). Figures: stdout.
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, cannon, cleanup, log, rand, require, sleep, withPg, basicAuth } from './lib/common.mjs';
import { registerBenchClient, startBroker, tokenRequest } from './lib/broker.mjs';
const N = Number(process.argv[2] ?? 20000);
const { hashClientSecret } = require(path.join(ROOT, 'dist/libs/tokens/src/client-secret.js'));
const broker = await startBroker('mem', {
  nodeArgs: ['--import', path.join(ROOT, 'bench/workers/heap-stats-on-signal.mjs')],
});
const stat = async () => {
  process.kill(broker.pid, 'SIGUSR2');
  await sleep(1500);
  return JSON.parse(fs.readFileSync(`/tmp/heapstat-${broker.pid}.json`, 'utf8'));
};
try {
  const hot = await registerBenchClient(broker);
  const template = await withPg(
    broker.control.url,
    async (c) =>
      (await c.query('select metadata from oidc_client where client_id = $1', [hot.clientId])).rows[0]
        .metadata,
  );
  const auths = [];
  await withPg(broker.control.url, async (c) => {
    for (let s = 0; s < N; s += 5000) {
      const ids = [],
        docs = [];
      for (let i = s; i < Math.min(N, s + 5000); i++) {
        const id = `mem-${i}`,
          secret = rand(32);
        auths.push(basicAuth(id, secret));
        ids.push(id);
        docs.push(JSON.stringify({ ...template, client_id: id, client_secret: hashClientSecret(secret) }));
      }
      await c.query(
        'insert into oidc_client (client_id, metadata) select * from unnest($1::text[], $2::jsonb[])',
        [ids, docs],
      );
    }
  });
  await sleep(2000);
  const req = tokenRequest(hot);
  await cannon({ url: broker.tokenEndpoint, ...req }, { connections: 20, amount: 2000 });
  const a = await stat();
  let next = 0;
  const { result } = await cannon(
    {
      url: broker.tokenEndpoint,
      requests: [
        {
          method: 'POST',
          path: '/token',
          headers: req.headers,
          body: req.body,
          setupRequest: (r) => ({ ...r, headers: { ...r.headers, authorization: auths[next++ % N] } }),
        },
      ],
    },
    { connections: 50, amount: N },
  );
  log(`touched: ${result['2xx']} ok, ${result.non2xx} non-2xx`);
  const b = await stat();
  log(
    `heapUsed ${(a.heapUsed / 1048576).toFixed(1)} -> ${(b.heapUsed / 1048576).toFixed(1)} MiB: ${((b.heapUsed - a.heapUsed) / N).toFixed(0)} B/client; rss ${(a.rss / 1048576).toFixed(0)} -> ${(b.rss / 1048576).toFixed(0)} MiB: ${((b.rss - a.rss) / N).toFixed(0)} B/client`,
  );
  log(
    `external ${((b.external - a.external) / N).toFixed(0)} B/client, arrayBuffers ${((b.arrayBuffers - a.arrayBuffers) / N).toFixed(0)} B/client, heapTotal ${((b.heapTotal - a.heapTotal) / N).toFixed(0)} B/client`,
  );
} finally {
  await cleanup();
}
