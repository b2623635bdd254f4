/**
 * Who holds a console role: pure, no Nest or database. Applied by the broker when it grants the
 * admin audience's scopes to a person (the consent step of any authorization request), so a
 * person without the role never gets the scope and the admin API's own 403 holds.
 */
import { CONSOLE_ROLE_NAMES, type ConsoleRoleMapping, type ConsoleRoleName } from '@meridian/config';

/** What is known about the person at the sign-in that asks for the scopes. */
export interface RolePrincipal {
  /** Meridian's `sub`. */
  sub: string;
  /** The federation the person came through, when known. */
  federationId?: string;
  /** The identity provider's claims at that sign-in (`email`, `email_verified`, `groups`). */
  claims?: Record<string, unknown>;
}

function groupsOf(claims: Record<string, unknown> | undefined): string[] {
  const value = claims?.groups;
  if (typeof value === 'string') return [value];
  return Array.isArray(value) ? value.filter((g): g is string => typeof g === 'string') : [];
}

/**
 * The roles `principal` holds under `mapping`. Emails count only when the identity provider
 * verified them (`email_verified: true`); groups only as `<federation>:<group>` of the federation
 * the person came through.
 */
export function adminRolesFor(mapping: ConsoleRoleMapping, principal: RolePrincipal): ConsoleRoleName[] {
  const claims = principal.claims ?? {};
  const email =
    claims.email_verified === true && typeof claims.email === 'string'
      ? claims.email.trim().toLowerCase()
      : undefined;
  const groups = principal.federationId ? groupsOf(claims).map((g) => `${principal.federationId}:${g}`) : [];
  const held: ConsoleRoleName[] = [];
  for (const role of CONSOLE_ROLE_NAMES) {
    const rule = mapping[role];
    if (!rule) continue;
    if (
      rule.subjects.includes(principal.sub) ||
      (email !== undefined && rule.emails.includes(email)) ||
      groups.some((g) => rule.groups.includes(g))
    )
      held.push(role);
  }
  return held;
}
