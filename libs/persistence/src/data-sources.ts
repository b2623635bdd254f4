import { DataSource } from 'typeorm';
import { ControlInit1790000000001 } from './migrations/control-0001-init';
import { RegionInit1790000000001 } from './migrations/region-0001-init';
import { ControlFederation1790000000002 } from './migrations/control-0002-federation';
import { RegionSubjects1790000000002 } from './migrations/region-0002-subjects';
import { RegionAuditChain1790000000003 } from './migrations/region-0003-audit-chain';
import { RegionSecurity1790000000004 } from './migrations/region-0004-security';
import { ControlSecretRotation1790000000013 } from './migrations/control-0003-secret-rotation';
import { ControlClientChanges1790000000014 } from './migrations/control-0004-client-changes';

/** Migration classes are listed explicitly (TypeORM 1.x does not glob them in a bundle-safe way). */
export const CONTROL_MIGRATIONS = [
  ControlInit1790000000001,
  ControlFederation1790000000002,
  ControlSecretRotation1790000000013,
  ControlClientChanges1790000000014,
];
export const REGION_MIGRATIONS = [
  RegionInit1790000000001,
  RegionSubjects1790000000002,
  RegionAuditChain1790000000003,
  RegionSecurity1790000000004,
];

/**
 * The control plane: configuration replicated to every region. Holds nothing personal, so
 * its type carries no region.
 */
export class ControlDatabase {
  constructor(readonly dataSource: DataSource) {}

  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]> {
    return rowsOf<T>(this.dataSource.query(sql, params));
  }
}

/**
 * TypeORM answers UPDATE/DELETE with `[rows, affectedCount]` and SELECT/INSERT with the rows;
 * callers always get the rows (with RETURNING, that is what was changed).
 */
async function rowsOf<T>(result: Promise<unknown>): Promise<T[]> {
  const r = await result;
  if (Array.isArray(r) && r.length === 2 && Array.isArray(r[0]) && typeof r[1] === 'number')
    return r[0] as T[];
  return r as T[];
}

/**
 * One region's data plane. The region is part of the type, so a store that takes
 * `RegionDatabase<'eu'>` cannot be handed another region's database by mistake, and at run time
 * the database itself records which region it belongs to (checked at start).
 */
export class RegionDatabase<R extends string = string> {
  constructor(
    readonly region: R,
    readonly dataSource: DataSource,
  ) {}

  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]> {
    return rowsOf<T>(this.dataSource.query(sql, params));
  }
}

export interface DataSourceOptions {
  url: string;
  poolSize?: number;
  applicationName?: string;
}

function makeDataSource(opts: DataSourceOptions, migrations: (new () => object)[]): DataSource {
  return new DataSource({
    type: 'postgres',
    url: opts.url,
    migrations: migrations as never,
    migrationsTableName: 'meridian_migrations',
    logging: false,
    synchronize: false,
    // A database that does not answer fails the request (and readiness) instead of hanging it.
    connectTimeoutMS: 5_000,
    extra: {
      max: opts.poolSize ?? 10,
      application_name: opts.applicationName ?? 'meridian',
      statement_timeout: 10_000,
      // statement_timeout is the server's: a server that stops answering (frozen, partitioned)
      // never sends it. The client gives up a little later on its own, so no request hangs.
      query_timeout: 12_000,
      idle_in_transaction_session_timeout: 30_000,
    },
  });
}

export function createControlDataSource(opts: DataSourceOptions): DataSource {
  return makeDataSource(opts, CONTROL_MIGRATIONS);
}

export function createRegionDataSource(opts: DataSourceOptions): DataSource {
  return makeDataSource(opts, REGION_MIGRATIONS);
}

// Arbitrary but fixed: every Meridian process agrees on it, so replicas starting together take
// turns instead of racing the same CREATE TABLE.
const MIGRATION_LOCK_KEY = 0x4d6572696469616en; // "Meridian" in ASCII

/**
 * Runs pending migrations under a session-level PostgreSQL advisory lock, so several replicas
 * may start at once: the first migrates, the others wait and then find nothing to do.
 */
export async function migrate(dataSource: DataSource): Promise<string[]> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
    try {
      const done = await dataSource.runMigrations({ transaction: 'each' });
      return done.map((m) => m.name);
    } finally {
      await runner.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY.toString()]);
    }
  } finally {
    await runner.release();
  }
}

/**
 * Binds a region database to its region on first use and refuses a database that belongs to
 * another region (a us broker pointed at the eu database must not start).
 */
export async function claimRegionDatabase(dataSource: DataSource, region: string): Promise<void> {
  await dataSource.query(
    `insert into region_marker (region) values ($1) on conflict (singleton) do nothing`,
    [region],
  );
  const [row] = (await dataSource.query('select region from region_marker')) as { region: string }[];
  if (row?.region !== region) {
    throw new PersistenceError(
      'ERR_REGION_DATABASE_MISMATCH',
      `REGION_DATABASE_URL belongs to region ${row?.region ?? '?'}, not ${region}: refusing to start`,
    );
  }
}

export type PersistenceErrorCode = 'ERR_REGION_DATABASE_MISMATCH' | 'ERR_DATABASE_UNREACHABLE';

export class PersistenceError extends Error {
  constructor(
    readonly code: PersistenceErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PersistenceError';
  }
}
