import { createHash, randomBytes } from 'node:crypto';
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

/** The hash before the first entry of a region's chain. */
export const AUDIT_GENESIS = '0'.repeat(64);

/** JSON with object keys sorted at every level: the same value always hashes the same. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** The salted digest of an entry's personal fields (who, about whom, detail). */
export function personalDigest(
  salt: string,
  p: { actor: string; targetId: string | null; detail: unknown },
): string {
  return sha256(
    `${salt}\n${canonicalJson({ actor: p.actor, targetId: p.targetId, detail: p.detail ?? {} })}`,
  );
}

/** The chain hash of one entry: everything that may never change, plus the personal digest. */
export function entryHash(e: {
  prevHash: string;
  id: string;
  at: Date;
  region: string;
  action: string;
  targetType: string;
  outcome: string;
  personalDigest: string;
}): string {
  return sha256(
    canonicalJson([
      e.prevHash,
      e.id,
      e.at.toISOString(),
      e.region,
      e.action,
      e.targetType,
      e.outcome,
      e.personalDigest,
    ]),
  );
}

/**
 * The region's audit trail: append-only (a trigger refuses UPDATE and DELETE outside erasure and
 * retention) and hash-chained — each entry carries the hash of the one before, appends are
 * serialised on the region's chain head row. See {@link verifyAuditChain}.
 */
export class AuditLog {
  constructor(private readonly db: RegionDatabase) {}

  async record(entry: AuditEntry): Promise<void> {
    const region = this.db.region;
    await this.db.dataSource.transaction(async (tx) => {
      let [head] = (await tx.query(
        'select last_id, last_hash from audit_chain_head where region = $1 for update',
        [region],
      )) as { last_id: string; last_hash: string }[];
      if (!head) {
        // The first chained entry: anything already in the table is legacy (unchained).
        await tx.query(
          `insert into audit_chain_head (region, last_id, last_hash, legacy_before)
           select $1, 0, $2, coalesce(max(id), 0) from audit_event
           on conflict (region) do nothing`,
          [region, AUDIT_GENESIS],
        );
        [head] = (await tx.query(
          'select last_id, last_hash from audit_chain_head where region = $1 for update',
          [region],
        )) as { last_id: string; last_hash: string }[];
      }
      const [{ id }] = (await tx.query(
        `select nextval(pg_get_serial_sequence('audit_event', 'id'))::text as id`,
      )) as [{ id: string }];
      const at = new Date();
      const outcome = entry.outcome ?? 'success';
      const targetId = entry.targetId ?? null;
      const detail = entry.detail ?? {};
      const salt = randomBytes(16).toString('base64url');
      const digest = personalDigest(salt, { actor: entry.actor, targetId, detail });
      const hash = entryHash({
        prevHash: head!.last_hash,
        id,
        at,
        region,
        action: entry.action,
        targetType: entry.targetType,
        outcome,
        personalDigest: digest,
      });
      await tx.query(
        `insert into audit_event (id, at, region, actor, action, target_type, target_id, outcome, detail,
                                  prev_hash, hash, personal_salt, personal_digest)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
        [
          id,
          at,
          region,
          entry.actor,
          entry.action,
          entry.targetType,
          targetId,
          outcome,
          detail,
          head!.last_hash,
          hash,
          salt,
          digest,
        ],
      );
      await tx.query('update audit_chain_head set last_id = $2, last_hash = $3 where region = $1', [
        region,
        id,
        hash,
      ]);
    });
  }
}
