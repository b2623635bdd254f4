/**
 * The one decision both modes share (proxy and Envoy ext_authz): read the credentials, verify
 * the token for this request (scopes of the route, residency, DPoP), and either name the
 * identity to forward or say exactly how to refuse.
 */
import type { IncomingHttpHeaders } from 'node:http';
import {
  VerifierError,
  readCredentials,
  verifierErrorResponse,
  type Verifier,
  type VerifiedToken,
  type VerifyOptions,
} from '@meridian/verifier';
import { identityHeaders } from './headers';
import type { DenyReason } from './metrics';
import { canonicalPath, requiredScopesFor, type RouteRule } from './routes';

export interface AuthorizationPolicy {
  requiredScopes: readonly string[];
  routes: readonly RouteRule[];
  region: string | undefined;
}

export interface CheckedRequest {
  method: string;
  /** Path and query as the client sent them. */
  target: string;
  headers: IncomingHttpHeaders;
  /**
   * The URL the client called, for the DPoP `htu` check (RFC 9449 §4.3): computed lazily, only
   * when a proof is presented.
   */
  publicUrl: () => string;
  /** The client certificate of the TLS connection (DER), when the sidecar terminates TLS. */
  clientCertificate?: Buffer;
}

export interface Refusal {
  status: number;
  headers: Record<string, string>;
  body: { error?: string; error_description: string; code?: string };
}

export type Decision =
  | { allowed: true; token: VerifiedToken; identity: Readonly<Record<string, string>> }
  | { allowed: false; reason: DenyReason; refusal: Refusal; detail?: string };

export async function authorize(
  verifier: Verifier,
  policy: AuthorizationPolicy,
  req: CheckedRequest,
): Promise<Decision> {
  const path = canonicalPath(req.target);
  if (!path.ok) {
    return {
      allowed: false,
      reason: 'ERR_REQUEST_PATH',
      refusal: {
        status: 400,
        headers: {},
        body: { error: 'invalid_request', error_description: path.reason, code: 'ERR_REQUEST_PATH' },
      },
    };
  }
  try {
    const credentials = readCredentials(req.headers.authorization, req.headers.dpop);
    const opts: VerifyOptions = {
      requiredScopes: requiredScopesFor(policy.routes, policy.requiredScopes, req.method, path.path),
    };
    if (policy.region !== undefined) opts.region = policy.region;
    if (req.clientCertificate) opts.clientCertificate = req.clientCertificate;
    if (credentials?.scheme === 'DPoP') {
      opts.dpop = { proof: credentials.proof ?? '', method: req.method, url: req.publicUrl() };
    }
    const token = await verifier.verify(credentials?.token, opts);
    return { allowed: true, token, identity: identityHeaders(token) };
  } catch (err) {
    if (!(err instanceof VerifierError)) throw err;
    const { status, headers, body } = verifierErrorResponse(err);
    return { allowed: false, reason: err.code, refusal: { status, headers, body }, detail: err.detail };
  }
}
