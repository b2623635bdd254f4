/**
 * `MERIDIAN_CONSOLE_ROLES`: which people hold the roles `meridian:admin` and
 * `meridian:compliance` (the admin audience's scopes). Pure — parsed and validated once at boot,
 * so a bad mapping stops the process with one line naming the variable.
 *
 * ```json
 * { "meridian:admin": { "subjects": ["<sub>"], "emails": ["ops@example.com"], "groups": ["corp-sso:meridian-admins"] },
 *   "meridian:compliance": { "emails": ["dpo@example.com"] } }
 * ```
 *
 * - `subjects`: Meridian `sub` values (pseudonymous, the same in every region).
 * - `emails`: matched only when the identity provider says `email_verified: true`; compared
 *   case-insensitively.
 * - `groups`: `<federation id>:<group>` — a group counts only when the federation it is named
 *   with asserted it (a group name alone could be claimed by any identity provider).
 */
export const CONSOLE_ROLE_NAMES = ['meridian:admin', 'meridian:compliance'] as const;
export type ConsoleRoleName = (typeof CONSOLE_ROLE_NAMES)[number];

export interface ConsoleRoleRule {
  subjects: string[];
  /** Lower case. */
  emails: string[];
  /** `<federation id>:<group>`. */
  groups: string[];
}

export type ConsoleRoleMapping = Readonly<Partial<Record<ConsoleRoleName, Readonly<ConsoleRoleRule>>>>;

const RULE_KEYS = new Set(['subjects', 'emails', 'groups']);
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;
const FEDERATION_ID = /^[A-Za-z0-9._~-]{1,64}$/;
const MAX_ENTRIES = 1000;

export type ConsoleRolesResult = { ok: true; mapping: ConsoleRoleMapping } | { ok: false; message: string };

/** Parses the variable's value; `undefined` or blank means nobody holds a role. */
export function parseConsoleRoles(raw: string | undefined): ConsoleRolesResult {
  if (raw === undefined || raw.trim() === '') return { ok: true, mapping: {} };
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    return { ok: false, message: 'is not valid JSON' };
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    return { ok: false, message: 'must be a JSON object keyed by role' };
  const mapping: Partial<Record<ConsoleRoleName, ConsoleRoleRule>> = {};
  for (const [role, value] of Object.entries(doc)) {
    if (!(CONSOLE_ROLE_NAMES as readonly string[]).includes(role))
      return {
        ok: false,
        message: `names an unknown role "${role}" (roles: ${CONSOLE_ROLE_NAMES.join(', ')})`,
      };
    if (!value || typeof value !== 'object' || Array.isArray(value))
      return { ok: false, message: `${role} must be an object with subjects, emails and/or groups` };
    const rule: ConsoleRoleRule = { subjects: [], emails: [], groups: [] };
    for (const [key, list] of Object.entries(value as Record<string, unknown>)) {
      if (!RULE_KEYS.has(key))
        return { ok: false, message: `${role}.${key} is not known (subjects, emails, groups)` };
      if (!Array.isArray(list) || list.length > MAX_ENTRIES)
        return { ok: false, message: `${role}.${key} must be an array of at most ${MAX_ENTRIES} strings` };
      for (const [i, entry] of list.entries()) {
        const at = `${role}.${key}[${i}]`;
        if (typeof entry !== 'string' || entry.trim() === '' || entry.length > 320)
          return { ok: false, message: `${at} must be a non-empty string` };
        const v = entry.trim();
        if (key === 'emails') {
          if (!EMAIL.test(v)) return { ok: false, message: `${at} is not an email address` };
          rule.emails.push(v.toLowerCase());
        } else if (key === 'groups') {
          const sep = v.indexOf(':');
          if (sep < 1 || sep === v.length - 1 || !FEDERATION_ID.test(v.slice(0, sep)))
            return {
              ok: false,
              message: `${at} must be "<federation id>:<group>", e.g. corp-sso:meridian-admins`,
            };
          rule.groups.push(v);
        } else {
          rule.subjects.push(v);
        }
      }
    }
    mapping[role as ConsoleRoleName] = Object.freeze(rule);
  }
  return { ok: true, mapping: Object.freeze(mapping) };
}
