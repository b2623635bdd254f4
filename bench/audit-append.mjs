#!/usr/bin/env node
// How fast a region's hash-chained audit trail takes entries (issue 6): every entry is appended
// in a transaction holding the region's chain head row (libs/audit AuditLog.record), so appends
// are serialized per region. This measures appends/s and their latency at 1, 8 and 32 writers
// on a fresh region database, the way the broker writes (its pool of 10 connections), then checks
// that the chain still verifies. `npm run bench:audit` (needs `npm run build`). Figures: stdout.
import { parseArgs } from 'node:util';
import path from 'node:path';
import {
  ROOT,
  cleanup,
  createDatabase,
  killAllNow,
  loadavg,
  log,
  machine,
  percentiles,
  require,
  round,
} from './lib/common.mjs';

const { values: opts } = parseArgs({
  options: {
    entries: { type: 'string', default: '3000' },
    writers: { type: 'string', default: '1,8,32' },
  },
});

const dist = (p) => require(path.join(ROOT, 'dist', p));

async function main() {
  const { RegionDatabase, createRegionDataSource, migrate, claimRegionDatabase } = dist(
    'libs/persistence/src/index.js',
  );
  const { AuditLog, verifyAuditChain } = dist('libs/audit/src/index.js');
  const db = await createDatabase('audit_append');
  const region = new RegionDatabase('eu', createRegionDataSource({ url: db.url }));
  await region.dataSource.initialize();
  await migrate(region.dataSource);
  await claimRegionDatabase(region.dataSource, 'eu');
  const audit = new AuditLog(region);
  const m = machine();
  log(`${m.cores} cores, load average ${loadavg().join(' / ')}; ${opts.entries} entries per run`);
  const rows = [];
  try {
    for (const writers of opts.writers.split(',').map(Number)) {
      const total = Number(opts.entries);
      let next = 0;
      const lat = [];
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: writers }, async () => {
          while (next < total) {
            const i = next++;
            const s = performance.now();
            await audit.record({
              actor: `client-${i % 50}`,
              action: 'token.refused',
              targetType: 'client',
              targetId: `client-${i % 50}`,
              outcome: 'refused',
              detail: { grant_type: 'client_credentials', error: 'invalid_client', source: '203.0.113.9' },
            });
            lat.push(performance.now() - s);
          }
        }),
      );
      const seconds = (performance.now() - t0) / 1000;
      const p = percentiles(lat);
      const row = { writers, perSecond: round(total / seconds, 0), p50: round(p.p50), p99: round(p.p99) };
      rows.push(row);
      log(`${writers} writers: ${row.perSecond} appends/s, p50 ${row.p50} ms, p99 ${row.p99} ms`);
    }
    const t0 = performance.now();
    const verdict = await verifyAuditChain(region);
    log(
      `chain: ${JSON.stringify(verdict).slice(0, 200)} (verified in ${round((performance.now() - t0) / 1000)} s)`,
    );
  } finally {
    await region.dataSource.destroy();
  }
  console.log('\n| writers | appends/s | p50 ms | p99 ms |\n| ---: | ---: | ---: | ---: |');
  for (const r of rows) console.log(`| ${r.writers} | ${r.perSecond} | ${r.p50} | ${r.p99} |`);
}

main()
  .then(() => cleanup())
  .catch(async (err) => {
    console.error(err);
    await cleanup();
    killAllNow();
    process.exit(1);
  });
