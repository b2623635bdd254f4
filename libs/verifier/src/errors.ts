/**
 * The verifier's one error type. Every refusal carries a stable `code`; the HTTP status, the
 * OAuth error and the `WWW-Authenticate` challenge are derived from the code in exactly one
 * place ({@link verifierErrorResponse}), so the guard, the sidecar and any hand-written
 * adapter answer the same way.
 */

/**
 * Stable codes for every way a token can be refused.
 *
 * @example
 * ```ts
 * import { VerifierError, type VerifierErrorCode } from '@meridian/verifier';
 *
 * function isClientFault(code: VerifierErrorCode): boolean {
 *   return code !== 'ERR_TRUST_UNAVAILABLE';
 * }
 * ```
 */
export type VerifierErrorCode =
  | 'ERR_TOKEN_MISSING'
  | 'ERR_TOKEN_MALFORMED'
  | 'ERR_TOKEN_TOO_LARGE'
  | 'ERR_TOKEN_ALG'
  | 'ERR_TOKEN_HEADER'
  | 'ERR_TOKEN_SIGNATURE'
  | 'ERR_TOKEN_ISSUER'
  | 'ERR_TOKEN_AUDIENCE'
  | 'ERR_TOKEN_EXPIRED'
  | 'ERR_TOKEN_NOT_YET_VALID'
  | 'ERR_TOKEN_TYPE'
  | 'ERR_TOKEN_INACTIVE'
  | 'ERR_TOKEN_BINDING'
  | 'ERR_DPOP_INVALID'
  | 'ERR_DPOP_REPLAY'
  | 'ERR_INSUFFICIENT_SCOPE'
  | 'ERR_RESIDENCY_PROCESSING'
  | 'ERR_TRUST_UNAVAILABLE';

/**
 * Every code, for exhaustive tests and metrics labels.
 *
 * @example
 * ```ts
 * import { VERIFIER_ERROR_CODES } from '@meridian/verifier';
 *
 * for (const code of VERIFIER_ERROR_CODES) deniedCounter.labels(code).inc(0);
 * ```
 */
export const VERIFIER_ERROR_CODES: readonly VerifierErrorCode[] = Object.freeze([
  'ERR_TOKEN_MISSING',
  'ERR_TOKEN_MALFORMED',
  'ERR_TOKEN_TOO_LARGE',
  'ERR_TOKEN_ALG',
  'ERR_TOKEN_HEADER',
  'ERR_TOKEN_SIGNATURE',
  'ERR_TOKEN_ISSUER',
  'ERR_TOKEN_AUDIENCE',
  'ERR_TOKEN_EXPIRED',
  'ERR_TOKEN_NOT_YET_VALID',
  'ERR_TOKEN_TYPE',
  'ERR_TOKEN_INACTIVE',
  'ERR_TOKEN_BINDING',
  'ERR_DPOP_INVALID',
  'ERR_DPOP_REPLAY',
  'ERR_INSUFFICIENT_SCOPE',
  'ERR_RESIDENCY_PROCESSING',
  'ERR_TRUST_UNAVAILABLE',
] as const);

/**
 * The `error` value of the challenge: RFC 6750 §3.1 (`invalid_token`, `insufficient_scope`),
 * RFC 9449 §7.1 (`invalid_dpop_proof`), or none at all (RFC 6750 §3.1: a request without
 * credentials gets no error code; a verifier that cannot tell gets none either).
 *
 * @example
 * ```ts
 * import type { OAuthResourceError } from '@meridian/verifier';
 *
 * const retryable = (e: OAuthResourceError | undefined) => e === undefined;
 * ```
 */
export type OAuthResourceError = 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof';

/**
 * The HTTP answer for a refusal: status, challenge and the JSON body a client may see.
 *
 * @example
 * ```ts
 * import { verifierErrorResponse, VerifierError } from '@meridian/verifier';
 *
 * const r = verifierErrorResponse(new VerifierError('ERR_TOKEN_EXPIRED', 'the access token has expired'));
 * // r.status === 401, r.headers['www-authenticate'] === 'Bearer error="invalid_token", error_description="the access token has expired"'
 * ```
 */
export interface VerifierErrorResponse {
  status: 401 | 403 | 503;
  headers: Record<string, string>;
  body: { error?: OAuthResourceError; error_description: string; code: VerifierErrorCode };
}

/**
 * Algorithms a DPoP proof may use; advertised in the `algs` parameter of DPoP challenges
 * (RFC 9449 §7.1).
 *
 * @example
 * ```ts
 * import { DPOP_ALGORITHMS } from '@meridian/verifier';
 *
 * DPOP_ALGORITHMS.includes('ES256'); // true
 * ```
 */
export const DPOP_ALGORITHMS: readonly string[] = Object.freeze([
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
  'RS256',
  'RS384',
  'RS512',
  'EdDSA',
  'Ed25519',
]);

/**
 * A token, proof or trust problem. Thrown by {@link Verifier.verify}; never an HTTP exception
 * (the Nest guard and the sidecar map it with {@link verifierErrorResponse}).
 *
 * `description` is safe to show the client; `detail` (and `cause`) are for logs only and may
 * quote attacker-controlled values (truncated, JSON-escaped).
 *
 * @example
 * ```ts
 * import { VerifierError } from '@meridian/verifier';
 *
 * try {
 *   await verifier.verify(token, { requiredScopes: ['orders:read'] });
 * } catch (err) {
 *   if (err instanceof VerifierError) {
 *     res.status(err.status).set('WWW-Authenticate', err.wwwAuthenticate()).json({ code: err.code });
 *   } else throw err;
 * }
 * ```
 */
export class VerifierError extends Error {
  override readonly name = 'VerifierError';
  /** HTTP status the refusal maps to. */
  readonly status: 401 | 403 | 503;
  /** Challenge scheme: `DPoP` when the token is DPoP-bound or was presented with a proof. */
  readonly scheme: 'Bearer' | 'DPoP';
  /** Scopes the route needed (for `insufficient_scope` challenges). */
  readonly requiredScopes: readonly string[] | undefined;
  /** For 503: how long a client should wait before retrying. */
  readonly retryAfterSeconds: number | undefined;
  /** Log-only context (never sent to the client). */
  readonly detail: string | undefined;

  constructor(
    readonly code: VerifierErrorCode,
    /** What the client may read (`error_description`). */
    readonly description: string,
    options: {
      detail?: string;
      cause?: unknown;
      scheme?: 'Bearer' | 'DPoP';
      requiredScopes?: readonly string[];
      retryAfterSeconds?: number;
    } = {},
  ) {
    super(options.detail ? `${description} (${options.detail})` : description, { cause: options.cause });
    this.status = statusOf(code);
    this.scheme = options.scheme ?? 'Bearer';
    this.requiredScopes = options.requiredScopes;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.detail = options.detail;
  }

  /** The OAuth `error` value (undefined: no error attribute in the challenge). */
  get oauthError(): OAuthResourceError | undefined {
    return oauthErrorOf(this.code);
  }

  /** The `WWW-Authenticate` value for this refusal (RFC 6750 §3, RFC 9449 §7.1). */
  wwwAuthenticate(): string {
    const params: string[] = [];
    const error = this.oauthError;
    if (error) params.push(`error="${error}"`);
    if (this.code !== 'ERR_TOKEN_MISSING') params.push(`error_description="${quotable(this.description)}"`);
    if (this.code === 'ERR_INSUFFICIENT_SCOPE' && this.requiredScopes?.length) {
      params.push(`scope="${quotable(this.requiredScopes.join(' '))}"`);
    }
    if (this.scheme === 'DPoP') params.push(`algs="${DPOP_ALGORITHMS.join(' ')}"`);
    return params.length ? `${this.scheme} ${params.join(', ')}` : this.scheme;
  }

  /** A plain object for structured logs: code, status and detail, never the token. */
  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      status: this.status,
      description: this.description,
      detail: this.detail,
    };
  }
}

function statusOf(code: VerifierErrorCode): 401 | 403 | 503 {
  switch (code) {
    case 'ERR_TOKEN_MISSING':
    case 'ERR_TOKEN_MALFORMED':
    case 'ERR_TOKEN_TOO_LARGE':
    case 'ERR_TOKEN_ALG':
    case 'ERR_TOKEN_HEADER':
    case 'ERR_TOKEN_SIGNATURE':
    case 'ERR_TOKEN_ISSUER':
    case 'ERR_TOKEN_AUDIENCE':
    case 'ERR_TOKEN_EXPIRED':
    case 'ERR_TOKEN_NOT_YET_VALID':
    case 'ERR_TOKEN_TYPE':
    case 'ERR_TOKEN_INACTIVE':
    case 'ERR_TOKEN_BINDING':
    case 'ERR_DPOP_INVALID':
    case 'ERR_DPOP_REPLAY':
      return 401;
    // RFC 6750 §3.1: the token is fine, the request needs more than it grants.
    case 'ERR_INSUFFICIENT_SCOPE':
    case 'ERR_RESIDENCY_PROCESSING':
      return 403;
    // The token may well be valid; this service cannot tell yet. Fails closed, but says so
    // honestly: a 401 would send clients to fetch new tokens that fail the same way.
    case 'ERR_TRUST_UNAVAILABLE':
      return 503;
    default:
      return unreachable(code);
  }
}

function oauthErrorOf(code: VerifierErrorCode): OAuthResourceError | undefined {
  switch (code) {
    // RFC 6750 §3.1: "If the request lacks any authentication information … SHOULD NOT include
    // an error code".
    case 'ERR_TOKEN_MISSING':
    case 'ERR_TRUST_UNAVAILABLE':
      return undefined;
    case 'ERR_TOKEN_MALFORMED':
    case 'ERR_TOKEN_TOO_LARGE':
    case 'ERR_TOKEN_ALG':
    case 'ERR_TOKEN_HEADER':
    case 'ERR_TOKEN_SIGNATURE':
    case 'ERR_TOKEN_ISSUER':
    case 'ERR_TOKEN_AUDIENCE':
    case 'ERR_TOKEN_EXPIRED':
    case 'ERR_TOKEN_NOT_YET_VALID':
    case 'ERR_TOKEN_TYPE':
    case 'ERR_TOKEN_INACTIVE':
    case 'ERR_TOKEN_BINDING':
      return 'invalid_token';
    // RFC 9449 §7.1.
    case 'ERR_DPOP_INVALID':
    case 'ERR_DPOP_REPLAY':
      return 'invalid_dpop_proof';
    // Residency refusals reuse insufficient_scope (the standard "this token does not allow this
    // request" error, so generic clients do not retry with the same token); the distinct code
    // and an error_description starting with "residency:" tell them apart.
    case 'ERR_INSUFFICIENT_SCOPE':
    case 'ERR_RESIDENCY_PROCESSING':
      return 'insufficient_scope';
    default:
      return unreachable(code);
  }
}

/**
 * Maps a refusal to its HTTP answer: status, `WWW-Authenticate` (and `Retry-After` for 503),
 * and a JSON body with `error`, `error_description` and the stable `code`.
 *
 * @example
 * ```ts
 * import { verifierErrorResponse, VerifierError } from '@meridian/verifier';
 *
 * server.on('request', async (req, res) => {
 *   try {
 *     await verifier.verify(bearer(req));
 *   } catch (err) {
 *     if (!(err instanceof VerifierError)) throw err;
 *     const { status, headers, body } = verifierErrorResponse(err);
 *     res.writeHead(status, { ...headers, 'content-type': 'application/json' }).end(JSON.stringify(body));
 *   }
 * });
 * ```
 */
export function verifierErrorResponse(err: VerifierError): VerifierErrorResponse {
  const headers: Record<string, string> = { 'www-authenticate': err.wwwAuthenticate() };
  if (err.status === 503)
    headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterSeconds ?? 30)));
  const body: VerifierErrorResponse['body'] = { error_description: err.description, code: err.code };
  if (err.oauthError) body.error = err.oauthError;
  return { status: err.status, headers, body };
}

/** RFC 6750 §3: error_description and scope use %x20-21 / %x23-5B / %x5D-7E only. */
function quotable(value: string): string {
  return value.replace(/[^\x20\x21\x23-\x5B\x5D-\x7E]/g, ' ');
}

/**
 * JSON-quoted and truncated, for log details that quote token contents.
 *
 * @internal
 * @example
 * ```ts
 * quoted('../../etc/passwd'); // '"../../etc/passwd"'
 * ```
 */
export function quoted(value: unknown, max = 80): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function unreachable(value: never): never {
  throw new Error(`unhandled verifier error code ${String(value)}`);
}
