/** Domain errors of the residency engine; callers map the codes, never the messages. */

/** One problem in a document, named by its path (`storageRegions[1]`, `release.byRegion.eu[0]`). */
export interface FieldError {
  field: string;
  message: string;
}

/**
 * - `ERR_RESIDENCY_NO_JURISDICTION`: neither the federation nor the upstream claims say which
 *   jurisdiction the subject is under.
 * - `ERR_RESIDENCY_NO_POLICY`: no residency policy covers the subject's jurisdiction.
 * - `ERR_RESIDENCY_AMBIGUOUS_POLICY`: more than one policy covers it with equal precedence; only
 *   possible with a policy set that bypassed `validatePolicy` (which refuses overlaps).
 * - `ERR_RESIDENCY_POLICY_INVALID`: a policy document failed validation (`errors` says where).
 */
export type ResidencyErrorCode =
  | 'ERR_RESIDENCY_NO_JURISDICTION'
  | 'ERR_RESIDENCY_NO_POLICY'
  | 'ERR_RESIDENCY_AMBIGUOUS_POLICY'
  | 'ERR_RESIDENCY_POLICY_INVALID';

/** The codes a subject decision can fail with (a subset of {@link ResidencyErrorCode}). */
export type DecisionErrorCode = Exclude<ResidencyErrorCode, 'ERR_RESIDENCY_POLICY_INVALID'>;

export class ResidencyError extends Error {
  constructor(
    readonly code: ResidencyErrorCode,
    message: string,
    /** Set for `ERR_RESIDENCY_POLICY_INVALID`: every problem found, not just the first. */
    readonly errors: readonly FieldError[] = [],
  ) {
    super(message);
    this.name = 'ResidencyError';
  }
}
