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

/**
 * Client metadata from the control plane. oidc-provider asks for it on every token request, so
 * it is cached for a few seconds; an admin change made through this process is seen at once,
 * one made through another replica within `ttlMs`.
 */
export class ControlClientAdapter implements Adapter {
  private readonly cache = new Map<string, { at: number; value: AdapterPayload | undefined }>();
  /** oidc-provider Client instances, per provider instance (keys rotate → new provider). */
  private readonly instances = new WeakMap<
    object,
    Map<string, { at: number; generation: number; client: unknown }>
  >();
  private generation = 0;

  constructor(
    private readonly db: ControlDatabase,
    private readonly ttlMs = 5_000,
    private readonly maxEntries = 10_000,
  ) {}

  async find(id: string): Promise<AdapterPayload | undefined> {
    const hit = this.cache.get(id);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.value;
    const rows: { metadata: AdapterPayload }[] = await this.db.query(
      'select metadata from oidc_client where client_id = $1',
      [id],
    );
    const value = rows[0]?.metadata;
    if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(id, { at: Date.now(), value });
    return value;
  }

  invalidate(id?: string): void {
    if (id === undefined) this.cache.clear();
    else this.cache.delete(id);
    this.generation++;
  }

  /**
   * The provider's Client instance for `id`, kept as long as the metadata is. oidc-provider
   * would otherwise stringify and hash the metadata on every token request to find its
   * cached instance.
   */
  async clientInstance<T>(
    owner: object,
    id: string,
    load: (id: string) => Promise<T | undefined>,
  ): Promise<T | undefined> {
    let byId = this.instances.get(owner);
    if (!byId) this.instances.set(owner, (byId = new Map()));
    const hit = byId.get(id);
    if (hit && hit.generation === this.generation && Date.now() - hit.at < this.ttlMs) return hit.client as T;
    const generation = this.generation;
    const client = await load(id);
    if (client === undefined) byId.delete(id);
    else {
      if (byId.size >= this.maxEntries) byId.delete(byId.keys().next().value as string);
      byId.set(id, { at: Date.now(), generation, client });
    }
    return client;
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
