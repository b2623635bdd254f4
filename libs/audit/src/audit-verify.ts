import type { RegionDatabase } from '@meridian/persistence';
import { AUDIT_GENESIS, entryHash, personalDigest } from './audit.service';

export interface AuditChainReport {
  region: string;
  ok: boolean;
  /** Chained entries checked. */
  entries: number;
  /** Entries deleted by retention, linked through their tombstones. */
  tombstones: number;
  /** Entries written before the chain existed: counted, not verifiable. */
  legacy: number;
  /** Entries whose personal fields were pseudonymised (checked through their kept digest). */
  pseudonymised: number;
  /** The newest link: publish it elsewhere to anchor the chain (a rewrite of the whole chain changes it). */
  head: { id: string; hash: string } | null;
  /** The first broken link, when `ok` is false. */
  firstBroken?: { id: string; reason: string };
}

interface Row {
  id: string;
  at: Date;
  region: string;
  actor: string;
  action: string;
  target_type: string;
  target_id: string | null;
  outcome: string;
  detail: unknown;
  prev_hash: string | null;
  hash: string | null;
  personal_salt: string | null;
  personal_digest: string | null;
}

const BATCH = 2000;

/**
 * Walks the region's audit chain from the first chained entry to the head and reports the first
 * broken link: an entry altered (its hash), personal fields altered (their digest, while not
 * pseudonymised), an entry removed without a tombstone or inserted outside the log (the next
 * `prev_hash`), or newest entries removed (the head).
 */
export async function verifyAuditChain(db: RegionDatabase): Promise<AuditChainReport> {
  // One snapshot for the whole walk: appends committed meanwhile are neither half-seen nor
  // mistaken for entries slipped in after the head.
  return db.dataSource.transaction('REPEATABLE READ', async (tx) => {
    const q = <T>(sql: string, params: unknown[]) => tx.query(sql, params) as Promise<T[]>;
    return walk(db.region, q);
  });
}

async function walk(
  region: string,
  query: <T>(sql: string, params: unknown[]) => Promise<T[]>,
): Promise<AuditChainReport> {
  const db = { query };
  const [head] = await db.query<{ last_id: string; last_hash: string; legacy_before: string }>(
    'select last_id::text, last_hash, legacy_before::text from audit_chain_head where region = $1',
    [region],
  );
  const [{ legacy }] = await db.query<{ legacy: string }>(
    'select count(*)::text as legacy from audit_event where id <= $1',
    [head?.legacy_before ?? '9223372036854775807'],
  );
  const report: AuditChainReport = {
    region,
    ok: true,
    entries: 0,
    tombstones: 0,
    legacy: Number(legacy),
    pseudonymised: 0,
    head: head ? { id: head.last_id, hash: head.last_hash } : null,
  };
  if (!head) return report;
  const broken = (id: string, reason: string): AuditChainReport => ({
    ...report,
    ok: false,
    firstBroken: { id, reason },
  });

  const tombstones = new Map(
    (
      await db.query<{ id: string; prev_hash: string; hash: string }>(
        'select id::text, prev_hash, hash from audit_tombstone where id > $1 order by audit_tombstone.id',
        [head.legacy_before],
      )
    ).map((t) => [t.id, t]),
  );
  const tombIds = [...tombstones.keys()].map(BigInt).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let tombAt = 0;
  let expected = AUDIT_GENESIS;
  let after = head.legacy_before;

  const passTombstonesBefore = (limit: bigint | undefined): AuditChainReport | undefined => {
    while (tombAt < tombIds.length && (limit === undefined || tombIds[tombAt]! < limit)) {
      const t = tombstones.get(tombIds[tombAt]!.toString())!;
      if (t.prev_hash !== expected) return broken(t.id, 'a tombstone does not link to the entry before it');
      expected = t.hash;
      report.tombstones++;
      tombAt++;
    }
    return undefined;
  };

  for (;;) {
    const rows = await db.query<Row>(
      `select id::text, at, region, actor, action, target_type, target_id, outcome, detail,
              prev_hash, hash, personal_salt, personal_digest
       from audit_event where id > $1 and id <= $2 order by audit_event.id limit ${BATCH}`,
      [after, head.last_id],
    );
    for (const row of rows) {
      const stop = passTombstonesBefore(BigInt(row.id));
      if (stop) return stop;
      if (!row.hash || !row.personal_digest)
        return broken(row.id, 'an entry without a chain hash (written outside the audit log)');
      if (row.prev_hash !== expected)
        return broken(row.id, 'the previous hash does not match: an entry before it was removed or altered');
      if (row.personal_salt !== null) {
        const digest = personalDigest(row.personal_salt, {
          actor: row.actor,
          targetId: row.target_id,
          detail: row.detail,
        });
        if (digest !== row.personal_digest) return broken(row.id, 'its actor, target or detail was altered');
      } else report.pseudonymised++;
      const hash = entryHash({
        prevHash: row.prev_hash,
        id: row.id,
        at: row.at,
        region: row.region,
        action: row.action,
        targetType: row.target_type,
        outcome: row.outcome,
        personalDigest: row.personal_digest,
      });
      if (hash !== row.hash) return broken(row.id, 'the entry was altered (its hash does not match)');
      expected = row.hash;
      report.entries++;
    }
    if (rows.length < BATCH) break;
    after = rows[rows.length - 1]!.id;
  }
  const stop = passTombstonesBefore(BigInt(head.last_id) + 1n);
  if (stop) return stop;
  if (expected !== head.last_hash)
    return broken(head.last_id, 'the newest entries are missing: the chain ends before its recorded head');
  const [beyond] = await db.query<{ id: string | null }>(
    'select min(id)::text as id from audit_event where id > $1',
    [head.last_id],
  );
  if (beyond?.id)
    return broken(beyond.id, 'an entry after the head, not in the chain (written outside the audit log)');
  return report;
}
