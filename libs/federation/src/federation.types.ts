/** A federation: an upstream identity provider people log in through. Control-plane data. */
export type FederationKind = 'national' | 'regional' | 'global';
export type UpstreamAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

export interface FederationConfig {
  id: string;
  displayName: string;
  issuer: string;
  clientId: string;
  scopes: string[];
  kind: FederationKind;
  /** ISO 3166-1 alpha-2 or EU; required for national and regional federations. */
  jurisdiction?: string;
  homeRealm?: { emailDomains?: string[]; countries?: string[] };
  /** Meridian profile claim → upstream claim (dot path). */
  claimMapping?: Record<string, string>;
  enabled: boolean;
  /** false: no personal data at rest for this federation's people, only the pseudonymous link. */
  storeProfile: boolean;
  tokenEndpointAuthMethod: UpstreamAuthMethod;
  /** Also call the upstream's userinfo endpoint after the code exchange. */
  useUserinfo: boolean;
}

export type FederationErrorCode =
  | 'ERR_FEDERATION_UNKNOWN'
  | 'ERR_FEDERATION_DISABLED'
  | 'ERR_FEDERATION_DISCOVERY'
  | 'ERR_FEDERATION_NO_SECRET'
  | 'ERR_FEDERATION_UNCOVERED'
  | 'ERR_UPSTREAM_ERROR'
  | 'ERR_UPSTREAM_CANCELLED'
  | 'ERR_UPSTREAM_INVALID_RESPONSE'
  | 'ERR_UPSTREAM_TIMEOUT'
  | 'ERR_LOGIN_EXPIRED'
  | 'ERR_RESIDENCY_REFUSED'
  | 'ERR_RESIDENCY_STORAGE_REFUSED'
  | 'ERR_HANDOFF_MISROUTED'
  | 'ERR_HANDOFF_UNAVAILABLE';

export class FederationError extends Error {
  constructor(
    readonly code: FederationErrorCode,
    /** What the person or admin is told. */
    message: string,
    /** Logs and audit only. */
    readonly detail?: string,
    /** The OAuth error an authorization response carried (RFC 6749 §4.1.2.1). */
    readonly authorizationError?: { error: string; description?: string },
  ) {
    super(message);
    this.name = 'FederationError';
  }
}
