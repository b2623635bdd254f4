/**
 * `@meridian/verifier` — verifying Meridian access tokens in any Node service. The core depends
 * on `jose` and Node built-ins only; the NestJS guard lives in `./nest` (import it from there so
 * non-Nest services do not load Nest).
 */
export { createVerifier, type Verifier } from './verifier';
export {
  DPOP_ALGORITHMS,
  VERIFIER_ERROR_CODES,
  VerifierError,
  verifierErrorResponse,
  type OAuthResourceError,
  type VerifierErrorCode,
  type VerifierErrorResponse,
} from './errors';
export { readCredentials, type PresentedCredentials } from './authorization-header';
export {
  SECURITY_EVENTS_AUDIENCE,
  SECURITY_REPORT_SCOPE,
  SecurityReporter,
  type ReportLogger,
  type ReportedSecurityEvent,
  type SecurityReportConfig,
} from './security-report';
export { certificateThumbprint } from './certificate-binding';
export type {
  AccessTokenClaims,
  BundleStatus,
  DpopReplayStore,
  Residency,
  TrustedIssuer,
  VerifiedToken,
  VerifierOptions,
  VerifyOptions,
} from './types';
