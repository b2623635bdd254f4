import type { ControlDatabase } from '@meridian/persistence';
import {
  ADMIN_AUDIENCE,
  ADMIN_SCOPES,
  SECURITY_EVENTS_AUDIENCE,
  SECURITY_REPORT_SCOPE,
} from './admin-audience';

export interface ResourceServerRecord {
  id: string;
  audience: string;
  scopes: string[];
  region: string;
  accessTokenTtlSeconds: number;
  /** The client the service itself uses; only it may exchange tokens issued for this audience. */
  clientId?: string;
  /** Public JWK (with `alg`, optional `enc`) access tokens for this service are encrypted to. */
  encryptionJwk?: JsonWebKeyForEncryption;
}

export interface JsonWebKeyForEncryption {
  kty: string;
  alg: string;
  enc?: string;
  kid?: string;
  [member: string]: unknown;
}

/**
 * Services that accept tokens, from the control plane. Cached briefly: it is read on every
 * token request. The admin API's own audience is built in.
 */
export class ResourceCatalog {
  private readonly cache = new Map<string, { at: number; value: ResourceServerRecord | undefined }>();

  constructor(
    private readonly db: ControlDatabase,
    private readonly region: string,
    private readonly ttlMs = 5_000,
  ) {}

  async byAudience(audience: string): Promise<ResourceServerRecord | undefined> {
    if (audience === ADMIN_AUDIENCE) {
      return {
        id: 'meridian-admin',
        audience,
        scopes: [...ADMIN_SCOPES],
        region: this.region,
        accessTokenTtlSeconds: 300,
      };
    }
    if (audience === SECURITY_EVENTS_AUDIENCE) {
      return {
        id: 'meridian-security-events',
        audience,
        scopes: [SECURITY_REPORT_SCOPE],
        region: this.region,
        accessTokenTtlSeconds: 300,
      };
    }
    const hit = this.cache.get(audience);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.value;
    const rows: {
      id: string;
      audience: string;
      scopes: string[];
      region: string;
      access_token_ttl_seconds: number;
      client_id: string | null;
      encryption_jwk: JsonWebKeyForEncryption | null;
    }[] = await this.db.query(
      'select id, audience, scopes, region, access_token_ttl_seconds, client_id, encryption_jwk from resource where audience = $1',
      [audience],
    );
    const row = rows[0];
    const value = row
      ? {
          id: row.id,
          audience: row.audience,
          scopes: row.scopes,
          region: row.region,
          accessTokenTtlSeconds: row.access_token_ttl_seconds,
          clientId: row.client_id ?? undefined,
          encryptionJwk: row.encryption_jwk ?? undefined,
        }
      : undefined;
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(audience, { at: Date.now(), value });
    return value;
  }

  invalidate(): void {
    this.cache.clear();
  }
}
