/** Domain errors of the admin/compliance API; one filter maps the codes to HTTP answers. */
export type AdminErrorCode =
  | 'ERR_INVALID_BODY'
  | 'ERR_NOT_FOUND'
  | 'ERR_UNKNOWN_REGION'
  | 'ERR_UNKNOWN_RESOURCE'
  | 'ERR_INVALID_CLIENT_METADATA'
  | 'ERR_PROTECTED'
  | 'ERR_UNPROCESSABLE'
  | 'ERR_NOT_HOME'
  /** The change conflicts with the resource's state (e.g. a secret rotation already in its overlap). */
  | 'ERR_CONFLICT';

export class AdminError extends Error {
  constructor(
    readonly code: AdminErrorCode,
    message: string,
    /** Extra members of the JSON answer (e.g. `home_region`, field `errors`). */
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'AdminError';
  }
}

export function adminErrorStatus(code: AdminErrorCode): { status: number; error: string } {
  switch (code) {
    case 'ERR_INVALID_BODY':
    case 'ERR_UNKNOWN_REGION':
    case 'ERR_UNKNOWN_RESOURCE':
    case 'ERR_INVALID_CLIENT_METADATA':
      return { status: 400, error: 'invalid_request' };
    case 'ERR_NOT_FOUND':
      return { status: 404, error: 'not_found' };
    case 'ERR_PROTECTED':
    case 'ERR_CONFLICT':
      return { status: 409, error: 'conflict' };
    case 'ERR_UNPROCESSABLE':
      return { status: 422, error: 'unprocessable_entity' };
    case 'ERR_NOT_HOME':
      return { status: 404, error: 'not_found' };
    default: {
      const exhaustive: never = code;
      throw new Error(`unmapped admin error ${String(exhaustive)}`);
    }
  }
}
