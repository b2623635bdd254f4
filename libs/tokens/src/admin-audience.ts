/** The admin API's own audience: every broker issues tokens for it to admin clients. */
export const ADMIN_AUDIENCE = 'urn:meridian:admin';
export const ADMIN_SCOPES = ['meridian:admin', 'meridian:compliance'] as const;
export type AdminScope = (typeof ADMIN_SCOPES)[number];
