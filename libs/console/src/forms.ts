/**
 * Forms ⇄ API bodies, pure: what the person typed becomes the JSON body of the admin API's PUT,
 * what the API answers becomes the form again, and the API's messages (which name the field,
 * CONTRACT.md) are put next to the field they name.
 */
import type { FieldErrors, FormValues } from './views';

export type RawForm = Record<string, unknown>;

export function text(form: RawForm, name: string): string {
  const v = form[name];
  if (typeof v === 'string') return v.trim();
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0].trim();
  return '';
}

export function flag(form: RawForm, name: string): boolean {
  const v = form[name];
  return v === true || v === 'true' || v === 'on' || (Array.isArray(v) && v.includes('true'));
}

export function list(form: RawForm, name: string): string[] {
  const v = form[name];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string' && x.trim() !== '');
  return typeof v === 'string' && v.trim() ? [v.trim()] : [];
}

/** Words separated by spaces, commas or new lines. */
export function words(value: string): string[] {
  return value.split(/[\s,]+/).filter(Boolean);
}

/** One entry per line. */
export function lines(value: string): string[] {
  return value
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
}

function parseJsonField(
  value: string,
  field: string,
  errors: FieldErrors,
): Record<string, unknown> | undefined {
  if (!value) return undefined;
  try {
    const parsed: unknown = JSON.parse(value);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
      return parsed as Record<string, unknown>;
    (errors[field] ??= []).push('must be a JSON object');
  } catch (err) {
    (errors[field] ??= []).push(`is not valid JSON (${(err as Error).message})`);
  }
  return undefined;
}

/**
 * Puts each part of an API error description (`; `-separated, each naming its field first) next
 * to the form field it names; the rest is general. `fields` maps API field names (longest
 * first wins) to form field names.
 */
export function placeErrors(
  description: string,
  fields: Record<string, string>,
): { errors: FieldErrors; general: string[] } {
  const errors: FieldErrors = {};
  const general: string[] = [];
  const names = Object.keys(fields).sort((a, b) => b.length - a.length);
  for (const part of description
    .split('; ')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const name = names.find((n) => {
      if (!part.startsWith(n)) return false;
      const next = part.charAt(n.length);
      return next === '' || next === ' ' || next === ':' || next === '.' || next === '[';
    });
    const prop = /^property (\S+) should not exist$/.exec(part);
    if (name) {
      // A field name is dropped from its message (the field's label says it); a phrase is kept.
      const rest = /^[A-Za-z_][\w.]*$/.test(name) ? part.slice(name.length).replace(/^[:\s.]+/, '') : part;
      (errors[fields[name]!] ??= []).push(rest || part);
    } else if (prop && fields[prop[1]!]) (errors[fields[prop[1]!]!] ??= []).push('is not allowed');
    else general.push(part);
  }
  return { errors, general };
}

// ---- federations

export const FEDERATION_FIELDS: Record<string, string> = {
  'federation id': 'id',
  displayName: 'displayName',
  issuer: 'issuer',
  clientId: 'clientId',
  clientSecret: 'clientSecret',
  scopes: 'scopes',
  kind: 'kind',
  jurisdiction: 'jurisdiction',
  homeRealm: 'emailDomains',
  'homeRealm.emailDomains': 'emailDomains',
  'homeRealm.countries': 'countries',
  claimMapping: 'claimMapping',
  enabled: 'enabled',
  storeProfile: 'storeProfile',
  tokenEndpointAuthMethod: 'tokenEndpointAuthMethod',
  useUserinfo: 'useUserinfo',
};

export const FEDERATION_LABELS: Record<string, string> = {
  id: 'Federation id',
  displayName: 'Display name',
  issuer: 'Issuer URL',
  clientId: 'Client id at the identity provider',
  clientSecret: 'Client secret',
  scopes: 'Scopes',
  kind: 'Kind',
  jurisdiction: 'Jurisdiction',
  emailDomains: 'Email domains (home-realm discovery)',
  countries: 'Countries (home-realm discovery)',
  claimMapping: 'Claim mapping',
  enabled: 'Enabled',
  storeProfile: 'Store the profile',
  tokenEndpointAuthMethod: 'Client authentication',
  useUserinfo: 'Call userinfo',
};

/** The federation as the API shows it (GET), as form values. */
export function federationForm(view: Record<string, unknown>): FormValues {
  const homeRealm = (view.homeRealm ?? {}) as { emailDomains?: string[]; countries?: string[] };
  return {
    id: String(view.id ?? ''),
    displayName: String(view.displayName ?? ''),
    issuer: String(view.issuer ?? ''),
    clientId: String(view.clientId ?? ''),
    scopes: ((view.scopes as string[] | undefined) ?? []).join(' '),
    kind: String(view.kind ?? 'national'),
    jurisdiction: String(view.jurisdiction ?? ''),
    emailDomains: (homeRealm.emailDomains ?? []).join(' '),
    countries: (homeRealm.countries ?? []).join(' '),
    claimMapping:
      view.claimMapping && Object.keys(view.claimMapping).length
        ? JSON.stringify(view.claimMapping, null, 2)
        : '',
    enabled: view.enabled !== false,
    storeProfile: view.storeProfile !== false,
    tokenEndpointAuthMethod: String(view.tokenEndpointAuthMethod ?? 'client_secret_basic'),
    useUserinfo: view.useUserinfo === true,
  };
}

/** The PUT body for a federation as the API shows it (to change one thing, e.g. `enabled`). */
export function federationBodyFromView(view: Record<string, unknown>): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const key of [
    'displayName',
    'issuer',
    'clientId',
    'scopes',
    'kind',
    'jurisdiction',
    'homeRealm',
    'claimMapping',
    'enabled',
    'storeProfile',
    'tokenEndpointAuthMethod',
    'useUserinfo',
  ])
    if (view[key] !== undefined && view[key] !== null) body[key] = view[key];
  return body;
}

export function federationBody(form: RawForm): {
  id: string;
  values: FormValues;
  body: Record<string, unknown>;
  errors: FieldErrors;
} {
  const errors: FieldErrors = {};
  const values: FormValues = {
    id: text(form, 'id'),
    displayName: text(form, 'displayName'),
    issuer: text(form, 'issuer'),
    clientId: text(form, 'clientId'),
    scopes: text(form, 'scopes'),
    kind: text(form, 'kind'),
    jurisdiction: text(form, 'jurisdiction').toUpperCase(),
    emailDomains: text(form, 'emailDomains'),
    countries: text(form, 'countries').toUpperCase(),
    claimMapping: text(form, 'claimMapping'),
    enabled: flag(form, 'enabled'),
    storeProfile: flag(form, 'storeProfile'),
    tokenEndpointAuthMethod: text(form, 'tokenEndpointAuthMethod') || 'client_secret_basic',
    useUserinfo: flag(form, 'useUserinfo'),
  };
  const body: Record<string, unknown> = {
    displayName: values.displayName,
    issuer: values.issuer,
    clientId: values.clientId,
    kind: values.kind,
    enabled: values.enabled,
    storeProfile: values.storeProfile,
    tokenEndpointAuthMethod: values.tokenEndpointAuthMethod,
    useUserinfo: values.useUserinfo,
  };
  const secret = text(form, 'clientSecret');
  if (secret) body.clientSecret = secret;
  if (values.jurisdiction) body.jurisdiction = values.jurisdiction;
  const scopes = words(values.scopes as string);
  if (scopes.length) body.scopes = scopes;
  const emailDomains = words(values.emailDomains as string);
  const countries = words(values.countries as string);
  if (emailDomains.length || countries.length)
    body.homeRealm = {
      ...(emailDomains.length ? { emailDomains } : {}),
      ...(countries.length ? { countries } : {}),
    };
  const mapping = parseJsonField(values.claimMapping as string, 'claimMapping', errors);
  if (mapping) body.claimMapping = mapping;
  if (!values.id) (errors.id ??= []).push('is required');
  return { id: values.id as string, values, body, errors };
}

// ---- clients

export const CLIENT_GRANT_TYPES = [
  { value: 'authorization_code', label: 'Authorization code (people, with PKCE)' },
  { value: 'refresh_token', label: 'Refresh token' },
  { value: 'client_credentials', label: 'Client credentials (a service acting for itself)' },
  { value: 'urn:ietf:params:oauth:grant-type:token-exchange', label: 'Token exchange (RFC 8693)' },
];

export const CLIENT_FIELDS: Record<string, string> = {
  'client id': 'client_id',
  client_id: 'client_id',
  client_secret: 'client_secret',
  client_name: 'client_name',
  application_type: 'application_type',
  redirect_uris: 'redirect_uris',
  post_logout_redirect_uris: 'post_logout_redirect_uris',
  grant_types: 'grant_types',
  response_types: 'grant_types',
  token_endpoint_auth_method: 'token_endpoint_auth_method',
  scope: 'scope',
  resources: 'resources',
  subject_type: 'subject_type',
  dpop_bound_access_tokens: 'dpop_bound_access_tokens',
  tls_client_certificate_bound_access_tokens: 'tls_client_certificate_bound_access_tokens',
  tls_client_auth_subject_dn: 'tls_client_auth_subject_dn',
  jwks: 'client_id',
};

export const CLIENT_LABELS: Record<string, string> = {
  client_id: 'Client id',
  client_secret: 'Client secret',
  client_name: 'Name',
  application_type: 'Application type',
  redirect_uris: 'Redirect URIs',
  post_logout_redirect_uris: 'Post-logout redirect URIs',
  grant_types: 'Grant types',
  token_endpoint_auth_method: 'Client authentication',
  scope: 'Scopes',
  resources: 'Resources (audiences)',
  subject_type: 'Subject type',
  dpop_bound_access_tokens: 'Require DPoP',
  tls_client_certificate_bound_access_tokens: 'Certificate-bound access tokens',
  tls_client_auth_subject_dn: 'Certificate subject DN',
};

export function clientForm(view: Record<string, unknown>): FormValues {
  const arr = (k: string) => ((view[k] as string[] | undefined) ?? []).join('\n');
  return {
    client_id: String(view.client_id ?? ''),
    client_name: String(view.client_name ?? ''),
    application_type: String(view.application_type ?? 'web'),
    redirect_uris: arr('redirect_uris'),
    post_logout_redirect_uris: arr('post_logout_redirect_uris'),
    grant_types: (view.grant_types as string[] | undefined) ?? [],
    token_endpoint_auth_method: String(view.token_endpoint_auth_method ?? 'client_secret_basic'),
    scope: String(view.scope ?? ''),
    resources: arr('resources'),
    subject_type: String(view.subject_type ?? 'public'),
    dpop_bound_access_tokens: view.dpop_bound_access_tokens === true,
    tls_client_certificate_bound_access_tokens: view.tls_client_certificate_bound_access_tokens === true,
    tls_client_auth_subject_dn: String(view.tls_client_auth_subject_dn ?? ''),
  };
}

export function clientBody(
  form: RawForm,
  existing?: Record<string, unknown>,
): { id: string; values: FormValues; body: Record<string, unknown>; errors: FieldErrors } {
  const errors: FieldErrors = {};
  const values: FormValues = {
    client_id: text(form, 'client_id'),
    client_name: text(form, 'client_name'),
    application_type: text(form, 'application_type') || 'web',
    redirect_uris: text(form, 'redirect_uris'),
    post_logout_redirect_uris: text(form, 'post_logout_redirect_uris'),
    grant_types: list(form, 'grant_types'),
    token_endpoint_auth_method: text(form, 'token_endpoint_auth_method'),
    scope: text(form, 'scope'),
    resources: text(form, 'resources'),
    subject_type: text(form, 'subject_type') || 'public',
    dpop_bound_access_tokens: flag(form, 'dpop_bound_access_tokens'),
    tls_client_certificate_bound_access_tokens: flag(form, 'tls_client_certificate_bound_access_tokens'),
    tls_client_auth_subject_dn: text(form, 'tls_client_auth_subject_dn'),
  };
  const grantTypes = values.grant_types as string[];
  const body: Record<string, unknown> = {
    redirect_uris: lines(values.redirect_uris as string),
    grant_types: grantTypes,
    response_types: grantTypes.includes('authorization_code') ? ['code'] : [],
    token_endpoint_auth_method: values.token_endpoint_auth_method,
    application_type: values.application_type,
    subject_type: values.subject_type,
    resources: lines(values.resources as string),
    dpop_bound_access_tokens: values.dpop_bound_access_tokens,
    tls_client_certificate_bound_access_tokens: values.tls_client_certificate_bound_access_tokens,
  };
  const postLogout = lines(values.post_logout_redirect_uris as string);
  if (postLogout.length) body.post_logout_redirect_uris = postLogout;
  if (values.client_name) body.client_name = values.client_name;
  if (values.scope) body.scope = words(values.scope as string).join(' ');
  if (values.tls_client_auth_subject_dn) body.tls_client_auth_subject_dn = values.tls_client_auth_subject_dn;
  const secret = text(form, 'client_secret');
  if (secret) body.client_secret = secret;
  // Registered public keys are not edited here; an update keeps them.
  if (existing?.jwks) body.jwks = existing.jwks;
  if (!values.client_id) (errors.client_id ??= []).push('is required');
  if (!grantTypes.length) (errors.grant_types ??= []).push('choose at least one');
  return { id: values.client_id as string, values, body, errors };
}

// ---- resources

export const RESOURCE_FIELDS: Record<string, string> = {
  'resource id': 'id',
  audience: 'audience',
  scopes: 'scopes',
  region: 'region',
  accessTokenTtlSeconds: 'accessTokenTtlSeconds',
  clientId: 'clientId',
  encryptionJwk: 'encryptionJwk',
};

export const RESOURCE_LABELS: Record<string, string> = {
  id: 'Resource id',
  audience: 'Audience',
  scopes: 'Scopes',
  region: 'Region',
  accessTokenTtlSeconds: 'Access token lifetime (seconds)',
  clientId: 'The service’s own client id',
  encryptionJwk: 'Encryption key (public JWK)',
};

export function resourceForm(view: Record<string, unknown>): FormValues {
  return {
    id: String(view.id ?? ''),
    audience: String(view.audience ?? ''),
    scopes: ((view.scopes as string[] | undefined) ?? []).join(' '),
    region: String(view.region ?? ''),
    accessTokenTtlSeconds: view.accessTokenTtlSeconds === undefined ? '' : String(view.accessTokenTtlSeconds),
    clientId: String(view.clientId ?? ''),
    encryptionJwk: view.encryptionJwk ? JSON.stringify(view.encryptionJwk, null, 2) : '',
  };
}

export function resourceBody(form: RawForm): {
  id: string;
  values: FormValues;
  body: Record<string, unknown>;
  errors: FieldErrors;
} {
  const errors: FieldErrors = {};
  const values: FormValues = {
    id: text(form, 'id'),
    audience: text(form, 'audience'),
    scopes: text(form, 'scopes'),
    region: text(form, 'region'),
    accessTokenTtlSeconds: text(form, 'accessTokenTtlSeconds'),
    clientId: text(form, 'clientId'),
    encryptionJwk: text(form, 'encryptionJwk'),
  };
  const body: Record<string, unknown> = {
    audience: values.audience,
    scopes: words(values.scopes as string),
    region: values.region,
  };
  const ttl = values.accessTokenTtlSeconds as string;
  if (ttl) {
    if (/^\d+$/.test(ttl)) body.accessTokenTtlSeconds = Number(ttl);
    else (errors.accessTokenTtlSeconds ??= []).push('must be a whole number of seconds');
  }
  if (values.clientId) body.clientId = values.clientId;
  const jwk = parseJsonField(values.encryptionJwk as string, 'encryptionJwk', errors);
  if (jwk) body.encryptionJwk = jwk;
  if (!values.id) (errors.id ??= []).push('is required');
  return { id: values.id as string, values, body, errors };
}

/** `datetime-local` input (read as UTC) → ISO 8601; undefined when empty or not a date. */
export function utcDateTime(value: string): string | undefined {
  if (!value) return undefined;
  const withZone = /[zZ]|[+-]\d\d:\d\d$/.test(value) ? value : `${value}Z`;
  const d = new Date(withZone);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}
