/**
 * Retention per residency policy (issue 3): audit entries older than `retention.auditDays` and
 * profiles inactive longer than `retention.inactiveProfileDays` are deleted by the scheduled
 * job; everything else stays; the run itself is audited.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '@meridian/audit';
import { PolicyRepository, RetentionJob, SubjectLocator, SubjectStore } from '@meridian/federation';
import { decisionFor, parsePolicy } from '@meridian/residency';
import type { ControlDatabase, RegionDatabase } from '@meridian/persistence';
import { openStores } from './support/stores';

let stores: Awaited<ReturnType<typeof openStores<'eu'>>>;
let region: RegionDatabase<'eu'>;
let control: ControlDatabase;
let subjects: SubjectStore<'eu'>;
let policies: PolicyRepository;
let job: RetentionJob;
const pepper = randomBytes(32);
const DAY = 86_400_000;

beforeAll(async () => {
  stores = await openStores('ret', ['eu']);
  ({ control } = stores);
  region = stores.region.eu;
  await control.query(`insert into region (id, issuer) values ('eu', 'http://127.0.0.1:1')`);
  policies = new PolicyRepository(control, 0);
  const doc = {
    appliesTo: { jurisdictions: ['DE'] },
    homeRegion: 'eu',
    storageRegions: ['eu'],
    release: { default: ['sub', 'residency'] },
    retention: { auditDays: 30, inactiveProfileDays: 90 },
  };
  await policies.append('short', 'tester', (others) =>
    parsePolicy('short', 1, doc, { knownRegions: ['eu'], otherPolicies: others }),
  );
  const audit = new AuditLog(region);
  subjects = new SubjectStore(region, audit, new SubjectLocator(control, pepper), pepper);
  job = new RetentionJob(region, subjects, policies, audit);
});

afterAll(async () => {
  await stores?.close();
});

async function login(upstreamSub: string): Promise<string> {
  const [policy] = await policies.current();
  return subjects.recordHomeLogin({
    decision: decisionFor(policy!, 'DE'),
    federationId: 'de-eid',
    upstreamSub,
    profile: { email: `${upstreamSub}@example.de` },
    storeProfile: true,
  });
}

describe('retention job', () => {
  it('deletes audit entries about a subject older than its policy allows, and keeps newer ones', async () => {
    const sub = await login('recent-person');
    await region.query(
      `insert into audit_event (at, region, actor, action, target_type, target_id) values (now() - interval '40 days', 'eu', 'system', 'old.thing', 'subject', $1)`,
      [sub],
    );
    await region.query(
      `insert into audit_event (at, region, actor, action, target_type, target_id) values (now() - interval '10 days', 'eu', 'system', 'new.thing', 'subject', $1)`,
      [sub],
    );
    const result = await job.run(new Date());
    expect(result?.auditDeleted).toBeGreaterThanOrEqual(1);
    const actions = (
      await region.query<{ action: string }>('select action from audit_event where target_id = $1', [sub])
    ).map((r) => r.action);
    expect(actions).not.toContain('old.thing');
    expect(actions).toContain('new.thing');
  });

  it('erases profiles inactive longer than the policy allows, and only those', async () => {
    const stale = await login('stale-person');
    const active = await login('active-person');
    await region.query(`update subject set last_login_at = now() - interval '100 days' where sub = $1`, [
      stale,
    ]);
    const result = await job.run(new Date());
    expect(result?.profilesErased).toBe(1);
    expect(await subjects.find(stale)).toBeUndefined();
    expect(await subjects.find(active)).toBeDefined();
    const [erasure] = await region.query<{ actor: string }>(
      `select actor from audit_event where action = 'subject.erase' order by id desc limit 1`,
    );
    expect(erasure?.actor).toBe('retention');
  });

  it('audits every run', async () => {
    await job.run(new Date(Date.now() + DAY));
    const runs = await region.query(`select detail from audit_event where action = 'retention.run'`);
    expect(runs.length).toBeGreaterThanOrEqual(1);
  });

  it('runs on one replica at a time (advisory lock)', async () => {
    const results = await Promise.all([
      job.run(),
      new RetentionJob(region, subjects, policies, new AuditLog(region)).run(),
    ]);
    expect(results.filter((r) => r === undefined).length).toBeLessThanOrEqual(1);
  });
});

describe('subject store — the storage rule', () => {
  it('refuses, and audits, a home write for a subject whose policy does not store in this region', async () => {
    const doc = {
      appliesTo: { jurisdictions: ['US'] },
      homeRegion: 'us',
      storageRegions: ['us'],
      release: { default: ['sub', 'residency'] },
    };
    const usPolicy = parsePolicy('us-only', 1, doc, { knownRegions: ['eu', 'us'], otherPolicies: [] });
    await expect(
      subjects.recordHomeLogin({
        decision: decisionFor(usPolicy, 'US'),
        federationId: 'global',
        upstreamSub: 'us-person',
        profile: { email: 'us@example.com' },
        storeProfile: true,
      }),
    ).rejects.toMatchObject({ code: 'ERR_RESIDENCY_STORAGE_REFUSED' });
    const rows = await region.query(`select 1 from subject where claims::text like '%us@example.com%'`);
    expect(rows).toHaveLength(0);
    const [refusal] = await region.query<{ outcome: string }>(
      `select outcome from audit_event where action = 'subject.store.refused'`,
    );
    expect(refusal?.outcome).toBe('refused');
  });

  it('keeps a foreign subject’s released claims only where the policy lets this region store them', async () => {
    const doc = {
      appliesTo: { jurisdictions: ['US'] },
      homeRegion: 'us',
      storageRegions: ['us'],
      release: { default: ['sub', 'residency'], byRegion: { eu: ['email'] } },
    };
    const usPolicy = parsePolicy('us-rel', 1, doc, { knownRegions: ['eu', 'us'], otherPolicies: [] });
    const decision = decisionFor(usPolicy, 'US');
    await subjects.recordForeignLogin({
      sub: 'm-foreign',
      residency: decision.residencyClaim(),
      decision,
      releasedClaims: { email: 'released@example.com' },
      federationId: 'global',
    });
    const stored = await subjects.find('m-foreign');
    expect(stored?.home).toBe(false);
    expect(stored?.claims).toEqual({});
    // The audit trail names the foreign subject by a pseudonym (pseudonymiseForeignLogs).
    const refs = await region.query(`select 1 from audit_event where target_id = 'm-foreign'`);
    expect(refs).toHaveLength(0);
  });
});

describe('erasure at the home region reaches copies here (tombstones)', () => {
  it('sweeps a hand-off copy whose subject was erased at home, and nothing else', async () => {
    const doc = {
      appliesTo: { jurisdictions: ['CA'] },
      homeRegion: 'us',
      storageRegions: ['us'],
      release: { default: ['sub', 'residency'] },
    };
    const policy = parsePolicy('ca-home', 1, doc, { knownRegions: ['eu', 'us'], otherPolicies: [] });
    const decision = decisionFor(policy, 'CA');
    for (const sub of ['m-erased-at-home', 'm-still-alive']) {
      await subjects.recordForeignLogin({
        sub,
        residency: decision.residencyClaim(),
        decision,
        releasedClaims: {},
        federationId: 'global',
      });
    }
    const locator = new SubjectLocator(control, pepper);
    await locator.tombstone('m-erased-at-home', 'us');
    expect(await subjects.erasedAtHome('m-erased-at-home')).toBe(true);
    expect(await subjects.sweepErasedCopies()).toBe(1);
    expect(await subjects.find('m-erased-at-home')).toBeUndefined();
    expect(await subjects.find('m-still-alive')).toBeDefined();
    // A tombstone never erases a subject whose home is here (only a data-subject request does).
    const home = await login('home-person-with-tombstone');
    await locator.tombstone(home, 'us');
    expect(await subjects.sweepErasedCopies()).toBe(0);
    expect(await subjects.find(home)).toBeDefined();
  });
});
