import type { RegionDatabase } from '@meridian/persistence';

export type AuditOutcome = 'success' | 'failure' | 'refused';

export interface AuditEntry {
  /** Who: a client id for admin calls, `system` for the broker itself. */
  actor: string;
  action: string;
  targetType: string;
  targetId?: string;
  outcome?: AuditOutcome;
  /** Never a secret, key or token. */
  detail?: Record<string, unknown>;
}

/** Append-only audit table in the region's database (a trigger refuses UPDATE and DELETE). */
export class AuditLog {
  constructor(private readonly db: RegionDatabase) {}

  async record(entry: AuditEntry): Promise<void> {
    await this.db.query(
      `insert into audit_event (region, actor, action, target_type, target_id, outcome, detail)
       values ($1, $2, $3, $4, $5, $6, $7)`,
      [
        this.db.region,
        entry.actor,
        entry.action,
        entry.targetType,
        entry.targetId ?? null,
        entry.outcome ?? 'success',
        entry.detail ?? {},
      ],
    );
  }
}
