import {
  ControlDatabase,
  RegionDatabase,
  claimRegionDatabase,
  createControlDataSource,
  createRegionDataSource,
  migrate,
} from '@meridian/persistence';
import { freshDatabases } from './broker';

/** Fresh, migrated control and region databases, opened the way a broker opens them. */
export async function openStores<R extends string>(prefix: string, regions: R[]) {
  const dbs = await freshDatabases(prefix, regions);
  const control = new ControlDatabase(createControlDataSource({ url: dbs.control.url }));
  const region = {} as Record<R, RegionDatabase<R>>;
  for (const r of regions)
    region[r] = new RegionDatabase(r, createRegionDataSource({ url: dbs.region[r]!.url }));
  const all = [control, ...Object.values<RegionDatabase<R>>(region)];
  await Promise.all(all.map((d) => d.dataSource.initialize()));
  await Promise.all(all.map((d) => migrate(d.dataSource)));
  for (const r of regions) await claimRegionDatabase(region[r].dataSource, r);
  return {
    dbs,
    control,
    region,
    async close() {
      await Promise.allSettled(all.map((d) => d.dataSource.destroy()));
      await dbs.drop();
    },
  };
}
