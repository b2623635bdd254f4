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
          `insert into federation_secret (federation_id, region, client_id, sealed, kek_id) values ($1, $2, $3, $4, $5)
           on conflict (federation_id, region) do update
             set client_id = excluded.client_id, sealed = excluded.sealed, kek_id = excluded.kek_id, updated_at = now()`,
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
    const [row] = await this.db.query<{ sealed: Buffer | null }>(
      'select sealed from federation_secret where federation_id = $1 and region = $2',
      [id, this.region],
    );
    if (!row?.sealed) return undefined;
    const sealed = row.sealed;
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
