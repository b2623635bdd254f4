import type { ControlDatabase } from '@meridian/persistence';
import { kekId, open, seal } from '@meridian/keys';
import type { FederationConfig } from './federation.types';

interface FederationRow {
  id: string;
  config: Omit<FederationConfig, 'id' | 'enabled'>;
  enabled: boolean;
  updated_at: Date;
}

/**
 * Federations in the control plane. Upstream client secrets are sealed under the KEK of the
 * region that received them and stored per region: regions do not share KEKs, and a region
 * only ever opens its own copy.
 */
export class FederationRepository {
  private cache: { at: number; list: (FederationConfig & { version: string })[] } | undefined;

  constructor(
    private readonly db: ControlDatabase,
    private readonly region: string,
    private readonly kek: Buffer,
    private readonly kekPrevious?: Buffer,
    private readonly ttlMs = 5_000,
  ) {}

  async list(): Promise<(FederationConfig & { version: string })[]> {
    if (this.cache && Date.now() - this.cache.at < this.ttlMs) return this.cache.list;
    const rows = await this.db.query<FederationRow>(
      'select id, config, enabled, updated_at from federation order by id',
    );
    const list = rows.map((r) => ({
      ...r.config,
      id: r.id,
      enabled: r.enabled,
      version: r.updated_at.toISOString(),
    }));
    this.cache = { at: Date.now(), list };
    return list;
  }

  async get(id: string): Promise<(FederationConfig & { version: string }) | undefined> {
    return (await this.list()).find((f) => f.id === id);
  }

  async put(fed: FederationConfig, secret: string | undefined): Promise<{ created: boolean }> {
    const { id, enabled, ...config } = fed;
    const created = await this.db.dataSource.transaction(async (tx) => {
      const rows: { created: boolean }[] = await tx.query(
        `insert into federation (id, config, enabled) values ($1, $2, $3)
         on conflict (id) do update set config = excluded.config, enabled = excluded.enabled, updated_at = now()
         returning (xmax = 0) as created`,
        [id, config, enabled],
      );
      if (secret !== undefined) {
        await tx.query(
          // A secret PUT outright replaces both: no overlap (POST .../secret rotates with one).
          `insert into federation_secret (federation_id, region, client_id, sealed, kek_id, current_set_at) values ($1, $2, $3, $4, $5, now())
           on conflict (federation_id, region) do update
             set client_id = excluded.client_id, sealed = excluded.sealed, kek_id = excluded.kek_id, updated_at = now(),
                 current_set_at = now(), current_accepted_at = null, previous_sealed = null, previous_kek_id = null,
                 previous_expires_at = null, previous_accepted_at = null`,
          [
            id,
            this.region,
            fed.clientId,
            seal(this.kek, Buffer.from(secret, 'utf8'), this.context(id)),
            kekId(this.kek),
          ],
        );
      } else {
        await tx.query(
          `insert into federation_secret (federation_id, region, client_id) values ($1, $2, $3)
           on conflict (federation_id, region) do update set client_id = excluded.client_id, updated_at = now()`,
          [id, this.region, fed.clientId],
        );
      }
      return rows[0]!.created;
    });
    this.cache = undefined;
    return { created };
  }

  async delete(id: string): Promise<boolean> {
    const rows = await this.db.query('delete from federation where id = $1 returning id', [id]);
    this.cache = undefined;
    return rows.length > 0;
  }

  async hasSecret(id: string): Promise<boolean> {
    const rows = await this.db.query(
      'select 1 from federation_secret where federation_id = $1 and region = $2 and sealed is not null',
      [id, this.region],
    );
    return rows.length > 0;
  }

  /** The client id this region uses at the upstream (each region registers its own redirect URI). */
  async clientId(id: string): Promise<string | undefined> {
    const [row] = await this.db.query<{ client_id: string }>(
      'select client_id from federation_secret where federation_id = $1 and region = $2',
      [id, this.region],
    );
    return row?.client_id;
  }

  /** This region's copy of the upstream client secret, or undefined when none was configured here. */
  async secret(id: string): Promise<string | undefined> {
    return (await this.secrets(id)).current;
  }

  /**
   * This region's current upstream secret and, during a rotation's overlap, the one before it
   * (only while it has not expired).
   */
  async secrets(id: string): Promise<{ current?: string; previous?: string }> {
    const [row] = await this.db.query<{ sealed: Buffer | null; previous_sealed: Buffer | null }>(
      `select sealed, case when previous_expires_at > now() then previous_sealed end as previous_sealed
         from federation_secret where federation_id = $1 and region = $2`,
      [id, this.region],
    );
    return {
      current: row?.sealed ? this.unseal(id, row.sealed) : undefined,
      previous: row?.previous_sealed ? this.unseal(id, row.previous_sealed) : undefined,
    };
  }

  /**
   * The upstream issued a new secret: it becomes current, and the one it replaces is kept for
   * `overlapSeconds` (tried when the upstream refuses the new one). At most two at once: during
   * an overlap a further rotation is refused (promote first).
   */
  async rotateSecret(
    id: string,
    secret: string,
    overlapSeconds: number,
  ): Promise<
    | { ok: true; previousExpiresAt: Date | null }
    | { ok: false; reason: 'no-secret' }
    | { ok: false; reason: 'overlap'; previousExpiresAt: Date }
  > {
    return this.db.dataSource.transaction(async (tx) => {
      const [row]: { has_secret: boolean; previous_expires_at: Date | null }[] = await tx.query(
        `select sealed is not null as has_secret,
                case when previous_expires_at > now() then previous_expires_at end as previous_expires_at
           from federation_secret where federation_id = $1 and region = $2 for update`,
        [id, this.region],
      );
      if (!row?.has_secret) return { ok: false, reason: 'no-secret' } as const;
      if (row.previous_expires_at)
        return { ok: false, reason: 'overlap', previousExpiresAt: row.previous_expires_at } as const;
      const [updated]: { previous_expires_at: Date | null }[] = await tx.query(
        `update federation_secret
            set previous_sealed = case when $5::int > 0 then sealed end,
                previous_kek_id = case when $5::int > 0 then kek_id end,
                previous_expires_at = case when $5::int > 0 then now() + make_interval(secs => $5::int) end,
                previous_accepted_at = null,
                sealed = $3, kek_id = $4, current_set_at = now(), current_accepted_at = null, updated_at = now()
          where federation_id = $1 and region = $2
          returning previous_expires_at`,
        [
          id,
          this.region,
          seal(this.kek, Buffer.from(secret, 'utf8'), this.context(id)),
          kekId(this.kek),
          overlapSeconds,
        ],
      );
      return { ok: true, previousExpiresAt: updated?.previous_expires_at ?? null } as const;
    });
  }

  /** Ends a rotation's overlap: only the current secret is used from now on. */
  async promoteSecret(id: string): Promise<boolean> {
    const rows = await this.db.query(
      `update federation_secret
          set previous_sealed = null, previous_kek_id = null, previous_expires_at = null,
              previous_accepted_at = null, updated_at = now()
        where federation_id = $1 and region = $2 and previous_sealed is not null
        returning federation_id`,
      [id, this.region],
    );
    return rows.length > 0;
  }

  /** Records that the upstream accepted this secret (at most once a minute per secret). */
  async markSecretAccepted(id: string, which: 'current' | 'previous'): Promise<void> {
    const column = which === 'current' ? 'current_accepted_at' : 'previous_accepted_at';
    await this.db.query(
      `update federation_secret set ${column} = now()
        where federation_id = $1 and region = $2 and (${column} is null or ${column} < now() - interval '1 minute')`,
      [id, this.region],
    );
  }

  /** What an operator needs to decide on a rotation: when each secret was set and last accepted. */
  async secretStatus(id: string): Promise<{
    current: { setAt: Date | null; lastAcceptedAt: Date | null } | null;
    previous: { expiresAt: Date; lastAcceptedAt: Date | null } | null;
  }> {
    const [row] = await this.db.query<{
      has_secret: boolean;
      current_set_at: Date | null;
      current_accepted_at: Date | null;
      previous_expires_at: Date | null;
      previous_accepted_at: Date | null;
    }>(
      `select sealed is not null as has_secret, current_set_at, current_accepted_at,
              case when previous_sealed is not null and previous_expires_at > now() then previous_expires_at end as previous_expires_at,
              previous_accepted_at
         from federation_secret where federation_id = $1 and region = $2`,
      [id, this.region],
    );
    return {
      current: row?.has_secret
        ? { setAt: row.current_set_at, lastAcceptedAt: row.current_accepted_at }
        : null,
      previous: row?.previous_expires_at
        ? { expiresAt: row.previous_expires_at, lastAcceptedAt: row.previous_accepted_at }
        : null,
    };
  }

  private unseal(id: string, sealed: Buffer): string {
    for (const kek of [this.kek, this.kekPrevious]) {
      if (!kek) continue;
      try {
        return open(kek, sealed, this.context(id)).toString('utf8');
      } catch {
        // try the previous KEK
      }
    }
    throw new Error(`the client secret of federation ${id} is sealed under another KEK`);
  }

  invalidate(): void {
    this.cache = undefined;
  }

  private context(id: string): string {
    return `federation-secret:${this.region}:${id}`;
  }
}
