/**
 * The canary property (issue 3, "What must be shown"): after a federated login, the databases
 * and the logs of every region but the person's home region — and the control plane — hold none
 * of the person's personal data; the home region's database does. The fixture's emails and names
 * are unique canary strings, so a plain substring search over a `pg_dump` and over a broker's log
 * output finds any copy, whatever the column or the log field.
 *
 * One login per federation kind: national (de-eid, DE → eu) started at us; global with
 * `country` (a US person) started at eu; global with `address.country` (an FR person) started at
 * us; regional (jurisdiction EU → eu) started at us. `storeProfile: false` is in federation-canary-no-profile.e2e.spec.ts (its own fixture).
 */
import { Client } from 'pg';
import { adminCall } from './support/broker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { ANNA, BOB, CARLA, FederationFixture, canariesOf, leaks } from './support/federation-fixture';
import type { UpstreamIdp, UpstreamUser } from './support/upstream-idp';

const f = new FederationFixture();
/** Every token the upstream IdPs' token endpoints handed to a broker. */
const upstreamTokens: string[] = [];
/** Every token and code the brokers handed to the apps. */
const appTokens: string[] = [];

beforeAll(async () => {
  await f.start('fedcanary', { logLevel: 'debug' });
  for (const idp of [f.de, f.global]) captureTokens(idp);
});

afterAll(async () => {
  await f.stop();
});

/** Records what the upstream's token endpoint answers (a broker must never log any of it). */
function captureTokens(idp: UpstreamIdp): void {
  // oidc-provider emits grant.success once the token response body is set.
  idp.provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    const body = ctx.body as Record<string, unknown> | undefined;
    for (const k of ['access_token', 'id_token', 'refresh_token'])
      if (typeof body?.[k] === 'string') upstreamTokens.push(body[k] as string);
  });
}

async function login(region: 'eu' | 'us', idpHint: string, user: UpstreamUser) {
  const r = await f.login(region, idpHint, user);
  if ('error' in r) throw new Error(`login of ${user.username} at ${region}: ${r.error}: ${r.description}`);
  const { access_token, id_token, refresh_token } = r.tokens;
  appTokens.push(access_token, id_token, ...(refresh_token ? [refresh_token] : []), r.params.get('code')!);
  return r;
}

/** Secrets either broker knows: none may appear in any log line. */
function secrets(): string[] {
  return [
    f.pepper,
    f.eu.env.MERIDIAN_KEK!,
    f.us.env.MERIDIAN_KEK!,
    f.eu.adminClientSecret,
    f.us.adminClientSecret,
    ...Object.values(f.upstreamSecrets),
    ...Object.values(f.apps).map((a) => a.clientSecret),
  ];
}

async function subjectRow(region: 'eu' | 'us', sub: string) {
  const db = new Client({ connectionString: f.regionUrl(region) });
  await db.connect();
  try {
    const { rows } = await db.query<{
      claims: Record<string, unknown>;
      home: boolean;
      store_profile: boolean;
      residency: unknown;
    }>('select claims, home, store_profile, residency from subject where sub = $1', [sub]);
    return rows[0];
  } finally {
    await db.end();
  }
}

interface Case {
  title: string;
  user: UpstreamUser;
  idp: () => UpstreamIdp;
  federation: string;
  startAt: 'eu' | 'us';
  home: 'eu' | 'us';
  jurisdiction: string;
  policy: string;
  /** Runs before the login (e.g. registers the federation). */
  setup?: () => Promise<void>;
}

/** A regional federation (jurisdiction EU) on the DE IdP, at both brokers with their own clients. */
async function registerRegionalFederation(): Promise<void> {
  for (const region of ['eu', 'us'] as const) {
    const r = await adminCall(f.broker(region), 'PUT', '/admin/federations/eu-regional', {
      displayName: 'EU regional ID',
      issuer: f.de.issuer,
      clientId: `meridian-${region}`,
      clientSecret: f.upstreamSecrets[`${region}:de-eid`],
      scopes: ['openid', 'email', 'profile'],
      kind: 'regional',
      jurisdiction: 'EU',
    });
    if (r.status !== 201 && r.status !== 200)
      throw new Error(`eu-regional at ${region}: ${r.status} ${JSON.stringify(r.body)}`);
  }
}

const cases: Case[] = [
  {
    title: 'a national IdP (de-eid, DE → home eu) used from an app at us',
    user: ANNA,
    idp: () => f.de,
    federation: 'de-eid',
    startAt: 'us',
    home: 'eu',
    jurisdiction: 'DE',
    policy: 'eu-gdpr@1',
  },
  {
    title: 'a global IdP, a person with country US (home us) starting at an eu app',
    user: BOB,
    idp: () => f.global,
    federation: 'global-id',
    startAt: 'eu',
    home: 'us',
    jurisdiction: 'US',
    policy: 'us-default@1',
  },
  {
    title: 'a global IdP, a person with address.country FR (home eu) starting at a us app',
    user: CARLA,
    idp: () => f.global,
    federation: 'global-id',
    startAt: 'us',
    home: 'eu',
    jurisdiction: 'FR',
    policy: 'eu-gdpr@1',
  },
  {
    title: 'a regional IdP (eu-regional, EU → home eu) used from an app at us',
    user: ANNA,
    idp: () => f.de,
    federation: 'eu-regional',
    startAt: 'us',
    home: 'eu',
    jurisdiction: 'EU',
    policy: 'eu-gdpr@1',
    setup: registerRegionalFederation,
  },
];

describe('the canary property: personal data only in the home region', () => {
  for (const c of cases) {
    describe(c.title, () => {
      const other = c.home === 'eu' ? 'us' : 'eu';
      let sub: string;
      let dumps: { control: string; eu: string; us: string };
      let canaries: string[];

      beforeAll(async () => {
        canaries = canariesOf(c.user, c.idp());
        await c.setup?.();
        const r = await login(c.startAt, c.federation, c.user);
        sub = r.idToken.sub!;
        expect(r.accessToken.residency).toEqual({
          region: c.home,
          jurisdiction: c.jurisdiction,
          policy: c.policy,
          processing: [c.home],
        });
        dumps = await f.dumps();
      });

      it(`keeps none of the person's data in the ${other} region database`, () => {
        expect(leaks(dumps[other], canaries)).toEqual([]);
      });

      it("keeps none of the person's data in the control database", () => {
        expect(leaks(dumps.control, canaries)).toEqual([]);
      });

      it(`writes none of the person's data to the ${other} broker's logs (LOG_LEVEL debug)`, () => {
        const logs = f.broker(other).output();
        // Debug level is on: every request the login made is in there.
        expect(logs).toContain('"level":"debug"');
        expect(logs).toContain('"path":"/federation/callback"');
        expect(leaks(logs, canaries)).toEqual([]);
      });

      it(`keeps at ${other} only the pseudonymous sub and the residency decision`, async () => {
        const row = await subjectRow(other, sub);
        // A login that started at the home region itself leaves no row elsewhere at all.
        if (c.startAt === c.home) expect(row).toBeUndefined();
        else
          expect(row).toMatchObject({
            claims: {},
            home: false,
            store_profile: false,
            residency: { region: c.home, jurisdiction: c.jurisdiction, policy: c.policy },
          });
      });

      it(`names the person in the ${other} audit trail and logs by a pseudonym only (pseudonymiseForeignLogs)`, async () => {
        const db = new Client({ connectionString: f.regionUrl(other) });
        await db.connect();
        try {
          const { rows } = await db.query<{ action: string; target_id: string | null }>(
            `select action, target_id from audit_event where target_id = $1 or actor = $1 or detail::text like '%' || $1 || '%'`,
            [sub],
          );
          expect(rows).toEqual([]);
          const { rows: handedOff } = await db.query<{ target_id: string }>(
            `select target_id from audit_event where action = 'subject.login.handed-off'`,
          );
          if (c.startAt !== c.home) {
            expect(handedOff.length).toBeGreaterThanOrEqual(1);
            for (const r of handedOff) expect(r.target_id).toMatch(/^log_/);
          }
        } finally {
          await db.end();
        }
        expect(leaks(f.broker(other).output(), [sub])).toEqual([]);
      });

      it(`keeps the profile in the ${c.home} (home) region database — positive control`, async () => {
        const email = c.user.claims.email as string;
        const name = c.user.claims.name as string;
        expect(dumps[c.home]).toContain(email);
        expect(dumps[c.home]).toContain(name);
        expect((await subjectRow(c.home, sub))?.claims).toMatchObject({ email, name });
      });

      it('links the account by a keyed pseudonym of the upstream sub, never the upstream sub itself', () => {
        const upstreamSub = c.idp().subOf(c.user.username);
        for (const dump of [dumps.control, dumps.eu, dumps.us])
          expect(leaks(dump, [upstreamSub])).toEqual([]);
      });
    });
  }

  it('the same person signing in at the home region directly leaves nothing at the other region', async () => {
    const before = (await f.dumps()).us;
    expect(leaks(before, canariesOf(ANNA, f.de))).toEqual([]);
    await login('eu', 'de-eid', ANNA);
    const after = await f.dumps();
    expect(leaks(after.us, canariesOf(ANNA, f.de))).toEqual([]);
    expect(leaks(after.control, canariesOf(ANNA, f.de))).toEqual([]);
    expect(after.eu).toContain(ANNA.claims.email as string);
  });
});

describe('logs carry no credentials', () => {
  it('no broker log line holds a token, an authorization code or a secret', () => {
    expect(upstreamTokens.length).toBeGreaterThan(0);
    expect(appTokens.length).toBeGreaterThan(0);
    const credentials = [...secrets(), ...upstreamTokens, ...appTokens];
    for (const region of ['eu', 'us'] as const) {
      const found = leaks(f.broker(region).output(), credentials);
      expect(found, `${region} broker log`).toEqual([]);
    }
  });
});
