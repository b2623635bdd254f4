import { createPublicKey } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { isLoopbackHost } from '@meridian/config';
import {
  ADMIN_AUDIENCE,
  CONSOLE_CLIENT_PREFIX,
  generateClientSecret,
  hashClientSecret,
  previousSecretValidUntil,
  splitClientScope,
} from '@meridian/tokens';
import { ADMIN_DEPS, type AdminDeps } from './admin-deps';
import { AdminError } from './admin-error';
import type { ClientDto, RegionDto, ResourceDto } from './dto/admin.dto';

const ID = /^[A-Za-z0-9._~:-]{1,128}$/;
const REGION_ID = /^[a-z][a-z0-9-]{0,31}$/;

function checkId(kind: string, id: string, re = ID): void {
  if (!re.test(id))
    throw new AdminError('ERR_INVALID_BODY', `${kind} id must be 1-128 characters of A-Z a-z 0-9 . _ ~ : -`);
}

/** JWE key management we issue with: no RSA1_5 (RFC 8725 §3.2), no `dir` (no shared keys). */
export const TOKEN_ENCRYPTION_ALGS = ['ECDH-ES', 'ECDH-ES+A128KW', 'ECDH-ES+A256KW', 'RSA-OAEP-256'];
export const TOKEN_ENCRYPTION_ENCS = ['A128GCM', 'A256GCM'];

function checkEncryptionJwk(jwk: Record<string, unknown>): Record<string, unknown> {
  const fail = (why: string) => new AdminError('ERR_INVALID_BODY', `encryptionJwk: ${why}`);
  if (typeof jwk.alg !== 'string' || !TOKEN_ENCRYPTION_ALGS.includes(jwk.alg))
    throw fail(`alg must be one of ${TOKEN_ENCRYPTION_ALGS.join(', ')}`);
  if (jwk.enc !== undefined && (typeof jwk.enc !== 'string' || !TOKEN_ENCRYPTION_ENCS.includes(jwk.enc)))
    throw fail(`enc must be one of ${TOKEN_ENCRYPTION_ENCS.join(', ')}`);
  for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'])
    if (priv in jwk) throw fail('must be a public key (private member found)');
  const rsa = jwk.alg.startsWith('RSA');
  if (rsa ? jwk.kty !== 'RSA' : jwk.kty !== 'EC' || !['P-256', 'P-384', 'P-521'].includes(String(jwk.crv)))
    throw fail(rsa ? 'RSA-OAEP-256 needs an RSA key' : 'ECDH-ES needs an EC key on P-256, P-384 or P-521');
  let key: ReturnType<typeof createPublicKey>;
  try {
    const { alg: _a, enc: _e, use: _u, key_ops: _k, ...material } = jwk;
    key = createPublicKey({ key: material as never, format: 'jwk' });
  } catch {
    throw fail('is not a valid public JWK');
  }
  if (rsa && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048)
    throw fail('RSA keys must be at least 2048 bits');
  return jwk;
}

const LOOPBACK = new Set(['127.0.0.1', '[::1]', 'localhost']);

/**
 * RFC 9700 §2.1 / RFC 8252 §7: https, http only on loopback (native apps), or a private-use
 * scheme with a reverse-domain name (contains a dot). Never javascript:, data: and the like.
 */
function checkRedirectUri(uri: string): void {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new AdminError('ERR_INVALID_BODY', `redirect_uris: ${uri} is not a URL`);
  }
  const scheme = url.protocol.slice(0, -1);
  if (scheme === 'https') return;
  if (scheme === 'http') {
    if (LOOPBACK.has(url.hostname)) return;
    throw new AdminError('ERR_INVALID_BODY', `redirect_uris: ${uri} must use https (http only on loopback)`);
  }
  if (scheme.includes('.') && !['javascript', 'data', 'file', 'vbscript'].includes(scheme)) return;
  throw new AdminError(
    'ERR_INVALID_BODY',
    `redirect_uris: ${uri} must use https, loopback http or a private-use scheme such as com.example.app`,
  );
}

export interface Upserted<T> {
  created: boolean;
  body: T;
}

/** Use cases of the admin API. Every change is audited with the acting client. */
@Injectable()
export class AdminService {
  constructor(@Inject(ADMIN_DEPS) private readonly deps: AdminDeps) {}

  // ---- regions
  async putRegion(actor: string, id: string, dto: RegionDto): Promise<Upserted<Record<string, unknown>>> {
    checkId('region', id, REGION_ID);
    const issuerUrl = new URL(dto.issuer);
    if (issuerUrl.search || issuerUrl.hash || dto.issuer.includes('?') || dto.issuer.includes('#'))
      throw new AdminError('ERR_INVALID_BODY', 'issuer must not carry a query or fragment (RFC 8414 §2)');
    if (issuerUrl.protocol === 'http:' && !isLoopbackHost(issuerUrl.hostname))
      throw new AdminError('ERR_INVALID_BODY', 'issuer must use https (http only for loopback)');
    const rows = await this.deps.controlDb
      .query<{ created: boolean }>(
        `insert into region (id, issuer, jurisdiction) values ($1, $2, $3)
       on conflict (id) do update set issuer = excluded.issuer, jurisdiction = coalesce(excluded.jurisdiction, region.jurisdiction), updated_at = now()
       returning (xmax = 0) as created`,
        [id, dto.issuer.replace(/\/+$/, ''), dto.jurisdiction ?? null],
      )
      .catch((err: { code?: string }) => {
        if (err.code === '23505')
          throw new AdminError('ERR_INVALID_BODY', 'issuer is already used by another region');
        throw err;
      });
    await this.deps.audit.record({
      actor,
      action: 'region.put',
      targetType: 'region',
      targetId: id,
      detail: { issuer: dto.issuer },
    });
    return { created: rows[0]!.created, body: await this.getRegion(id) };
  }

  async listRegions() {
    return this.deps.controlDb.query('select id, issuer, jurisdiction from region order by id');
  }

  async getRegion(id: string) {
    const [row] = await this.deps.controlDb.query(
      'select id, issuer, jurisdiction from region where id = $1',
      [id],
    );
    if (!row) throw new AdminError('ERR_NOT_FOUND', `region ${id} does not exist`);
    return row;
  }

  // ---- resources
  async putResource(actor: string, id: string, dto: ResourceDto): Promise<Upserted<Record<string, unknown>>> {
    checkId('resource', id);
    if (dto.audience === ADMIN_AUDIENCE)
      throw new AdminError('ERR_PROTECTED', `${ADMIN_AUDIENCE} is built in`);
    const [region] = await this.deps.controlDb.query('select 1 from region where id = $1', [dto.region]);
    if (!region)
      throw new AdminError(
        'ERR_UNKNOWN_REGION',
        `region ${dto.region} is not a known region (PUT /admin/regions/${dto.region} first)`,
      );
    const rows = await this.deps.controlDb
      .query<{ created: boolean }>(
        `insert into resource (id, audience, scopes, region, access_token_ttl_seconds, client_id, encryption_jwk)
         values ($1, $2, $3, $4, $5, $6, $7)
       on conflict (id) do update set audience = excluded.audience, scopes = excluded.scopes, region = excluded.region,
         access_token_ttl_seconds = excluded.access_token_ttl_seconds, client_id = excluded.client_id,
         encryption_jwk = excluded.encryption_jwk, updated_at = now()
       returning (xmax = 0) as created`,
        [
          id,
          dto.audience,
          [...new Set(dto.scopes)],
          dto.region,
          dto.accessTokenTtlSeconds ?? 300,
          dto.clientId ?? null,
          dto.encryptionJwk ? checkEncryptionJwk(dto.encryptionJwk) : null,
        ],
      )
      .catch((err: { code?: string }) => {
        if (err.code === '23505')
          throw new AdminError('ERR_INVALID_BODY', 'audience is already used by another resource');
        throw err;
      });
    this.deps.resources.invalidate();
    await this.deps.audit.record({
      actor,
      action: 'resource.put',
      targetType: 'resource',
      targetId: id,
      detail: { ...dto },
    });
    return { created: rows[0]!.created, body: await this.getResource(id) };
  }

  async listResources() {
    const rows = await this.deps.controlDb.query<ResourceRow>('select * from resource order by id');
    return rows.map(resourceView);
  }

  async getResource(id: string) {
    const [row] = await this.deps.controlDb.query<ResourceRow>('select * from resource where id = $1', [id]);
    if (!row) throw new AdminError('ERR_NOT_FOUND', `resource ${id} does not exist`);
    return resourceView(row);
  }

  async deleteResource(actor: string, id: string): Promise<void> {
    const rows = await this.deps.controlDb.query('delete from resource where id = $1 returning id', [id]);
    if (rows.length === 0) throw new AdminError('ERR_NOT_FOUND', `resource ${id} does not exist`);
    this.deps.resources.invalidate();
    await this.deps.audit.record({ actor, action: 'resource.delete', targetType: 'resource', targetId: id });
  }

  // ---- clients
  async putClient(
    actor: string,
    clientId: string,
    dto: ClientDto,
  ): Promise<Upserted<Record<string, unknown>>> {
    checkId('client', clientId);
    if (clientId === this.deps.adminClientId)
      throw new AdminError(
        'ERR_PROTECTED',
        'the bootstrap admin client is managed by MERIDIAN_ADMIN_CLIENT_ID/SECRET',
      );
    if (clientId.startsWith(CONSOLE_CLIENT_PREFIX))
      throw new AdminError(
        'ERR_PROTECTED',
        'console clients are built in: each broker provisions its own at start',
      );
    for (const uri of [...dto.redirect_uris, ...(dto.post_logout_redirect_uris ?? [])]) checkRedirectUri(uri);
    const resources = dto.resources ?? [];
    for (const audience of resources) {
      if (audience === ADMIN_AUDIENCE) continue;
      if (!(await this.deps.resources.byAudience(audience))) {
        throw new AdminError(
          'ERR_UNKNOWN_RESOURCE',
          `resources: ${audience} is not a registered resource audience`,
        );
      }
    }
    const [existing] = await this.deps.controlDb.query<{ metadata: Record<string, unknown> }>(
      'select metadata from oidc_client where client_id = $1',
      [clientId],
    );
    const needsSecret =
      dto.token_endpoint_auth_method === 'client_secret_basic' ||
      dto.token_endpoint_auth_method === 'client_secret_post';
    let issuedSecret: string | undefined;
    let secretHash: string | undefined;
    if (needsSecret) {
      if (dto.client_secret) secretHash = hashClientSecret(dto.client_secret);
      else if (typeof existing?.metadata.client_secret === 'string')
        secretHash = existing.metadata.client_secret;
      else secretHash = hashClientSecret((issuedSecret = generateClientSecret()));
    }
    const { client_secret: _secret, scope, ...rest } = dto;
    const metadata: Record<string, unknown> = {
      ...rest,
      ...splitClientScope(scope),
      client_id: clientId,
      resources,
    };
    if (secretHash) metadata.client_secret = secretHash;
    // A rotation's overlap survives a PUT that keeps the secret; a PUT that sets one ends it.
    if (secretHash && !dto.client_secret && existing) {
      for (const key of ['previous_client_secret', 'previous_client_secret_expires_at'])
        if (existing.metadata[key] !== undefined) metadata[key] = existing.metadata[key];
    }
    try {
      await this.deps.validateClientMetadata(metadata);
    } catch (err) {
      throw new AdminError(
        'ERR_INVALID_CLIENT_METADATA',
        (err as { error_description?: string }).error_description ?? (err as Error).message,
      );
    }
    await this.deps.controlDb.query(
      `insert into oidc_client (client_id, metadata) values ($1, $2)
       on conflict (client_id) do update set metadata = excluded.metadata, updated_at = now()`,
      [clientId, metadata],
    );
    this.deps.clients.invalidate(clientId);
    await this.deps.audit.record({
      actor,
      action: 'client.put',
      targetType: 'client',
      targetId: clientId,
      detail: {
        grant_types: dto.grant_types,
        resources,
        secretChanged: !!(dto.client_secret || issuedSecret),
      },
    });
    const body = await this.getClient(clientId);
    return { created: !existing, body: issuedSecret ? { ...body, client_secret: issuedSecret } : body };
  }

  async listClients() {
    const rows = await this.deps.controlDb.query<{ metadata: Record<string, unknown> }>(
      'select metadata from oidc_client order by client_id',
    );
    return rows.map((r) => clientView(r.metadata));
  }

  async getClient(clientId: string) {
    const [row] = await this.deps.controlDb.query<{ metadata: Record<string, unknown> }>(
      'select metadata from oidc_client where client_id = $1',
      [clientId],
    );
    if (!row) throw new AdminError('ERR_NOT_FOUND', `client ${clientId} does not exist`);
    return clientView(row.metadata);
  }

  async deleteClient(actor: string, clientId: string): Promise<void> {
    if (clientId === this.deps.adminClientId)
      throw new AdminError('ERR_PROTECTED', 'the bootstrap admin client cannot be deleted');
    if (clientId.startsWith(CONSOLE_CLIENT_PREFIX))
      throw new AdminError('ERR_PROTECTED', 'console clients are built in and cannot be deleted');
    const rows = await this.deps.controlDb.query(
      'delete from oidc_client where client_id = $1 returning client_id',
      [clientId],
    );
    if (rows.length === 0) throw new AdminError('ERR_NOT_FOUND', `client ${clientId} does not exist`);
    this.deps.clients.invalidate(clientId);
    await this.deps.audit.record({
      actor,
      action: 'client.delete',
      targetType: 'client',
      targetId: clientId,
    });
  }

  // ---- keys
  async rotateKeys(actor: string) {
    return this.deps.rotateKeys(actor);
  }

  listKeys() {
    return this.deps.keys().published.map((k) => ({
      kid: k.kid,
      alg: k.alg,
      state: k.state,
      activatedAt: k.activatedAt,
      publishUntil: k.publishUntil,
    }));
  }
}

interface ResourceRow {
  id: string;
  audience: string;
  scopes: string[];
  region: string;
  access_token_ttl_seconds: number;
  client_id: string | null;
}

function resourceView(r: ResourceRow) {
  return {
    id: r.id,
    audience: r.audience,
    scopes: r.scopes,
    region: r.region,
    accessTokenTtlSeconds: r.access_token_ttl_seconds,
    ...(r.client_id ? { clientId: r.client_id } : {}),
  };
}

/** Never the stored secret hash: a client's secret is shown once, when generated. */
function clientView(metadata: Record<string, unknown>) {
  const {
    client_secret,
    allowed_scopes,
    scope: _oidcScope,
    previous_client_secret: _previous,
    previous_client_secret_expires_at: _previousExpiresAt,
    ...rest
  } = metadata;
  const previousUntil = previousSecretValidUntil(metadata, Math.floor(Date.now() / 1000));
  return {
    ...rest,
    scope: allowed_scopes ?? '',
    has_client_secret: typeof client_secret === 'string',
    ...(previousUntil !== undefined ? { previous_client_secret_expires_at: previousUntil } : {}),
  };
}
