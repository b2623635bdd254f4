/**
 * oidc-provider's storage adapter. Sessions, grants, codes and refresh tokens live in the
 * region's database; client metadata comes from the control plane (read-only here: clients are
 * managed through the admin API).
 */
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { ControlDatabase, RegionDatabase } from '@meridian/persistence';

interface PayloadRow {
  payload: AdapterPayload;
  consumed_at: Date | null;
}

/** Models whose `consume` must succeed at most once (RFC 6749 §4.1.2, RFC 9700 §4.14.2). */
const SINGLE_USE = new Set([
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

export class RegionPayloadAdapter implements Adapter {
  constructor(
    private readonly model: string,
    private readonly db: RegionDatabase,
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const grantId = this.model === 'Grant' ? id : (payload.grantId ?? null);
    await this.db.query(
      `insert into oidc_payload (model, id, payload, grant_id, uid, user_code, expires_at)
       values ($1, $2, $3, $4, $5, $6, case when $7::int is null then null else now() + make_interval(secs => $7::int) end)
       on conflict (model, id) do update
         set payload = excluded.payload, grant_id = excluded.grant_id, uid = excluded.uid,
             user_code = excluded.user_code, expires_at = excluded.expires_at`,
      [this.model, id, payload, grantId, payload.uid ?? null, payload.userCode ?? null, expiresIn ?? null],
    );
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.one(`model = $1 and id = $2`, [this.model, id]);
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.one(`model = $1 and uid = $2`, [this.model, uid]);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.one(`model = $1 and user_code = $2`, [this.model, userCode]);
  }

  /**
   * Atomic: of two parallel redemptions exactly one marks the row consumed. The loser revokes
   * the whole grant (RFC 6749 §4.1.2: a code used twice revokes what it issued; RFC 9700
   * §4.14.2: refresh-token reuse revokes the family) and fails with invalid_grant.
   */
  async consume(id: string): Promise<void> {
    const rows: { grant_id: string | null }[] = await this.db.query(
      `update oidc_payload set consumed_at = now()
        where model = $1 and id = $2 and consumed_at is null
        returning grant_id`,
      [this.model, id],
    );
    if (rows.length === 1 || !SINGLE_USE.has(this.model)) return;
    const [row]: { grant_id: string | null }[] = await this.db.query(
      `select grant_id from oidc_payload where model = $1 and id = $2`,
      [this.model, id],
    );
    if (row?.grant_id) await this.revokeByGrantId(row.grant_id);
    throw new errors.InvalidGrant(
      `${this.model === 'RefreshToken' ? 'refresh token' : 'grant'} already used`,
    );
  }

  async destroy(id: string): Promise<void> {
    await this.db.query(`delete from oidc_payload where model = $1 and id = $2`, [this.model, id]);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    // One grant, every model: codes, refresh tokens, opaque access tokens and the grant itself.
    await this.db.query(`delete from oidc_payload where grant_id = $1`, [grantId]);
  }

  private async one(where: string, params: unknown[]): Promise<AdapterPayload | undefined> {
    const rows: PayloadRow[] = await this.db.query(
      `select payload, consumed_at from oidc_payload
        where ${where} and (expires_at is null or expires_at > now())`,
      params,
    );
    const row = rows[0];
    if (!row) return undefined;
    return row.consumed_at
      ? { ...row.payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) }
      : row.payload;
  }
}

/** How the client cache behaves; the defaults suit a region with up to ~20,000 active clients. */
export interface ClientCacheOptions {
  /**
   * How long an entry is trusted without the change feed (the feed has not answered for this
   * long, e.g. the control database is down): the bound on serving a client the control plane
   * no longer agrees with.
   */
  ttlMs?: number;
  /** Clients kept in memory, in order of loading; the oldest goes first. */
  maxEntries?: number;
  /** Unknown client ids remembered (kept apart so a flood of made-up ids evicts no real client). */
  maxMisses?: number;
  /** How long a change-feed gap (a sequence number not yet committed) is waited for. */
  gapWindowMs?: number;
}

interface CacheEntry {
  at: number;
  value: AdapterPayload | undefined;
}

/**
 * Client metadata from the control plane. oidc-provider asks for it on every token request.
 *
 * Entries stay cached while the change feed (`oidc_client_change`, filled by a trigger, polled by
 * {@link ControlClientAdapter.sync} every second) is healthy: a write through any replica, in any
 * region or by hand in SQL evicts the entry within a poll, and a client that does not change is
 * never reloaded, however many clients there are. A change made through this process is seen at
 * once. When the feed has not answered for `ttlMs`, every entry falls back to a `ttlMs` lifetime,
 * so a control plane that is down is noticed within `ttlMs`, as before.
 */
export class ControlClientAdapter implements Adapter {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly misses = new Map<string, CacheEntry>();
  private readonly loading = new Map<string, Promise<AdapterPayload | undefined>>();
  /** oidc-provider Client instances, per provider instance (keys rotate → new provider). */
  private readonly instances = new WeakMap<object, Map<string, { source: CacheEntry; client: unknown }>>();
  /** Bumped by every eviction: a load that raced one is used by its caller but not cached. */
  private generation = 0;
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly maxMisses: number;
  private readonly gapWindowMs: number;
  /** Change feed position: the highest sequence seen, and lower ones not yet committed. */
  private maxSeq: bigint | undefined;
  private readonly gaps = new Map<string, number>();
  /** When the last successful poll started (ms); 0 = never. */
  private feedOkAt = 0;
  private polls = 0;

  constructor(
    private readonly db: ControlDatabase,
    options: ClientCacheOptions = {},
  ) {
    this.ttlMs = options.ttlMs ?? 5_000;
    this.maxEntries = options.maxEntries ?? 20_000;
    this.maxMisses = options.maxMisses ?? 10_000;
    this.gapWindowMs = options.gapWindowMs ?? 60_000;
  }

  /** Cached clients (for metrics and tests). */
  get size(): number {
    return this.cache.size;
  }

  /** Whether the change feed answered within `ttlMs`, i.e. entries need no lifetime of their own. */
  feedHealthy(now = Date.now()): boolean {
    return this.feedOkAt > 0 && now - this.feedOkAt < this.ttlMs;
  }

  private fresh(entry: CacheEntry, now: number): boolean {
    return this.feedHealthy(now) || now - entry.at < this.ttlMs;
  }

  private current(id: string, now = Date.now()): CacheEntry | undefined {
    const entry = this.cache.get(id) ?? this.misses.get(id);
    return entry && this.fresh(entry, now) ? entry : undefined;
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const hit = this.current(id);
    if (hit) return hit.value;
    return (await this.load(id)).value;
  }

  /** One query per id at a time: a cold cache under load asks the database once per client. */
  private async load(id: string): Promise<CacheEntry> {
    let pending = this.loading.get(id);
    if (!pending) {
      const generation = this.generation;
      pending = this.db
        .query<{ metadata: AdapterPayload }>('select metadata from oidc_client where client_id = $1', [id])
        .then((rows) => rows[0]?.metadata)
        .finally(() => this.loading.delete(id));
      this.loading.set(id, pending);
      const value = await pending;
      const entry = { at: Date.now(), value };
      // Evicted while loading: the row read may predate the change, so it is not kept.
      if (generation === this.generation) this.remember(id, entry);
      return entry;
    }
    const value = await pending;
    return this.cache.get(id) ?? this.misses.get(id) ?? { at: Date.now(), value };
  }

  private remember(id: string, entry: CacheEntry): void {
    const map = entry.value === undefined ? this.misses : this.cache;
    const max = entry.value === undefined ? this.maxMisses : this.maxEntries;
    map.delete(id);
    if (map.size >= max) map.delete(map.keys().next().value as string);
    map.set(id, entry);
  }

  /** Evicts one client (or all): its next request reads the control plane again. */
  invalidate(id?: string): void {
    this.generation++;
    if (id === undefined) {
      this.cache.clear();
      this.misses.clear();
    } else {
      this.cache.delete(id);
      this.misses.delete(id);
    }
  }

  /**
   * The provider's Client instance for `id`, kept as long as the metadata entry it was built
   * from. oidc-provider would otherwise stringify and hash the metadata on every token request
   * to find its cached instance.
   */
  async clientInstance<T>(
    owner: object,
    id: string,
    load: (id: string) => Promise<T | undefined>,
  ): Promise<T | undefined> {
    let byId = this.instances.get(owner);
    if (!byId) this.instances.set(owner, (byId = new Map()));
    const source = this.current(id) ?? (await this.load(id));
    const hit = byId.get(id);
    if (hit && hit.source === source) return hit.client as T;
    const client = await load(id);
    if (client === undefined) byId.delete(id);
    // Kept only while `source` is still the entry in the cache.
    else if (this.cache.get(id) === source) {
      byId.delete(id);
      if (byId.size >= this.maxEntries) byId.delete(byId.keys().next().value as string);
      byId.set(id, { source, client });
    }
    return client;
  }

  /**
   * One poll of the change feed: evicts every client written since the last poll. Sequence
   * numbers are taken at insert and committed in any order, so a number skipped over is asked
   * for again on each poll until it shows up or `gapWindowMs` passes (a rolled-back write).
   * Throws when the control database does not answer; entries then age out after `ttlMs`.
   */
  async sync(): Promise<void> {
    const started = Date.now();
    if (this.maxSeq === undefined) {
      const [row] = await this.db.query<{ max: string }>(
        'select coalesce(max(seq), 0)::text as max from oidc_client_change',
      );
      this.maxSeq = BigInt(row!.max);
      // Whatever was cached before the feed had a position may have changed unseen.
      this.invalidate();
      this.feedOkAt = started;
      return;
    }
    const wasHealthy = this.feedHealthy(started);
    const rows = await this.db.query<{ seq: string; client_id: string }>(
      `select seq::text as seq, client_id from oidc_client_change
        where seq > $1 or seq = any($2::bigint[]) order by seq`,
      [this.maxSeq.toString(), [...this.gaps.keys()]],
    );
    let evicted = false;
    for (const { seq, client_id } of rows) {
      const n = BigInt(seq);
      if (this.gaps.delete(seq)) {
        // A late commit below the position.
      } else if (n - this.maxSeq > 10_000n) {
        // A jump this large is not a handful of open transactions: start from a clean cache.
        this.maxSeq = n;
        this.gaps.clear();
        this.invalidate();
      } else if (n > this.maxSeq) {
        for (let missing = this.maxSeq + 1n; missing < n; missing++)
          this.gaps.set(missing.toString(), started);
        this.maxSeq = n;
      }
      this.cache.delete(client_id);
      this.misses.delete(client_id);
      evicted = true;
    }
    if (evicted) this.generation++;
    for (const [seq, since] of this.gaps) if (started - since > this.gapWindowMs) this.gaps.delete(seq);
    if (this.gaps.size > 10_000) {
      // Far more gaps than writes ever leave: forget them and start from a clean cache.
      this.gaps.clear();
      this.invalidate();
    }
    // Back after the feed was silent for longer than ttlMs (an outage, a partition): what is
    // cached predates it, and changes from then may already be cleaned out of the feed.
    if (!wasHealthy) this.invalidate();
    this.feedOkAt = started;
    if (++this.polls % 600 === 0) {
      await this.db.query("delete from oidc_client_change where changed_at < now() - interval '1 hour'");
    }
  }

  async upsert(): Promise<void> {
    throw new Error('clients are managed through the admin API');
  }
  async findByUid(): Promise<undefined> {
    return undefined;
  }
  async findByUserCode(): Promise<undefined> {
    return undefined;
  }
  async consume(): Promise<void> {}
  async destroy(): Promise<void> {
    throw new Error('clients are managed through the admin API');
  }
  async revokeByGrantId(): Promise<void> {}
}
