import { randomUUID } from 'node:crypto';
import type { RegionDatabase } from '@meridian/persistence';

export interface LoginTransaction {
  state: string;
  interactionUid: string;
  federationId: string;
  /** upstream: an IdP; peer: the subject's home broker. */
  kind: 'upstream' | 'peer';
  /** The federation id (upstream) or the home region id (peer). */
  target: string;
  codeVerifier: string;
  nonce: string;
}

/** Upstream logins in flight, in the region database (any replica may receive the callback). */
export class LoginTransactionStore {
  constructor(
    private readonly db: RegionDatabase,
    private readonly ttlSeconds = 600,
  ) {}

  async save(tx: LoginTransaction): Promise<void> {
    await this.db.query(
      `insert into login_transaction (state, interaction_uid, federation_id, kind, target, code_verifier, nonce, expires_at)
       values ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))`,
      [
        tx.state,
        tx.interactionUid,
        tx.federationId,
        tx.kind,
        tx.target,
        tx.codeVerifier,
        tx.nonce,
        this.ttlSeconds,
      ],
    );
  }

  /** Single use: a replayed callback finds nothing. */
  async consume(state: string): Promise<LoginTransaction | undefined> {
    const rows = await this.db.query<{
      state: string;
      interaction_uid: string;
      federation_id: string;
      kind: 'upstream' | 'peer';
      target: string;
      code_verifier: string;
      nonce: string;
    }>(
      `update login_transaction set consumed_at = now()
        where state = $1 and consumed_at is null and expires_at > now()
        returning state, interaction_uid, federation_id, kind, target, code_verifier, nonce`,
      [state],
    );
    const r = rows[0];
    return (
      r && {
        state: r.state,
        interactionUid: r.interaction_uid,
        federationId: r.federation_id,
        kind: r.kind,
        target: r.target,
        codeVerifier: r.code_verifier,
        nonce: r.nonce,
      }
    );
  }

  async prune(): Promise<void> {
    await this.db.query(`delete from login_transaction where expires_at < now() - interval '1 hour'`);
  }

  static newId(): string {
    return randomUUID();
  }
}
