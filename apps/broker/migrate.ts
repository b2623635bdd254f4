/**
 * `npm run migrate`: applies pending migrations to the control plane and this region's
 * database, as a deploy step (the broker also migrates at start; both take the same advisory
 * lock, so running both at once is safe).
 */
import 'reflect-metadata';
import { validateBrokerEnv } from '@meridian/config';
import {
  claimRegionDatabase,
  createControlDataSource,
  createRegionDataSource,
  migrate,
} from '@meridian/persistence';

async function main(): Promise<void> {
  const result = validateBrokerEnv(process.env);
  if (!result.ok) {
    for (const line of result.errors) process.stderr.write(`config error: ${line}\n`);
    process.exit(1);
  }
  const { config } = result;
  if (!config.controlDatabaseUrl || !config.regionDatabaseUrl) {
    process.stderr.write(
      'config error: CONTROL_DATABASE_URL and REGION_DATABASE_URL are required for npm run migrate\n',
    );
    process.exit(1);
  }
  const control = createControlDataSource({ url: config.controlDatabaseUrl, poolSize: 2 });
  const region = createRegionDataSource({ url: config.regionDatabaseUrl, poolSize: 2 });
  try {
    await control.initialize();
    await region.initialize();
    const c = await migrate(control);
    const r = await migrate(region);
    await claimRegionDatabase(region, config.region);
    process.stdout.write(
      `control: ${c.length ? c.join(', ') : 'up to date'}\nregion ${config.region}: ${r.length ? r.join(', ') : 'up to date'}\n`,
    );
  } catch (err) {
    process.stderr.write(`migrate error: ${(err as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    await Promise.allSettled([control.destroy(), region.destroy()]);
  }
}

void main();
