import type { ControlDatabase } from '@meridian/persistence';
import { pseudonym } from './pseudonym';

/**
 * The pseudonymous subject locator in the control plane: HMAC(pepper, …) → home region and
 * nothing else. Keyed by the upstream identity (federation + upstream sub) and by `sub`.
 */
export class SubjectLocator {
  constructor(
    private readonly db: ControlDatabase,
    private readonly pepper: Buffer,
  ) {}

  linkKey(federationId: string, upstreamSub: string): string {
    return pseudonym(this.pepper, 'link', federationId, upstreamSub);
  }

  subKey(sub: string): string {
    return pseudonym(this.pepper, 'sub', sub);
  }

  async record(keys: string[], region: string): Promise<void> {
    for (const key of keys) {
      await this.db.query(
        `insert into subject_locator (key, region) values ($1, $2)
         on conflict (key) do update set region = excluded.region, updated_at = now()`,
        [key, region],
      );
    }
  }

  async regionOf(key: string): Promise<string | undefined> {
    const [row] = await this.db.query<{ region: string }>(
      'select region from subject_locator where key = $1',
      [key],
    );
    return row?.region;
  }

  async tombstone(sub: string, homeRegion: string): Promise<void> {
    await this.db.query(
      'insert into subject_tombstone (key, home_region) values ($1, $2) on conflict (key) do nothing',
      [this.subKey(sub), homeRegion],
    );
  }

  async isErased(sub: string): Promise<boolean> {
    const rows = await this.db.query('select 1 from subject_tombstone where key = $1', [this.subKey(sub)]);
    return rows.length > 0;
  }

  /** Which of `subs` were erased at their home region. */
  async erasedAmong(subs: string[]): Promise<string[]> {
    if (!subs.length) return [];
    const byKey = new Map(subs.map((s) => [this.subKey(s), s]));
    const rows = await this.db.query<{ key: string }>(
      'select key from subject_tombstone where key = any($1)',
      [[...byKey.keys()]],
    );
    return rows.map((r) => byKey.get(r.key)!);
  }

  async forget(keys: string[]): Promise<void> {
    if (keys.length) await this.db.query('delete from subject_locator where key = any($1)', [keys]);
  }
}
