import type { ControlDatabase } from '@meridian/persistence';
import type { ResidencyPolicy, ResidencyPolicyDocumentNormalised } from '@meridian/residency';

interface PolicyRow {
  id: string;
  version: number;
  document: ResidencyPolicyDocumentNormalised;
  created_by: string;
  created_at: Date;
}

/** Residency policies in the control plane: every PUT is a new version, history kept. */
export class PolicyRepository {
  private cache: { at: number; current: ResidencyPolicy[] } | undefined;
  private readonly versions = new Map<string, ResidencyPolicy>();

  constructor(
    private readonly db: ControlDatabase,
    private readonly ttlMs = 5_000,
  ) {}

  /** The current version of every policy. */
  async current(): Promise<ResidencyPolicy[]> {
    if (this.cache && Date.now() - this.cache.at < this.ttlMs) return this.cache.current;
    const rows = await this.db.query<PolicyRow>(
      `select distinct on (id) id, version, document, created_by, created_at
         from residency_policy order by id, version desc`,
    );
    const current = rows.map((r) => ({ ...r.document, id: r.id, version: r.version }));
    this.cache = { at: Date.now(), current };
    return current;
  }

  async history(
    id: string,
  ): Promise<
    { version: number; createdBy: string; createdAt: Date; document: ResidencyPolicyDocumentNormalised }[]
  > {
    const rows = await this.db.query<PolicyRow>(
      'select id, version, document, created_by, created_at from residency_policy where id = $1 order by version desc',
      [id],
    );
    return rows.map((r) => ({
      version: r.version,
      createdBy: r.created_by,
      createdAt: r.created_at,
      document: r.document,
    }));
  }

  /** One exact version (tokens name `<id>@<version>`); versions never change, so cached forever. */
  async version(id: string, version: number): Promise<ResidencyPolicy | undefined> {
    const key = `${id}@${version}`;
    const hit = this.versions.get(key);
    if (hit) return hit;
    const [row] = await this.db.query<PolicyRow>(
      'select id, version, document from residency_policy where id = $1 and version = $2',
      [id, version],
    );
    if (!row) return undefined;
    const policy = { ...row.document, id: row.id, version: row.version };
    this.versions.set(key, policy);
    return policy;
  }

  async byRef(ref: string): Promise<ResidencyPolicy | undefined> {
    const at = ref.lastIndexOf('@');
    const version = Number(ref.slice(at + 1));
    if (at < 1 || !Number.isInteger(version)) return undefined;
    return this.version(ref.slice(0, at), version);
  }

  /**
   * Appends a version. `build` validates the document against the current versions of the other
   * policies and returns it normalised (or throws); the transaction-scoped advisory lock keeps
   * two concurrent PUTs from both passing that check.
   */
  async append(
    id: string,
    createdBy: string,
    build: (others: ResidencyPolicy[]) => ResidencyPolicyDocumentNormalised,
  ): Promise<ResidencyPolicy> {
    const policy = await this.db.dataSource.transaction(async (tx) => {
      await tx.query(`select pg_advisory_xact_lock(hashtext('meridian:residency-policies'))`);
      const rows: PolicyRow[] = await tx.query(
        `select distinct on (id) id, version, document from residency_policy order by id, version desc`,
      );
      const document = build(
        rows.filter((r) => r.id !== id).map((r) => ({ ...r.document, id: r.id, version: r.version })),
      );
      const [{ next }]: { next: number }[] = await tx.query(
        'select coalesce(max(version), 0) + 1 as next from residency_policy where id = $1',
        [id],
      );
      await tx.query(
        'insert into residency_policy (id, version, document, created_by) values ($1, $2, $3, $4)',
        [id, next, document, createdBy],
      );
      return { ...document, id, version: next };
    });
    this.cache = undefined;
    return policy;
  }

  invalidate(): void {
    this.cache = undefined;
  }
}
