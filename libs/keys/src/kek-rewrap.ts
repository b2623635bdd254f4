/**
 * KEK change without downtime. Brokers run with the new KEK as MERIDIAN_KEK and the old one as
 * MERIDIAN_KEK_PREVIOUS (they open what either wrapped, and wrap anything new under the new
 * one); this job then re-wraps every data key of the region still wrapped under another KEK.
 *
 * Each batch is one transaction that re-reads its rows under lock and moves them to the new KEK
 * atomically, so a broker reading keys at any moment sees every row wrapped under one of its two
 * KEKs; an interrupted run leaves finished batches done and the rest untouched, and running
 * it again only picks up what is left (a finished run finds nothing and changes nothing).
 */
import type { ControlDatabase, RegionDatabase } from '@meridian/persistence';
import { EnvelopeError, kekId, rewrap } from './envelope';
import { PKCS11_KEK_ID } from './signing-keys';

export interface KekRewrapOptions {
  region: string;
  regionDb: RegionDatabase;
  controlDb: ControlDatabase;
  /** The KEK everything ends up wrapped under (MERIDIAN_KEK). */
  kek: Buffer;
  /** KEKs that may have wrapped what is left (MERIDIAN_KEK_PREVIOUS). */
  previousKeks: Buffer[];
  /** Rows per transaction. */
  batchSize?: number;
  /** Stop after this many rows were re-wrapped (the rest on a later run). */
  limit?: number;
  /** Count only; change nothing. */
  dryRun?: boolean;
  onProgress?: (p: KekRewrapProgress) => void;
}

export type KekRewrapTarget = 'signing_key' | 'federation_secret';

export interface KekRewrapProgress {
  target: KekRewrapTarget;
  /** Re-wrapped so far in this run. */
  done: number;
  /** Waiting at the start of this run. */
  total: number;
}

export interface KekRewrapFailure {
  target: KekRewrapTarget;
  id: string;
  /** The id of the KEK the row says wrapped it (never the KEK). */
  kekId: string | null;
  reason: string;
}

export interface KekRewrapReport {
  kekId: string;
  /** Per target: rows waiting at the start, re-wrapped now, still waiting at the end. */
  targets: Record<KekRewrapTarget, { pending: number; rewrapped: number; remaining: number }>;
  failures: KekRewrapFailure[];
  /** True when nothing is left under another KEK (MERIDIAN_KEK_PREVIOUS can go). */
  complete: boolean;
}

const KEY_LOCK_SQL = `select pg_advisory_xact_lock(hashtext('meridian:signing-keys'))`;

export async function rewrapRegionKeys(opts: KekRewrapOptions): Promise<KekRewrapReport> {
  const newId = kekId(opts.kek);
  const batchSize = Math.max(1, opts.batchSize ?? 100);
  let budget = opts.limit ?? Infinity;
  const failures: KekRewrapFailure[] = [];
  const report = (target: KekRewrapTarget, done: number, total: number) =>
    opts.onProgress?.({ target, done, total });

  // ---- signing keys (region database)
  const [{ n: keysPending }] = await opts.regionDb.query<{ n: number }>(
    `select count(*)::int as n from signing_key where kek_id <> $1 and kek_id <> '${PKCS11_KEK_ID}'`,
    [newId],
  );
  let keysDone = 0;
  if (!opts.dryRun && keysPending > 0) {
    report('signing_key', 0, keysPending);
    let cursor = '';
    while (budget > 0) {
      const batch = await opts.regionDb.dataSource.transaction(async (tx) => {
        // Serialises with rotations (they take the same lock) so no row changes under us.
        await tx.query(KEY_LOCK_SQL);
        const rows: { kid: string; sealed_private_jwk: Buffer; kek_id: string }[] = await tx.query(
          `select kid, sealed_private_jwk, kek_id from signing_key
            where kek_id <> $1 and kek_id <> '${PKCS11_KEK_ID}' and kid > $2 order by kid limit $3 for update`,
          [newId, cursor, Math.min(batchSize, budget)],
        );
        let changed = 0;
        for (const row of rows) {
          const context = `signing-key:${opts.region}:${row.kid}`;
          try {
            const out = rewrap(row.sealed_private_jwk, context, opts.kek, opts.previousKeks);
            await tx.query('update signing_key set sealed_private_jwk = $2, kek_id = $3 where kid = $1', [
              row.kid,
              out.sealed,
              newId,
            ]);
            changed++;
          } catch (err) {
            if (!(err instanceof EnvelopeError)) throw err;
            failures.push({ target: 'signing_key', id: row.kid, kekId: row.kek_id, reason: err.message });
          }
        }
        return { seen: rows.length, changed, last: rows.at(-1)?.kid };
      });
      keysDone += batch.changed;
      budget -= batch.changed;
      if (batch.changed > 0) report('signing_key', keysDone, keysPending);
      if (!batch.last || batch.seen < batchSize) break;
      cursor = batch.last;
    }
  }

  // ---- this region's copies of upstream client secrets (control plane)
  const pendingSecretsSql = `from federation_secret
    where region = $1 and ((sealed is not null and kek_id is distinct from $2)
      or (previous_sealed is not null and previous_kek_id is distinct from $2))`;
  const [{ n: secretsPending }] = await opts.controlDb.query<{ n: number }>(
    `select count(*)::int as n ${pendingSecretsSql}`,
    [opts.region, newId],
  );
  let secretsDone = 0;
  if (!opts.dryRun && secretsPending > 0 && budget > 0) {
    report('federation_secret', 0, secretsPending);
    let cursor = '';
    while (budget > 0) {
      const batch = await opts.controlDb.dataSource.transaction(async (tx) => {
        const rows: {
          federation_id: string;
          sealed: Buffer | null;
          kek_id: string | null;
          previous_sealed: Buffer | null;
          previous_kek_id: string | null;
        }[] = await tx.query(
          `select federation_id, sealed, kek_id, previous_sealed, previous_kek_id ${pendingSecretsSql}
             and federation_id > $3 order by federation_id limit $4 for update`,
          [opts.region, newId, cursor, Math.min(batchSize, budget)],
        );
        let changed = 0;
        for (const row of rows) {
          // Both the current and the previous secret of a rotation are sealed in this context.
          const context = `federation-secret:${opts.region}:${row.federation_id}`;
          try {
            const current =
              row.sealed && row.kek_id !== newId
                ? rewrap(row.sealed, context, opts.kek, opts.previousKeks).sealed
                : row.sealed;
            const previous =
              row.previous_sealed && row.previous_kek_id !== newId
                ? rewrap(row.previous_sealed, context, opts.kek, opts.previousKeks).sealed
                : row.previous_sealed;
            await tx.query(
              `update federation_secret
                  set sealed = $3, kek_id = case when $3::bytea is null then kek_id else $5 end,
                      previous_sealed = $4, previous_kek_id = case when $4::bytea is null then previous_kek_id else $5 end
                where federation_id = $1 and region = $2`,
              [row.federation_id, opts.region, current, previous, newId],
            );
            changed++;
          } catch (err) {
            if (!(err instanceof EnvelopeError)) throw err;
            failures.push({
              target: 'federation_secret',
              id: row.federation_id,
              kekId: row.kek_id !== newId ? row.kek_id : row.previous_kek_id,
              reason: err.message,
            });
          }
        }
        return { seen: rows.length, changed, last: rows.at(-1)?.federation_id };
      });
      secretsDone += batch.changed;
      budget -= batch.changed;
      if (batch.changed > 0) report('federation_secret', secretsDone, secretsPending);
      if (!batch.last || batch.seen < batchSize) break;
      cursor = batch.last;
    }
  }

  const [{ n: keysLeft }] = await opts.regionDb.query<{ n: number }>(
    `select count(*)::int as n from signing_key where kek_id <> $1 and kek_id <> '${PKCS11_KEK_ID}'`,
    [newId],
  );
  const [{ n: secretsLeft }] = await opts.controlDb.query<{ n: number }>(
    `select count(*)::int as n ${pendingSecretsSql}`,
    [opts.region, newId],
  );
  return {
    kekId: newId,
    targets: {
      signing_key: { pending: keysPending, rewrapped: keysDone, remaining: keysLeft },
      federation_secret: { pending: secretsPending, rewrapped: secretsDone, remaining: secretsLeft },
    },
    failures,
    complete: keysLeft === 0 && secretsLeft === 0,
  };
}
