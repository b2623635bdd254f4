/**
 * The only way personal data reaches a region's database. Every write takes the residency
 * decision and refuses — and audits — anything the subject's policy does not allow here,
 * so no controller can store a person where their policy forbids it.
 */
import type { RegionDatabase } from '@meridian/persistence';
import type { AuditLog } from '@meridian/audit';
import type { ResidencyDecision } from '@meridian/residency';
import { FederationError } from './federation.types';
import type { SubjectLocator } from './locator';
import { newSubjectId, pseudonym } from './pseudonym';

export interface ResidencyClaim {
  region: string;
  jurisdiction: string;
  policy: string;
  processing: string[];
}

export interface StoredSubject {
  sub: string;
  residency: ResidencyClaim;
  claims: Record<string, unknown>;
  federationId: string | null;
  storeProfile: boolean;
  home: boolean;
  lastLoginAt: Date;
}

interface SubjectRow {
  sub: string;
  residency: ResidencyClaim;
  claims: Record<string, unknown>;
  federation_id: string | null;
  store_profile: boolean;
  home: boolean;
  last_login_at: Date;
}

export class SubjectStore<R extends string = string> {
  constructor(
    private readonly db: RegionDatabase<R>,
    private readonly audit: AuditLog,
    private readonly locator: SubjectLocator,
    private readonly pepper: Buffer,
  ) {}

  get region(): R {
    return this.db.region;
  }

  /** How a subject is named in this region's logs and audit trail. */
  logRef(sub: string, decision: Pick<ResidencyDecision, 'homeRegion' | 'pseudonymiseForeignLogs'>): string {
    return decision.homeRegion !== this.region && decision.pseudonymiseForeignLogs
      ? pseudonym(this.pepper, 'log', sub)
      : sub;
  }

  /** A login completed in the subject's home region: link, profile (unless storeProfile is off), locator. */
  async recordHomeLogin(input: {
    decision: ResidencyDecision;
    federationId: string;
    upstreamSub: string;
    profile: Record<string, unknown>;
    storeProfile: boolean;
  }): Promise<string> {
    const { decision } = input;
    await this.assertMayStore(decision, 'home-login');
    if (decision.homeRegion !== this.region) {
      throw new FederationError(
        'ERR_HANDOFF_MISROUTED',
        'this sign-in belongs to another region',
        `home ${decision.homeRegion}`,
      );
    }
    const linkKey = this.locator.linkKey(input.federationId, input.upstreamSub);
    const sub = await this.db.dataSource.transaction(async (tx) => {
      const [link]: { sub: string }[] = await tx.query(
        'select sub from federated_identity where link_key = $1 for update',
        [linkKey],
      );
      const subject = link?.sub ?? newSubjectId();
      await tx.query(
        `insert into subject (sub, residency, claims, federation_id, store_profile, home, last_login_at, updated_at)
         values ($1, $2, $3, $4, $5, true, now(), now())
         on conflict (sub) do update set residency = excluded.residency, claims = excluded.claims,
           store_profile = excluded.store_profile, home = true, last_login_at = now(), updated_at = now()`,
        [
          subject,
          decision.residencyClaim(),
          input.storeProfile ? input.profile : {},
          input.federationId,
          input.storeProfile,
        ],
      );
      await tx.query(
        'insert into federated_identity (link_key, federation_id, sub) values ($1, $2, $3) on conflict (link_key) do nothing',
        [linkKey, input.federationId, subject],
      );
      return subject;
    });
    await this.locator.record([linkKey, this.locator.subKey(sub)], this.region);
    await this.audit.record({
      actor: 'system',
      action: 'subject.login',
      targetType: 'subject',
      targetId: sub,
      detail: {
        federation: input.federationId,
        policy: decision.policyRef,
        rule: decision.basis.rule,
        reason: decision.basis.reason,
        storeProfile: input.storeProfile,
      },
    });
    return sub;
  }

  /**
   * A login handed off to the subject's home region came back: keep the pseudonymous `sub` and
   * `residency` (needed to issue tokens here) and the released claims only if this region is
   * one the policy lets store them.
   */
  async recordForeignLogin(input: {
    sub: string;
    residency: ResidencyClaim;
    decision: ResidencyDecision;
    releasedClaims: Record<string, unknown>;
    federationId: string;
  }): Promise<void> {
    const { decision } = input;
    const storable = decision.mayStoreIn(this.region) ? input.releasedClaims : {};
    await this.db.query(
      `insert into subject (sub, residency, claims, federation_id, store_profile, home, last_login_at, updated_at)
       values ($1, $2, $3, $4, $5, false, now(), now())
       on conflict (sub) do update set residency = excluded.residency, claims = excluded.claims,
         home = false, last_login_at = now(), updated_at = now()`,
      [input.sub, input.residency, storable, input.federationId, Object.keys(storable).length > 0],
    );
    await this.audit.record({
      actor: 'system',
      action: 'subject.login.handed-off',
      targetType: 'subject',
      targetId: this.logRef(input.sub, decision),
      detail: {
        home: decision.homeRegion,
        policy: decision.policyRef,
        rule: decision.basis.rule,
        reason: decision.basis.reason,
        federation: input.federationId,
      },
    });
  }

  /** The storage rule: a home write is allowed only where the policy lists this region. */
  private async assertMayStore(decision: ResidencyDecision, what: string): Promise<void> {
    if (decision.mayStoreIn(this.region)) return;
    await this.audit.record({
      actor: 'system',
      action: 'subject.store.refused',
      targetType: 'subject',
      outcome: 'refused',
      detail: { what, policy: decision.policyRef, storageRegions: decision.storageRegions },
    });
    throw new FederationError(
      'ERR_RESIDENCY_STORAGE_REFUSED',
      'your data may not be stored in this region',
      `policy ${decision.policyRef} stores in ${decision.storageRegions.join(',')}`,
    );
  }

  erasedAtHome(sub: string): Promise<boolean> {
    return this.locator.isErased(sub);
  }

  /** Erases every copy here whose subject was erased at home (for regions that missed the push). */
  async sweepErasedCopies(): Promise<number> {
    let n = 0;
    for (const sub of await this.locator.erasedAmong(await this.foreignSubjects())) {
      if (await this.eraseCopy(sub, 'erasure-sweep')) n++;
    }
    return n;
  }

  linkKey(federationId: string, upstreamSub: string): string {
    return this.locator.linkKey(federationId, upstreamSub);
  }

  /** The home region the locator knows for an upstream identity. */
  homeOf(linkKey: string): Promise<string | undefined> {
    return this.locator.regionOf(linkKey);
  }

  async findByLink(linkKey: string): Promise<StoredSubject | undefined> {
    const [row] = await this.db.query<{ sub: string }>(
      'select sub from federated_identity where link_key = $1',
      [linkKey],
    );
    return row ? this.find(row.sub) : undefined;
  }

  async find(sub: string): Promise<StoredSubject | undefined> {
    const [row] = await this.db.query<SubjectRow>(
      'select sub, residency, claims, federation_id, store_profile, home, last_login_at from subject where sub = $1',
      [sub],
    );
    return row && toSubject(row);
  }

  /** GDPR Art. 15 / 20: everything this region holds about the subject. Token values excluded. */
  async export(sub: string): Promise<Record<string, unknown> | undefined> {
    const subject = await this.find(sub);
    if (!subject) return undefined;
    const links = await this.db.query(
      'select federation_id, link_key, created_at from federated_identity where sub = $1',
      [sub],
    );
    const artefacts = await this.db.query<{
      model: string;
      payload: Record<string, unknown>;
      expires_at: Date | null;
    }>(`select model, payload, expires_at from oidc_payload where payload->>'accountId' = $1`, [sub]);
    const audit = await this.db.query(
      'select at, action, actor, outcome, detail from audit_event where target_id = $1 order by at',
      [sub],
    );
    return {
      region: this.region,
      subject: {
        sub: subject.sub,
        residency: subject.residency,
        profile: subject.claims,
        federation: subject.federationId,
        storeProfile: subject.storeProfile,
        home: subject.home,
        lastLoginAt: subject.lastLoginAt,
      },
      linkedIdentities: links,
      sessions: artefacts
        .filter((a) => a.model === 'Session')
        .map((a) => ({ expiresAt: a.expires_at, authTime: a.payload.loginTs })),
      grants: artefacts
        .filter((a) => a.model === 'Grant')
        .map((a) => ({
          clientId: a.payload.clientId,
          openid: a.payload.openid,
          resources: a.payload.resources,
          expiresAt: a.expires_at,
        })),
      tokens: artefacts
        .filter(
          (a) => a.model === 'RefreshToken' || a.model === 'AuthorizationCode' || a.model === 'AccessToken',
        )
        .map((a) => ({
          type: a.model,
          clientId: a.payload.clientId,
          scope: a.payload.scope,
          expiresAt: a.expires_at,
        })),
      audit,
    };
  }

  /**
   * GDPR Art. 17: profile and links deleted, sessions, grants, codes and refresh tokens revoked
   * (their JWT access tokens then introspect inactive), audit entries pseudonymised in place.
   */
  /** Subjects this region holds as copies from hand-offs (their home is elsewhere). */
  async foreignSubjects(): Promise<string[]> {
    return (await this.db.query<{ sub: string }>('select sub from subject where home = false')).map(
      (r) => r.sub,
    );
  }

  /**
   * A subject erased at its home region: this region's copy (sub, residency, sessions, grants,
   * tokens) goes too. Only copies; a home subject is erased through a data-subject request.
   */
  async eraseCopy(sub: string, actor: string): Promise<boolean> {
    const [row] = await this.db.query<{ home: boolean }>('select home from subject where sub = $1', [sub]);
    if (!row || row.home) return false;
    return this.erase(sub, actor, { home: false });
  }

  async erase(sub: string, actor: string, o: { home: boolean } = { home: true }): Promise<boolean> {
    const ref = pseudonym(this.pepper, 'log', sub);
    const linkKeys = await this.db.dataSource.transaction(async (tx) => {
      const [exists] = await tx.query('select 1 from subject where sub = $1 for update', [sub]);
      if (!exists) return undefined;
      const links: { link_key: string }[] = await tx.query(
        'select link_key from federated_identity where sub = $1',
        [sub],
      );
      const grants: { id: string }[] = await tx.query(
        `select id from oidc_payload where model = 'Grant' and payload->>'accountId' = $1`,
        [sub],
      );
      await tx.query(`delete from oidc_payload where payload->>'accountId' = $1`, [sub]);
      if (grants.length)
        await tx.query('delete from oidc_payload where grant_id = any($1)', [grants.map((g) => g.id)]);
      await tx.query('delete from subject where sub = $1', [sub]);
      await tx.query(`set local meridian.audit_write = 'erasure'`);
      // Personal fields replaced by the pseudonym and the salt dropped: the kept digest still links
      // the entry into the chain, and nothing can recompute what it was.
      await tx.query(
        `update audit_event set target_id = $2, detail = '{}'::jsonb, personal_salt = null where target_id = $1`,
        [sub, ref],
      );
      await tx.query(`update audit_event set actor = $2, personal_salt = null where actor = $1`, [sub, ref]);
      return links.map((l) => l.link_key);
    });
    if (!linkKeys) return false;
    if (o.home) {
      await this.locator.forget([...linkKeys, this.locator.subKey(sub)]);
      await this.locator.tombstone(sub, this.region);
    }
    await this.audit.record({ actor, action: 'subject.erase', targetType: 'subject', targetId: ref });
    return true;
  }

  /** Retention: home subjects not seen for longer than their policy allows. */
  async inactiveSince(policyRefPrefix: string, before: Date): Promise<string[]> {
    const rows = await this.db.query<{ sub: string }>(
      `select sub from subject where residency->>'policy' like $1 and last_login_at < $2`,
      [`${policyRefPrefix}@%`, before],
    );
    return rows.map((r) => r.sub);
  }
}

function toSubject(row: SubjectRow): StoredSubject {
  return {
    sub: row.sub,
    residency: row.residency,
    claims: row.claims,
    federationId: row.federation_id,
    storeProfile: row.store_profile,
    home: row.home,
    lastLoginAt: row.last_login_at,
  };
}
