/**
 * The region database as the shared store of every replica's limits, lockouts and detector
 * counters (region-0004-security.ts). Each method is one round trip; the arithmetic runs in
 * PostgreSQL on its own clock.
 */
import type { RegionDatabase } from '@meridian/persistence';

export interface TakeRequest {
  key: string;
  /** Milliseconds one unit occupies: period / limit. */
  emissionMs: number;
  periodMs: number;
  /** Units wanted; what fits is granted (at least one, or none). */
  want: number;
}

export interface TakeResult {
  granted: number;
  /** When nothing was granted: how long until one unit fits. */
  retryAfterMs: number;
}

export interface LockResult {
  lockedUntil: Date;
  strikes: number;
  seconds: number;
  /** False when the key was already locked out (nothing changed). */
  fresh: boolean;
}

/** node-postgres' pool under TypeORM's driver: the limiter's one hot query skips TypeORM's wrapper. */
interface PgPool {
  query(q: { name: string; text: string; values: unknown[] }): Promise<{ rows: unknown[] }>;
}

const TAKE_SQL =
  'select idx, granted, retry_after_ms from meridian_rate_take($1::text[], $2::float8[], $3::float8[], $4::int[])';

export class SecurityStore {
  private readonly pool: PgPool | undefined;

  constructor(private readonly db: RegionDatabase) {
    // TypeORM's query() costs about as much CPU again as the query itself; on the token endpoint
    // that matters. A named (prepared) statement on the same pool saves parsing and planning too.
    const master = (db.dataSource.driver as unknown as { master?: PgPool }).master;
    this.pool = typeof master?.query === 'function' ? master : undefined;
  }

  get region(): string {
    return this.db.region;
  }

  async take(requests: readonly TakeRequest[]): Promise<TakeResult[]> {
    const values = [
      requests.map((r) => r.key),
      requests.map((r) => r.emissionMs),
      requests.map((r) => r.periodMs),
      requests.map((r) => r.want),
    ];
    type Row = { idx: number; granted: number; retry_after_ms: number };
    const rows = this.pool
      ? ((await this.pool.query({ name: 'meridian_rate_take', text: TAKE_SQL, values })).rows as Row[])
      : await this.db.query<Row>(TAKE_SQL, values);
    const out: TakeResult[] = requests.map(() => ({ granted: 0, retryAfterMs: 1000 }));
    for (const r of rows) out[r.idx - 1] = { granted: r.granted, retryAfterMs: Number(r.retry_after_ms) };
    return out;
  }

  /** Adds events to a detector's key; `fire` is true for exactly one call when the threshold is crossed. */
  async count(
    detector: string,
    key: string,
    windowSeconds: number,
    amount: number,
    threshold: number,
  ): Promise<{ estimate: number; fire: boolean }> {
    const [row] = await this.db.query<{ estimate: number; fire: boolean }>(
      'select estimate, fire from meridian_security_count($1, $2, $3, $4, $5)',
      [detector, key, windowSeconds, amount, threshold],
    );
    return { estimate: Number(row?.estimate ?? 0), fire: row?.fire === true };
  }

  async lock(key: string, baseSeconds: number, maxSeconds: number): Promise<LockResult> {
    const [row] = await this.db.query<{
      locked_until: Date;
      strikes: number;
      seconds: number;
      fresh: boolean;
    }>('select locked_until, strikes, seconds, fresh from meridian_security_lock($1, $2, $3)', [
      key,
      baseSeconds,
      maxSeconds,
    ]);
    return {
      lockedUntil: new Date(row!.locked_until),
      strikes: row!.strikes,
      seconds: row!.seconds,
      fresh: row!.fresh,
    };
  }

  /** Lockouts in force: key → end (ms since the epoch, this process's clock). */
  async activeLockouts(): Promise<Map<string, number>> {
    const rows = await this.db.query<{ key: string; remaining_ms: number }>(
      `select key, extract(epoch from locked_until - clock_timestamp()) * 1000 as remaining_ms
         from security_lockout where locked_until > clock_timestamp()`,
    );
    const now = Date.now();
    return new Map(rows.map((r) => [r.key, now + Number(r.remaining_ms)]));
  }

  /** Forgets state nobody needs any more: full buckets, old windows, long-ended lockouts. */
  async sweep(maxLockoutSeconds: number): Promise<void> {
    await this.db.query(
      `delete from rate_limit where tat < extract(epoch from clock_timestamp()) * 1000 - 1000`,
    );
    await this.db.query(
      // Windows are at most a day long: two days later no estimate reads them.
      `delete from security_counter where touched_at < clock_timestamp() - interval '3 days'`,
    );
    await this.db.query(
      `delete from security_lockout where locked_until < clock_timestamp() - make_interval(secs => $1::int * 2)`,
      [maxLockoutSeconds],
    );
  }

  /**
   * Records a home login of `sub` in `region` and answers the previous one (region, seconds
   * since). Only for subjects of this region (the row references the subject).
   */
  async traceLogin(sub: string, region: string): Promise<{ region: string; secondsAgo: number } | undefined> {
    const rows = await this.db.query<{ region: string; seconds_ago: number }>(
      `with prev as (select region, extract(epoch from clock_timestamp() - at) as seconds_ago
                       from subject_login_trace where sub = $1 for update),
            upsert as (insert into subject_login_trace (sub, region, at) values ($1, $2, clock_timestamp())
                       on conflict (sub) do update set region = excluded.region, at = excluded.at)
       select region, seconds_ago from prev`,
      [sub, region],
    );
    const row = rows[0];
    return row ? { region: row.region, secondsAgo: Number(row.seconds_ago) } : undefined;
  }

  /** The home region recorded for a subject known here, if any. */
  async homeOf(sub: string): Promise<string | undefined> {
    const [row] = await this.db.query<{ region: string | null }>(
      `select residency->>'region' as region from subject where sub = $1`,
      [sub],
    );
    return row?.region ?? undefined;
  }
}
