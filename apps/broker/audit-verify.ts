/**
 * `npm run audit:verify`: checks the hash chain of one region's audit trail, read-only, and
 * reports the first broken link. Needs only REGION_DATABASE_URL and MERIDIAN_REGION.
 * Exit status: 0 intact, 1 broken, 2 cannot check (configuration or database).
 */
import 'reflect-metadata';
import { verifyAuditChain } from '@meridian/audit';
import { createRegionDataSource, RegionDatabase } from '@meridian/persistence';

async function main(): Promise<void> {
  const url = process.env.REGION_DATABASE_URL?.trim();
  const region = process.env.MERIDIAN_REGION?.trim();
  if (!url || !/^postgres(ql)?:\/\//.test(url)) {
    process.stderr.write(
      'config error: REGION_DATABASE_URL must be the postgres:// URL of the region database\n',
    );
    process.exit(2);
  }
  if (!region || !/^[a-z][a-z0-9-]{0,31}$/.test(region)) {
    process.stderr.write(
      'config error: MERIDIAN_REGION must name the region whose trail to check, e.g. eu\n',
    );
    process.exit(2);
  }
  const ds = createRegionDataSource({ url, poolSize: 1, applicationName: 'meridian-audit-verify' });
  try {
    await ds.initialize();
    const report = await verifyAuditChain(new RegionDatabase(region, ds));
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    process.stderr.write(
      report.ok
        ? `audit chain of region ${region} intact: ${report.entries} entries, ${report.tombstones} tombstones, ${report.pseudonymised} pseudonymised, ${report.legacy} legacy (unchained)\n`
        : `audit chain of region ${region} BROKEN at entry ${report.firstBroken!.id}: ${report.firstBroken!.reason}\n`,
    );
    process.exitCode = report.ok ? 0 : 1;
  } catch (err) {
    process.stderr.write(`audit:verify error: ${(err as Error).message}\n`);
    process.exitCode = 2;
  } finally {
    await ds.destroy().catch(() => undefined);
  }
}

void main();
