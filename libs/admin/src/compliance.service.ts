import { Inject, Injectable } from '@nestjs/common';
import { verifyAuditChain } from '@meridian/audit';
import { isLoopbackHost } from '@meridian/config';
import { FederationError, type FederationConfig } from '@meridian/federation';
import {
  decide,
  dryRun,
  validateClaimMapping,
  validatePolicy,
  type ResidencyPolicy,
} from '@meridian/residency';
import { ADMIN_DEPS, type AdminDeps } from './admin-deps';
import { AdminError } from './admin-error';
import type { Upserted } from './admin.service';
import type { FederationDto } from './dto/federation.dto';
import { documentChanges, jurisdictionChanges } from './policy-diff';

const ID = /^[A-Za-z0-9._~-]{1,64}$/;

/** Federations, residency policies, data-subject requests and the audit trail. */
@Injectable()
export class ComplianceService {
  constructor(@Inject(ADMIN_DEPS) private readonly deps: AdminDeps) {}

  private get redirectUri() {
    return `${this.deps.issuer}/federation/callback`;
  }

  // ---- federations (scope meridian:admin)
  async putFederation(
    actor: string,
    id: string,
    dto: FederationDto,
  ): Promise<Upserted<Record<string, unknown>>> {
    if (!ID.test(id))
      throw new AdminError(
        'ERR_INVALID_BODY',
        'federation id must be 1-64 characters of A-Z a-z 0-9 . _ ~ -',
      );
    const national = dto.kind !== 'global';
    if (national && !dto.jurisdiction)
      throw new AdminError('ERR_INVALID_BODY', `jurisdiction is required for a ${dto.kind} federation`);
    if (!national && dto.jurisdiction)
      throw new AdminError(
        'ERR_INVALID_BODY',
        'jurisdiction applies to national and regional federations; a global one takes it from the person’s claims',
      );
    const mappingErrors = dto.claimMapping === undefined ? [] : validateClaimMapping(dto.claimMapping);
    if (mappingErrors.length)
      throw new AdminError(
        'ERR_INVALID_BODY',
        mappingErrors.map((e) => `${e.field}: ${e.message}`).join('; '),
      );
    const issuer = dto.issuer.replace(/\/+$/, '');
    if (new URL(issuer).protocol === 'http:' && !isLoopbackHost(new URL(issuer).hostname))
      throw new AdminError('ERR_INVALID_BODY', 'issuer must use https (http only for loopback)');
    const method = dto.tokenEndpointAuthMethod ?? 'client_secret_basic';
    if (method !== 'private_key_jwt' && !dto.clientSecret && !(await this.deps.federations.hasSecret(id)))
      throw new AdminError(
        'ERR_INVALID_BODY',
        `clientSecret is required for ${method} (this region holds none for this federation yet)`,
      );
    const config: FederationConfig = {
      id,
      displayName: dto.displayName,
      issuer,
      clientId: dto.clientId,
      scopes: dto.scopes ?? ['openid', 'email', 'profile'],
      kind: dto.kind,
      jurisdiction: dto.jurisdiction,
      homeRealm: dto.homeRealm
        ? { emailDomains: dto.homeRealm.emailDomains, countries: dto.homeRealm.countries }
        : undefined,
      claimMapping: dto.claimMapping,
      enabled: dto.enabled ?? true,
      storeProfile: dto.storeProfile ?? true,
      tokenEndpointAuthMethod: method,
      useUserinfo: dto.useUserinfo ?? false,
    };
    try {
      await this.deps.checkIssuer(issuer, dto.clientId);
    } catch (err) {
      const reason =
        err instanceof FederationError ? err.message : 'the discovery document could not be fetched';
      throw new AdminError('ERR_UNPROCESSABLE', reason);
    }
    if (national && config.enabled) {
      const covered = decide(
        { id, kind: config.kind, jurisdiction: config.jurisdiction },
        {},
        await this.deps.policies.current(),
      );
      if (!covered.ok)
        throw new AdminError(
          'ERR_UNPROCESSABLE',
          `${covered.message} (or PUT the federation with enabled: false)`,
        );
    }
    const { created } = await this.deps.federations.put(config, dto.clientSecret);
    await this.deps.audit.record({
      actor,
      action: 'federation.put',
      targetType: 'federation',
      targetId: id,
      detail: {
        issuer,
        kind: config.kind,
        jurisdiction: config.jurisdiction ?? null,
        enabled: config.enabled,
        storeProfile: config.storeProfile,
        secretChanged: !!dto.clientSecret,
      },
    });
    return { created, body: await this.getFederation(id) };
  }

  async listFederations() {
    const list = await this.deps.federations.list();
    return Promise.all(list.map((f) => this.federationView(f)));
  }

  async getFederation(id: string) {
    this.deps.federations.invalidate();
    const fed = await this.deps.federations.get(id);
    if (!fed) throw new AdminError('ERR_NOT_FOUND', `federation ${id} does not exist`);
    return this.federationView(fed);
  }

  async deleteFederation(actor: string, id: string): Promise<void> {
    if (!(await this.deps.federations.delete(id)))
      throw new AdminError('ERR_NOT_FOUND', `federation ${id} does not exist`);
    await this.deps.audit.record({
      actor,
      action: 'federation.delete',
      targetType: 'federation',
      targetId: id,
    });
  }

  private async federationView(fed: FederationConfig & { version?: string }) {
    const { version: _v, ...rest } = fed;
    // clientId and secret are this region's: each region registers its own redirect URI upstream.
    return {
      ...rest,
      clientId: (await this.deps.federations.clientId(fed.id)) ?? rest.clientId,
      hasClientSecret: await this.deps.federations.hasSecret(fed.id),
      redirectUri: this.redirectUri,
      postLogoutRedirectUri: `${this.deps.issuer}/federation/logged-out`,
    };
  }

  // ---- residency policies (scope meridian:compliance)
  async putPolicy(actor: string, id: string, document: unknown) {
    const knownRegions = await this.knownRegions();
    const policy = await this.deps.policies.append(id, actor, (others) => {
      const result = validatePolicy(id, document, { knownRegions, otherPolicies: others });
      if (!result.ok) {
        throw new AdminError(
          'ERR_INVALID_BODY',
          result.errors.map((e) => `${e.field}: ${e.message}`).join('; '),
          {
            errors: result.errors,
          },
        );
      }
      return result.policy;
    });
    await this.deps.audit.record({
      actor,
      action: 'policy.put',
      targetType: 'residency_policy',
      targetId: `${id}@${policy.version}`,
      detail: {
        appliesTo: policy.appliesTo.jurisdictions,
        homeRegion: policy.homeRegion,
        storageRegions: policy.storageRegions,
      },
    });
    return policyView(policy);
  }

  async listPolicies() {
    return (await this.deps.policies.current()).map(policyView);
  }

  async getPolicy(id: string) {
    const history = await this.deps.policies.history(id);
    if (!history.length) throw new AdminError('ERR_NOT_FOUND', `policy ${id} does not exist`);
    return {
      id,
      current: policyView({ ...history[0]!.document, id, version: history[0]!.version }),
      history: history.map((h) => ({
        version: h.version,
        ref: `${id}@${h.version}`,
        createdBy: h.createdBy,
        createdAt: h.createdAt,
        document: h.document,
      })),
    };
  }

  /**
   * What saving `document` as policy `id` would do: the validation result (400 with `errors` when
   * invalid), the field changes against the current version, the jurisdictions whose decision
   * changes, and the subjects stored in this region it would move or strip of released claims.
   */
  async dryRunPolicy(actor: string, id: string, document: unknown) {
    const knownRegions = await this.knownRegions();
    const current = await this.deps.policies.current();
    const others = current.filter((p) => p.id !== id);
    const result = validatePolicy(id, document, { knownRegions, otherPolicies: others });
    if (!result.ok) {
      throw new AdminError(
        'ERR_INVALID_BODY',
        result.errors.map((e) => `${e.field}: ${e.message}`).join('; '),
        { errors: result.errors },
      );
    }
    const existing = current.find((p) => p.id === id);
    const candidate = { ...result.policy, id, version: (existing?.version ?? 0) + 1 };
    const subjects = await this.deps.regionDb.query<{
      jurisdiction: string;
      home_region: string;
      policy_id: string;
    }>(
      `select residency->>'jurisdiction' as jurisdiction, residency->>'region' as home_region,
              split_part(residency->>'policy', '@', 1) as policy_id
         from subject`,
    );
    const report = dryRun(
      candidate,
      existing,
      subjects.map((s) => ({
        jurisdiction: s.jurisdiction,
        homeRegion: s.home_region,
        policyId: s.policy_id,
      })),
      others,
      this.deps.region,
    );
    const { id: _id, version: _version, ...candidateDocument } = candidate;
    const currentDocument = existing ? (({ id: _i, version: _v, ...doc }) => doc)(existing) : undefined;
    const jurisdictions = jurisdictionChanges(
      candidate,
      existing,
      others,
      subjects.map((s) => s.jurisdiction),
    );
    await this.deps.audit.record({
      actor,
      action: 'policy.dry-run',
      targetType: 'residency_policy',
      targetId: id,
      detail: {
        ...report,
        byJurisdiction: undefined,
        jurisdictions: jurisdictions.map((j) => j.jurisdiction),
      },
    });
    return {
      ...report,
      valid: true,
      policy: id,
      currentVersion: existing?.version ?? null,
      candidateVersion: candidate.version,
      document: candidateDocument,
      changes: documentChanges(currentDocument ?? {}, candidateDocument),
      jurisdictions,
    };
  }

  private async knownRegions(): Promise<string[]> {
    return (await this.deps.controlDb.query<{ id: string }>('select id from region')).map((r) => r.id);
  }

  // ---- data-subject requests (scope meridian:compliance)
  async exportSubject(actor: string, sub: string) {
    const data = await this.deps.subjects.export(sub);
    if (!data || (data.subject as { home?: boolean }).home === false) await this.notHere(sub);
    await this.deps.audit.record({ actor, action: 'subject.export', targetType: 'subject', targetId: sub });
    return data;
  }

  async eraseSubject(actor: string, sub: string): Promise<{ erased: true; region: string }> {
    const subject = await this.deps.subjects.find(sub);
    if (!subject || !subject.home) await this.notHere(sub);
    await this.deps.subjects.erase(sub, actor);
    await this.deps.notifyErasure(sub);
    return { erased: true, region: this.deps.region };
  }

  /** 404; with `home_region` when the locator knows where the subject lives. */
  private async notHere(sub: string): Promise<never> {
    const home = await this.deps.locator.regionOf(this.deps.locator.subKey(sub));
    if (home && home !== this.deps.region) {
      throw new AdminError(
        'ERR_NOT_HOME',
        `subject is not held in region ${this.deps.region}; its home region is ${home}`,
        { home_region: home },
      );
    }
    throw new AdminError('ERR_NOT_FOUND', `no subject ${sub.slice(0, 64)} in region ${this.deps.region}`);
  }

  // ---- audit trail (scope meridian:compliance)
  /** Walks this region's hash chain; the answer names the first broken link, if any. */
  verifyAudit() {
    return verifyAuditChain(this.deps.regionDb);
  }

  async auditEvents(q: { subject?: string; type?: string; since?: string; until?: string; limit?: string }) {
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.subject) {
      params.push(q.subject);
      where.push(`target_id = $${params.length}`);
    }
    if (q.type) {
      params.push(q.type);
      where.push(`action = $${params.length}`);
    }
    if (q.since) {
      const since = new Date(q.since);
      if (Number.isNaN(since.getTime()))
        throw new AdminError('ERR_INVALID_BODY', 'since must be an ISO 8601 date-time');
      params.push(since);
      where.push(`at >= $${params.length}`);
    }
    if (q.until) {
      const until = new Date(q.until);
      if (Number.isNaN(until.getTime()))
        throw new AdminError('ERR_INVALID_BODY', 'until must be an ISO 8601 date-time');
      params.push(until);
      where.push(`at < $${params.length}`);
    }
    const limit = q.limit === undefined ? 500 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 5000)
      throw new AdminError('ERR_INVALID_BODY', 'limit must be 1-5000');
    params.push(limit);
    const rows = await this.deps.regionDb.query(
      `select id, at, region, actor, action, target_type, target_id, outcome, detail from audit_event
        ${where.length ? `where ${where.join(' and ')}` : ''} order by id desc limit $${params.length}`,
      params,
    );
    return { region: this.deps.region, events: rows };
  }
}

function policyView(p: ResidencyPolicy) {
  const { id, version, ...document } = p;
  return { id, version, ref: `${id}@${version}`, document };
}
