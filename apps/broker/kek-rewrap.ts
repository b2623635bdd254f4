/**
 * `npm run kek:rewrap [-- --batch-size N] [--limit N] [--dry-run]`: re-wraps every data key of
 * this region still wrapped under another KEK under MERIDIAN_KEK, with the broker's own
 * environment (MERIDIAN_KEK = the new KEK, MERIDIAN_KEK_PREVIOUS = the old one). Brokers keep
 * running meanwhile. Safe to interrupt and to run again: each batch is one transaction, and a
 * run only picks up what is left. Exit status: 0 nothing left (or --limit reached), 1 rows no
 * configured KEK opens, or configuration/database errors.
 */
import 'reflect-metadata';
import { validateBrokerEnv } from '@meridian/config';
import { kekId, rewrapRegionKeys, type KekRewrapProgress } from '@meridian/keys';
import {
  ControlDatabase,
  RegionDatabase,
  createControlDataSource,
  createRegionDataSource,
} from '@meridian/persistence';

const LABELS: Record<KekRewrapProgress['target'], string> = {
  signing_key: 'signing keys',
  federation_secret: 'upstream client secrets',
};

function parseArgs(argv: string[]): { batchSize: number; limit?: number; dryRun: boolean } | string {
  const out: { batchSize: number; limit?: number; dryRun: boolean } = { batchSize: 100, dryRun: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--dry-run') out.dryRun = true;
    else if (arg === '--batch-size' || arg === '--limit') {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1 || n > 100_000)
        return `${arg} must be a whole number from 1 to 100000`;
      if (arg === '--batch-size') out.batchSize = n;
      else out.limit = n;
    } else return `unknown argument ${arg} (--batch-size N, --limit N, --dry-run)`;
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (typeof args === 'string') {
    process.stderr.write(`kek:rewrap: ${args}\n`);
    process.exit(1);
  }
  const result = validateBrokerEnv(process.env);
  if (!result.ok) {
    for (const line of result.errors) process.stderr.write(`config error: ${line}\n`);
    process.exit(1);
  }
  const { config } = result;
  if (!config.controlDatabaseUrl || !config.regionDatabaseUrl) {
    process.stderr.write(
      'config error: CONTROL_DATABASE_URL and REGION_DATABASE_URL are required for npm run kek:rewrap\n',
    );
    process.exit(1);
  }
  const control = createControlDataSource({
    url: config.controlDatabaseUrl,
    poolSize: 2,
    applicationName: 'meridian-kek-rewrap',
  });
  const region = createRegionDataSource({
    url: config.regionDatabaseUrl,
    poolSize: 2,
    applicationName: 'meridian-kek-rewrap',
  });
  try {
    await control.initialize();
    await region.initialize();
    const out = (line: string) => process.stdout.write(`${line}\n`);
    out(
      `region ${config.region}: re-wrapping data keys under KEK ${kekId(config.kek)}` +
        (config.kekPrevious
          ? ` (previous KEK ${kekId(config.kekPrevious)})`
          : ' (no MERIDIAN_KEK_PREVIOUS)') +
        (args.dryRun ? ' — dry run' : ''),
    );
    const report = await rewrapRegionKeys({
      region: config.region,
      regionDb: new RegionDatabase(config.region, region),
      controlDb: new ControlDatabase(control),
      kek: config.kek,
      previousKeks: config.kekPrevious ? [config.kekPrevious] : [],
      batchSize: args.batchSize,
      limit: args.limit,
      dryRun: args.dryRun,
      onProgress: (p) => out(`${LABELS[p.target]}: ${p.done}/${p.total} re-wrapped`),
    });
    for (const [target, t] of Object.entries(report.targets))
      out(
        `${LABELS[target as KekRewrapProgress['target']]}: ${t.rewrapped} re-wrapped, ${t.remaining} left under another KEK`,
      );
    for (const f of report.failures)
      process.stderr.write(
        `kek:rewrap: ${f.target} ${f.id} (wrapped under KEK id ${f.kekId ?? 'unknown'}): ${f.reason}; set MERIDIAN_KEK_PREVIOUS to that KEK\n`,
      );
    out(
      report.complete
        ? `done: every data key of region ${config.region} is wrapped under KEK ${report.kekId}; MERIDIAN_KEK_PREVIOUS can be removed`
        : `not finished: run npm run kek:rewrap again${report.failures.length ? ' once the KEKs above are configured' : ''}`,
    );
    process.exitCode = report.failures.length ? 1 : 0;
  } catch (err) {
    process.stderr.write(`kek:rewrap error: ${(err as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    await Promise.allSettled([control.destroy(), region.destroy()]);
  }
}

void main();
