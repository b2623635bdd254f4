/**
 * Whether the broker's databases answer, known without asking them on every request. A route
 * that needs a database which is down is refused at once (503) instead of waiting for a
 * connection timeout, and is served again by the same process as soon as a probe succeeds:
 * recovery needs no restart.
 */
import { Pool } from 'pg';

/** The two databases of a broker: the control plane and its region's data plane. */
export type DatabaseName = 'control' | 'region';

// SQLSTATE classes and codes that mean "the server cannot serve you now", not "your query is
// wrong": 08 connection exception, 53300 too many connections, 57P01-57P03 shutdown/startup,
// 57014 a statement cancelled by statement_timeout (the database is too slow to answer), 25006
// a write reaching a read-only server (a standby during a failover).
const UNAVAILABLE_SQLSTATES = new Set(['53300', '57P01', '57P02', '57P03', '57014', '25006']);
const UNAVAILABLE_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'EAI_AGAIN',
]);
// node-postgres and pg-pool say it in prose only.
const UNAVAILABLE_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection is not established|Query read timeout|is not currently accepting connections/i;

/**
 * Is `err` the database being unreachable or shutting down (as opposed to a query it refused)?
 * Looks through TypeORM's `QueryFailedError.driverError` and `cause` chains.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    // An HTTP call that failed (undici) is not the database, whatever its socket error.
    if (e instanceof TypeError && message === 'fetch failed') return false;
    if (typeof code === 'string') {
      if (UNAVAILABLE_ERRNOS.has(code) || UNAVAILABLE_SQLSTATES.has(code) || code.startsWith('08'))
        return true;
    }
    if (typeof message === 'string' && UNAVAILABLE_MESSAGES.test(message)) return true;
    const next = e as { driverError?: unknown; cause?: unknown };
    e = next.driverError ?? next.cause;
  }
  return false;
}

export interface AvailabilityOptions {
  /** Probe period while a database answers (an outage that no request noticed is seen this soon). */
  upIntervalMs?: number;
  /** Probe period while it is down (how soon a recovery is seen). */
  downIntervalMs?: number;
  /** A probe that has not answered by then counts as down (a database that hangs, not refuses). */
  probeTimeoutMs?: number;
  onChange?: (database: DatabaseName, available: boolean, reason?: string) => void;
}

interface Watched {
  probe: () => Promise<unknown>;
  available: boolean;
  reason?: string;
  since: number;
  running?: Promise<boolean>;
  timer?: NodeJS.Timeout;
}

export class DatabaseAvailability {
  private readonly watched = new Map<DatabaseName, Watched>();
  private readonly upIntervalMs: number;
  private readonly downIntervalMs: number;
  private readonly probeTimeoutMs: number;
  private stopped = true;

  constructor(
    probes: Record<DatabaseName, () => Promise<unknown>>,
    private readonly opts: AvailabilityOptions = {},
  ) {
    this.upIntervalMs = opts.upIntervalMs ?? 1_000;
    this.downIntervalMs = opts.downIntervalMs ?? 250;
    this.probeTimeoutMs = opts.probeTimeoutMs ?? 2_000;
    for (const [name, probe] of Object.entries(probes) as [DatabaseName, () => Promise<unknown>][])
      this.watched.set(name, { probe, available: true, since: Date.now() });
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    for (const name of this.watched.keys()) this.schedule(name);
  }

  stop(): void {
    this.stopped = true;
    for (const w of this.watched.values()) clearTimeout(w.timer);
  }

  /** The databases known to be down now; empty when all answered their last probe. */
  down(): DatabaseName[] {
    const out: DatabaseName[] = [];
    for (const [name, w] of this.watched) if (!w.available) out.push(name);
    return out;
  }

  status(name: DatabaseName): { available: boolean; reason?: string; since: number } {
    const w = this.watched.get(name)!;
    return { available: w.available, reason: w.reason, since: w.since };
  }

  /**
   * A request failed as if a database were unreachable: probe every database now (one probe per
   * database at a time), so the next requests are refused without waiting for the schedule.
   */
  suspect(): Promise<void> {
    return Promise.all([...this.watched.keys()].map((n) => this.probe(n))).then(() => undefined);
  }

  /** Probes one database now; concurrent callers share the probe in flight. */
  probe(name: DatabaseName): Promise<boolean> {
    const w = this.watched.get(name)!;
    w.running ??= this.runProbe(name, w).finally(() => (w.running = undefined));
    return w.running;
  }

  private async runProbe(name: DatabaseName, w: Watched): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    let reason: string | undefined;
    try {
      await Promise.race([
        w.probe(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('no answer in time')), this.probeTimeoutMs);
          timer.unref();
        }),
      ]);
    } catch (err) {
      reason = describeFailure(err);
    } finally {
      clearTimeout(timer);
    }
    const available = reason === undefined;
    if (available !== w.available) {
      w.available = available;
      w.since = Date.now();
      w.reason = reason;
      this.opts.onChange?.(name, available, reason);
      // The schedule follows the state: probe often while down.
      if (!this.stopped) this.schedule(name);
    }
    return available;
  }

  private schedule(name: DatabaseName): void {
    const w = this.watched.get(name)!;
    clearTimeout(w.timer);
    if (this.stopped) return;
    w.timer = setTimeout(
      () => {
        void this.probe(name).finally(() => this.schedule(name));
      },
      w.available ? this.upIntervalMs : this.downIntervalMs,
    );
    w.timer.unref();
  }
}

function describeFailure(err: unknown): string {
  const e = err as { code?: string; message?: string };
  if (e?.code === 'ECONNREFUSED') return 'connection refused';
  if (e?.message === 'no answer in time') return 'no answer in time';
  if (typeof e?.message === 'string' && /not currently accepting connections/.test(e.message))
    return 'not accepting connections';
  if (typeof e?.code === 'string' && /^(57P0[123]|53300)$/.test(e.code)) return `unavailable (${e.code})`;
  return isDatabaseUnavailable(err) ? 'connection lost' : 'probe failed';
}

export interface DedicatedProbe {
  probe: () => Promise<unknown>;
  close: () => Promise<void>;
}

/**
 * A probe on its own connection (a pool of one), not the request pool: under saturation the
 * request pool's queue would delay a probe past its timeout and a busy database would be taken
 * for a down one. A connection broken by an outage is dropped and the next probe reconnects.
 */
export function dedicatedProbe(url: string, applicationName: string, timeoutMs = 2_000): DedicatedProbe {
  const pool = new Pool({
    connectionString: url,
    max: 1,
    application_name: applicationName,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    idleTimeoutMillis: 0,
    allowExitOnIdle: true,
  });
  // An idle probe connection killed by the server is not an error of anybody's request.
  pool.on('error', () => undefined);
  return {
    probe: () => pool.query('select 1'),
    close: () => pool.end().catch(() => undefined),
  };
}
