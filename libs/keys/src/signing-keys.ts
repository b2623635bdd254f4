/**
 * A region's signing keys. The region database is the source of truth (every replica reads the
 * same keys; nothing lives only in memory); private halves are sealed under the KEK; public
 * halves are also published to the control plane so every region's trust bundle lists them.
 *
 * Life of a key: `next` (published, does not sign) → `current` (signs) → `retiring` (published
 * until the longest-lived token it signed has expired) → deleted.
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { ControlDatabase, RegionDatabase } from '@meridian/persistence';
import type { SigningAlg } from '@meridian/config';
import { EnvelopeError, kekId, open, seal } from './envelope';
import type { Pkcs11KeyProvider } from './pkcs11';

/**
 * `kek_id` of a key held by a PKCS#11 token: its row holds no sealed private key, only the
 * label of the key's objects in the token (not a secret).
 */
export const PKCS11_KEK_ID = 'pkcs11';

export type KeyState = 'next' | 'current' | 'retiring';

/** Longest lifetime of anything we sign (access tokens are capped at 3600 s, ID tokens too). */
export const MAX_SIGNED_LIFETIME_SECONDS = 3600;
/** Slack for clock skew and verifier caches before a retiring key disappears. */
export const RETIRE_GRACE_SECONDS = 300;

export interface SigningKey {
  kid: string;
  alg: SigningAlg;
  state: KeyState;
  publicJwk: JWK;
  privateJwk: JWK;
  activatedAt: Date | null;
  publishUntil: Date | null;
  /**
   * A key whose private half stays in a PKCS#11 token: it signs there, and `privateJwk` holds
   * only the public members.
   */
  external?: { sign(data: Uint8Array): Promise<Uint8Array> };
}

export interface KeySet {
  current: SigningKey;
  /** current, next and retiring keys: everything a verifier must accept. */
  published: SigningKey[];
  /** Changes whenever a key is added, promoted or dropped. */
  fingerprint: string;
}

export class KeyError extends Error {
  constructor(
    readonly code: 'ERR_KEK_MISMATCH' | 'ERR_NO_SIGNING_KEY',
    message: string,
  ) {
    super(message);
    this.name = 'KeyError';
  }
}

export interface SigningKeyStoreOptions {
  region: string;
  alg: SigningAlg;
  kek: Buffer;
  kekPrevious?: Buffer;
  /** New keys are generated in this token (ES256 only); keys already sealed under the KEK stay usable. */
  pkcs11?: Pkcs11KeyProvider;
  now?: () => Date;
}

interface SigningKeyRow {
  kid: string;
  alg: SigningAlg;
  public_jwk: JWK;
  sealed_private_jwk: Buffer;
  kek_id: string;
  state: KeyState;
  activated_at: Date | null;
  publish_until: Date | null;
}

/** A transaction's query function (TypeORM's EntityManager.query), rows typed by the caller. */
interface Tx {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- EntityManager.query is untyped; each call site names its row type
  query(sql: string, params?: unknown[]): Promise<any>;
}

// Serialises key changes of one region across all its replicas (transaction-scoped lock).
const KEY_LOCK_SQL = `select pg_advisory_xact_lock(hashtext('meridian:signing-keys'))`;

export async function generateSigningJwk(
  alg: SigningAlg,
): Promise<{ kid: string; privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, {
    extractable: true,
    crv: alg === 'EdDSA' ? 'Ed25519' : undefined,
  });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
  const decorate = (jwk: JWK): JWK => ({ ...jwk, kid, alg, use: 'sig' });
  return { kid, privateJwk: decorate(await exportJWK(privateKey)), publicJwk: decorate(publicJwk) };
}

export class SigningKeyStore {
  private readonly now: () => Date;
  private readonly kekId: string;

  constructor(
    private readonly regionDb: RegionDatabase,
    private readonly controlDb: ControlDatabase,
    private readonly opts: SigningKeyStoreOptions,
  ) {
    this.now = opts.now ?? (() => new Date());
    this.kekId = kekId(opts.kek);
  }

  /** Makes sure there is a current and a next key; safe when replicas start together. */
  async ensureKeys(): Promise<void> {
    await this.regionDb.dataSource.transaction(async (tx) => {
      await tx.query(KEY_LOCK_SQL);
      await this.pruneExpired(tx);
      const rows: { state: KeyState }[] = await tx.query('select state from signing_key');
      if (!rows.some((r) => r.state === 'current')) await this.insertKey(tx, 'current');
      if (!rows.some((r) => r.state === 'next')) await this.insertKey(tx, 'next');
    });
    await this.publishToControlPlane();
  }

  /**
   * Promotes the pre-published next key, keeps the old one published until every token it
   * signed has expired, and publishes a fresh next key.
   */
  async rotate(): Promise<{ current: string; retiring: string; next: string }> {
    const result = await this.regionDb.dataSource.transaction(async (tx) => {
      await tx.query(KEY_LOCK_SQL);
      return this.rotateLocked(tx);
    });
    await this.publishToControlPlane();
    return result;
  }

  /** Rotates when the current key is older than the interval; replicas agree through the lock. */
  async rotateIfDue(intervalSeconds: number): Promise<boolean> {
    if (intervalSeconds <= 0) return false;
    const rotated = await this.regionDb.dataSource.transaction(async (tx) => {
      await tx.query(KEY_LOCK_SQL);
      const [row]: { activated_at: Date | null }[] = await tx.query(
        `select activated_at from signing_key where state = 'current'`,
      );
      if (row?.activated_at && this.now().getTime() - row.activated_at.getTime() < intervalSeconds * 1000)
        return false;
      await this.rotateLocked(tx);
      return true;
    });
    if (rotated) await this.publishToControlPlane();
    return rotated;
  }

  /** Reads and unseals the published keys. Throws ERR_KEK_MISMATCH when the KEK is wrong. */
  async load(): Promise<KeySet> {
    const rows: SigningKeyRow[] = await this.regionDb.query(
      `select kid, alg, public_jwk, sealed_private_jwk, kek_id, state, activated_at, publish_until
         from signing_key
        where publish_until is null or publish_until > $1
        order by case state when 'current' then 0 when 'next' then 1 else 2 end, created_at desc`,
      [this.now()],
    );
    const published = rows.map((row) => this.unseal(row));
    const current = published.find((k) => k.state === 'current');
    if (!current)
      throw new KeyError('ERR_NO_SIGNING_KEY', `region ${this.opts.region} has no current signing key`);
    return {
      current,
      published,
      fingerprint: published.map((k) => `${k.kid}:${k.state}`).join(','),
    };
  }

  /** Re-publishes this region's public keys to the control plane (idempotent). */
  async publishToControlPlane(): Promise<void> {
    const rows: Pick<SigningKeyRow, 'kid' | 'alg' | 'public_jwk' | 'state' | 'publish_until'>[] =
      await this.regionDb.query(
        `select kid, alg, public_jwk, state, publish_until from signing_key where publish_until is null or publish_until > $1`,
        [this.now()],
      );
    await this.controlDb.dataSource.transaction(async (tx) => {
      // Replicas of a region publish at the same moments (start, rotation): take turns.
      await tx.query(`select pg_advisory_xact_lock(hashtext('meridian:region-keys:' || $1))`, [
        this.opts.region,
      ]);
      await tx.query('delete from region_key where region = $1', [this.opts.region]);
      for (const row of rows) {
        await tx.query(
          `insert into region_key (kid, region, alg, public_jwk, state, publish_until) values ($1, $2, $3, $4, $5, $6)`,
          [row.kid, this.opts.region, row.alg, row.public_jwk, row.state, row.publish_until],
        );
      }
    });
  }

  private unseal(row: SigningKeyRow): SigningKey {
    if (row.kek_id === PKCS11_KEK_ID) return this.inToken(row);
    const keks = [this.opts.kek, ...(this.opts.kekPrevious ? [this.opts.kekPrevious] : [])];
    let plaintext: Buffer | undefined;
    for (const kek of keks) {
      try {
        plaintext = open(kek, row.sealed_private_jwk, `signing-key:${this.opts.region}:${row.kid}`);
        break;
      } catch (err) {
        if (!(err instanceof EnvelopeError)) throw err;
      }
    }
    if (!plaintext) {
      throw new KeyError(
        'ERR_KEK_MISMATCH',
        `MERIDIAN_KEK does not decrypt the signing keys of region ${this.opts.region} (they are sealed under KEK id ${row.kek_id}, this KEK's id is ${this.kekId})`,
      );
    }
    const privateJwk = JSON.parse(plaintext.toString('utf8')) as JWK;
    plaintext.fill(0);
    return {
      kid: row.kid,
      alg: row.alg,
      state: row.state,
      publicJwk: row.public_jwk,
      privateJwk,
      activatedAt: row.activated_at,
      publishUntil: row.publish_until,
    };
  }

  private async rotateLocked(tx: Tx) {
    await this.pruneExpired(tx);
    const now = this.now();
    const retireUntil = new Date(now.getTime() + (MAX_SIGNED_LIFETIME_SECONDS + RETIRE_GRACE_SECONDS) * 1000);
    const [current]: { kid: string }[] = await tx.query(
      `select kid from signing_key where state = 'current'`,
    );
    let [next]: { kid: string }[] = await tx.query(`select kid from signing_key where state = 'next'`);
    if (!next) next = { kid: await this.insertKey(tx, 'next') };
    if (current) {
      await tx.query(`update signing_key set state = 'retiring', publish_until = $2 where kid = $1`, [
        current.kid,
        retireUntil,
      ]);
    }
    await tx.query(`update signing_key set state = 'current', activated_at = $2 where kid = $1`, [
      next.kid,
      now,
    ]);
    const fresh = await this.insertKey(tx, 'next');
    return { current: next.kid, retiring: current?.kid ?? '', next: fresh };
  }

  private async pruneExpired(tx: Tx) {
    await tx.query(`delete from signing_key where state = 'retiring' and publish_until <= $1`, [this.now()]);
  }

  private inToken(row: SigningKeyRow): SigningKey {
    const token = this.opts.pkcs11;
    if (!token)
      throw new KeyError(
        'ERR_NO_SIGNING_KEY',
        `signing key ${row.kid} of region ${this.opts.region} is held by a PKCS#11 token: set MERIDIAN_SIGNING_KEY_PROVIDER=pkcs11 and its MERIDIAN_PKCS11_* variables`,
      );
    const label = row.sealed_private_jwk.toString('utf8');
    const inToken = token.publicJwk(label);
    // The token must hold the very key the region publishes.
    if (inToken.x !== row.public_jwk.x || inToken.y !== row.public_jwk.y)
      throw new KeyError(
        'ERR_NO_SIGNING_KEY',
        `the key labelled ${label} in PKCS#11 token "${token.tokenLabel}" is not signing key ${row.kid}`,
      );
    return {
      kid: row.kid,
      alg: row.alg,
      state: row.state,
      publicJwk: row.public_jwk,
      privateJwk: row.public_jwk,
      activatedAt: row.activated_at,
      publishUntil: row.publish_until,
      external: { sign: async (data) => token.sign(label, data) },
    };
  }

  private async insertKey(tx: Tx, state: KeyState) {
    if (this.opts.pkcs11 && this.opts.alg === 'ES256') {
      const ref = await this.opts.pkcs11.generateEs256(`meridian:${this.opts.region}:`);
      await tx.query(
        `insert into signing_key (kid, alg, public_jwk, sealed_private_jwk, kek_id, state, activated_at)
         values ($1, $2, $3, $4, $5, $6, $7)`,
        [
          ref.kid,
          this.opts.alg,
          ref.publicJwk,
          Buffer.from(ref.label, 'utf8'),
          PKCS11_KEK_ID,
          state,
          state === 'current' ? this.now() : null,
        ],
      );
      return ref.kid;
    }
    const { kid, privateJwk, publicJwk } = await generateSigningJwk(this.opts.alg);
    const plaintext = Buffer.from(JSON.stringify(privateJwk));
    const sealed = seal(this.opts.kek, plaintext, `signing-key:${this.opts.region}:${kid}`);
    plaintext.fill(0);
    await tx.query(
      `insert into signing_key (kid, alg, public_jwk, sealed_private_jwk, kek_id, state, activated_at)
       values ($1, $2, $3, $4, $5, $6, $7)`,
      [kid, this.opts.alg, publicJwk, sealed, this.kekId, state, state === 'current' ? this.now() : null],
    );
    return kid;
  }
}
