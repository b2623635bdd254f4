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

  async forget(keys: string[]): Promise<void> {
    if (keys.length) await this.db.query('delete from subject_locator where key = any($1)', [keys]);
  }
}
