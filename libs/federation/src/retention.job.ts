import type { RegionDatabase } from '@meridian/persistence';
import type { AuditLog } from '@meridian/audit';
import { DEFAULT_AUDIT_DAYS } from '@meridian/residency';
import type { PolicyRepository } from './policy.repository';
import type { SubjectStore } from './subject.store';

const DAY_MS = 86_400_000;
/**
 * Completes a `with gone as (delete … returning id, prev_hash, hash)`: every deleted chained
 * entry leaves a tombstone, so the audit chain still links across it; answers the count.
 */
const TOMBSTONES = `, tombstoned as (
    insert into audit_tombstone (id, prev_hash, hash, reason)
    select id, prev_hash, hash, 'retention' from gone where hash is not null)
  select count(*)::int as count from gone`;

/**
 * Retention per policy: audit entries about a subject older than the subject's policy's
 * `retention.auditDays`, entries about no subject after the default, and profiles not used for
 * longer than `retention.inactiveProfileDays` (erased the same way a data-subject request
 * erases). One replica of a region runs it at a time; every run is audited.
 */
export class RetentionJob {
  constructor(
    private readonly db: RegionDatabase,
    private readonly subjects: SubjectStore,
    private readonly policies: PolicyRepository,
    private readonly audit: AuditLog,
  ) {}

  async run(now = new Date()): Promise<{ auditDeleted: number; profilesErased: number } | undefined> {
    const runner = this.db.dataSource.createQueryRunner();
    await runner.connect();
    try {
      const [{ locked }] = (await runner.query(
        `select pg_try_advisory_lock(hashtext('meridian:retention')) as locked`,
      )) as { locked: boolean }[];
      if (!locked) return undefined;
      try {
        return await this.runLocked(now);
      } finally {
        await runner.query(`select pg_advisory_unlock(hashtext('meridian:retention'))`);
      }
    } finally {
      await runner.release();
    }
  }

  private async runLocked(now: Date) {
    const policies = await this.policies.current();
    let auditDeleted = 0;
    let profilesErased = 0;
    await this.db.dataSource.transaction(async (tx) => {
      await tx.query(`set local meridian.audit_write = 'retention'`);
      for (const policy of policies) {
        const before = new Date(now.getTime() - policy.retention.auditDays * DAY_MS);
        const [{ count }] = (await tx.query(
          `with gone as (
             delete from audit_event where at < $1 and target_type = 'subject'
               and target_id in (select sub from subject where residency->>'policy' like $2)
             returning id, prev_hash, hash)
           ${TOMBSTONES}`,
          [before, `${policy.id}@%`],
        )) as [{ count: number }];
        auditDeleted += count;
      }
      const before = new Date(now.getTime() - DEFAULT_AUDIT_DAYS * DAY_MS);
      const [{ count }] = (await tx.query(
        `with gone as (
           delete from audit_event where at < $1
             and (target_type <> 'subject' or target_id not in (select sub from subject))
           returning id, prev_hash, hash)
         ${TOMBSTONES}`,
        [before],
      )) as [{ count: number }];
      auditDeleted += count;
    });
    for (const policy of policies) {
      const before = new Date(now.getTime() - policy.retention.inactiveProfileDays * DAY_MS);
      for (const sub of await this.subjects.inactiveSince(policy.id, before)) {
        if (await this.subjects.erase(sub, 'retention')) profilesErased++;
      }
    }
    await this.audit.record({
      actor: 'retention',
      action: 'retention.run',
      targetType: 'region',
      targetId: this.db.region,
      detail: { auditDeleted, profilesErased },
    });
    return { auditDeleted, profilesErased };
  }
}
