import { describe, expect, it } from 'vitest';
import { parseConsoleRoles, type ConsoleRoleMapping } from '@meridian/config';
import { adminRolesFor } from './roles';

function mapping(doc: unknown): ConsoleRoleMapping {
  const r = parseConsoleRoles(JSON.stringify(doc));
  if (!r.ok) throw new Error(r.message);
  return r.mapping;
}

const M = mapping({
  'meridian:admin': { subjects: ['sub-admin'], emails: ['ops@example.com'], groups: ['corp:admins'] },
  'meridian:compliance': { emails: ['dpo@example.com'], groups: ['corp:dpo'] },
});

describe('adminRolesFor', () => {
  it('nobody holds a role under an empty mapping', () => {
    expect(
      adminRolesFor({}, { sub: 'sub-admin', claims: { email: 'ops@example.com', email_verified: true } }),
    ).toEqual([]);
  });

  it('by Meridian sub', () => {
    expect(adminRolesFor(M, { sub: 'sub-admin' })).toEqual(['meridian:admin']);
    expect(adminRolesFor(M, { sub: 'someone-else' })).toEqual([]);
  });

  it('by a verified email, case-insensitively', () => {
    expect(
      adminRolesFor(M, { sub: 'x', claims: { email: 'DPO@example.com', email_verified: true } }),
    ).toEqual(['meridian:compliance']);
  });

  it('never by an email the identity provider did not verify', () => {
    for (const verified of [undefined, false, 'true', 1])
      expect(
        adminRolesFor(M, { sub: 'x', claims: { email: 'ops@example.com', email_verified: verified } }),
      ).toEqual([]);
  });

  it('by a group, only as asserted by the federation it is qualified with', () => {
    expect(
      adminRolesFor(M, { sub: 'x', federationId: 'corp', claims: { groups: ['admins', 'dpo'] } }),
    ).toEqual(['meridian:admin', 'meridian:compliance']);
    expect(adminRolesFor(M, { sub: 'x', federationId: 'corp', claims: { groups: 'dpo' } })).toEqual([
      'meridian:compliance',
    ]);
    // Another identity provider saying "admins" is not corp saying it.
    expect(adminRolesFor(M, { sub: 'x', federationId: 'social', claims: { groups: ['admins'] } })).toEqual(
      [],
    );
    // No federation known (e.g. a sign-in from an existing session): groups do not count.
    expect(adminRolesFor(M, { sub: 'x', claims: { groups: ['admins'] } })).toEqual([]);
  });

  it('ignores groups that are not strings', () => {
    expect(
      adminRolesFor(M, { sub: 'x', federationId: 'corp', claims: { groups: [{ name: 'admins' }] } }),
    ).toEqual([]);
  });
});
