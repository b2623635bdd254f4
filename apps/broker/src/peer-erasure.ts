/**
 * Erasure across regions. The home region erases the subject, then tells every peer broker in
 * a short JWT signed with its region key (verified against the control plane's published keys:
 * only a region's own keys, only for subjects homed in that region). Peers that miss the push
 * catch up from the control plane's tombstones.
 */
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import type { ControlDatabase } from '@meridian/persistence';
import type { SubjectStore } from '@meridian/federation';
import { signJwt, type KeySet } from '@meridian/keys';
import type { Logger } from 'pino';

export const ERASURE_NOTICE_PATH = '/privacy/erasure-notices';
const TYP = 'meridian-erasure+jwt';

export class PeerErasure {
  constructor(
    private readonly o: {
      region: string;
      issuer: string;
      controlDb: ControlDatabase;
      subjects: SubjectStore;
      keys: () => KeySet;
      logger: Logger;
      timeoutMs: number;
    },
  ) {}

  /** Best effort at once; the tombstone covers any peer that does not answer. */
  async notify(sub: string): Promise<{ region: string; ok: boolean }[]> {
    const peers = await this.o.controlDb.query<{ id: string; issuer: string }>(
      'select id, issuer from region where id <> $1',
      [this.o.region],
    );
    const key = this.o.keys().current;
    return Promise.all(
      peers.map(async (peer) => {
        try {
          const iat = Math.floor(Date.now() / 1000);
          // Signed where the region key lives (sealed under the KEK, or in a PKCS#11 token).
          const notice = await signJwt(
            key,
            {
              iss: this.o.issuer,
              aud: peer.issuer,
              sub,
              jti: crypto.randomUUID(),
              iat,
              exp: iat + 120,
            },
            { typ: TYP },
          );
          const res = await fetch(`${peer.issuer}${ERASURE_NOTICE_PATH}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ notice }),
            signal: AbortSignal.timeout(this.o.timeoutMs),
          });
          return { region: peer.id, ok: res.ok };
        } catch (err) {
          this.o.logger.warn(
            { region: peer.id, err: { message: (err as Error).message } },
            'erasure notice not delivered (tombstone will catch up)',
          );
          return { region: peer.id, ok: false };
        }
      }),
    );
  }

  /** A notice from a peer: erase this region's copy of a subject homed in the sender's region. */
  async receive(notice: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    const refuse = (why: string) => ({
      status: 401,
      body: { error: 'invalid_request', error_description: why },
    });
    if (typeof notice !== 'string' || notice.length > 4096) return refuse('notice must be a compact JWT');
    let iss: unknown;
    try {
      iss = decodeJwt(notice).iss;
    } catch {
      return refuse('notice is not a JWT');
    }
    const [sender] = await this.o.controlDb.query<{ id: string }>('select id from region where issuer = $1', [
      String(iss),
    ]);
    if (!sender || sender.id === this.o.region) return refuse('notice from an unknown region');
    const keys = await this.o.controlDb.query<{ public_jwk: JSONWebKeySet['keys'][number] }>(
      'select public_jwk from region_key where region = $1',
      [sender.id],
    );
    let sub: string;
    try {
      const { payload } = await jwtVerify(
        notice,
        createLocalJWKSet({ keys: keys.map((k) => k.public_jwk) }),
        {
          issuer: String(iss),
          audience: this.o.issuer,
          typ: TYP,
          maxTokenAge: '5m',
          algorithms: ['ES256', 'RS256', 'PS256', 'EdDSA'],
          requiredClaims: ['sub', 'exp', 'iat', 'jti'],
        },
      );
      sub = payload.sub!;
    } catch {
      return refuse('notice signature or claims invalid');
    }
    const subject = await this.o.subjects.find(sub);
    // Only the subject's home region may erase it here.
    if (!subject || subject.home || subject.residency.region !== sender.id)
      return { status: 202, body: { erased: false } };
    const erased = await this.o.subjects.eraseCopy(sub, `region:${sender.id}`);
    return { status: 202, body: { erased } };
  }
}
