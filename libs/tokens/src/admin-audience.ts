/** The admin API's own audience: every broker issues tokens for it to admin clients. */
export const ADMIN_AUDIENCE = 'urn:meridian:admin';
export const ADMIN_SCOPES = ['meridian:admin', 'meridian:compliance'] as const;
export type AdminScope = (typeof ADMIN_SCOPES)[number];

/**
 * The console of a region's broker: a built-in client of that broker, provisioned at start
 * (never through the admin API), whose people get admin scopes only by the role mapping.
 */
export const CONSOLE_CLIENT_PREFIX = 'meridian-console-';
export const consoleClientId = (region: string) => `${CONSOLE_CLIENT_PREFIX}${region}`;

/**
 * Security events reported by sidecars to their broker (POST /security/events): a built-in
 * audience, reached only by client_credentials tokens of clients registered for it.
 */
export const SECURITY_EVENTS_AUDIENCE = 'urn:meridian:security-events';
export const SECURITY_REPORT_SCOPE = 'meridian:security:report';
