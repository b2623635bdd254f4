import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Linked identities, login transactions, and the audit trail's erasure and retention paths. */
export class RegionSubjects1790000000002 implements MigrationInterface {
  name = 'RegionSubjects1790000000002';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`alter table subject add column federation_id text`);
    await q.query(`alter table subject add column store_profile boolean not null default true`);
    await q.query(`alter table subject add column home boolean not null default true`);
    await q.query(`alter table subject add column last_login_at timestamptz not null default now()`);
    // (federation, upstream sub) → sub, keyed by HMAC(pepper, …): the upstream identifier itself
    // is never stored, so a storeProfile:false federation leaves only this pseudonymous link.
    await q.query(`
      create table federated_identity (
        link_key text primary key,
        federation_id text not null,
        sub text not null references subject(sub) on delete cascade,
        created_at timestamptz not null default now()
      )`);
    await q.query(`create index federated_identity_sub on federated_identity(sub)`);
    // An upstream login in flight: what the callback needs to finish it. No personal data.
    await q.query(`
      create table login_transaction (
        state text primary key,
        interaction_uid text not null,
        federation_id text not null,
        kind text not null check (kind in ('upstream', 'peer')),
        target text not null,
        code_verifier text not null,
        nonce text not null,
        expires_at timestamptz not null,
        consumed_at timestamptz
      )`);
    // The audit trail stays append-only, except for two audited paths: erasure replaces a
    // subject's references with a pseudonym, retention deletes old entries. Each is allowed only
    // inside a transaction that declares it (set local meridian.audit_write = erasure|retention).
    await q.query(`
      create or replace function audit_event_append_only() returns trigger language plpgsql as $$
      declare mode text := current_setting('meridian.audit_write', true);
      begin
        if tg_op = 'DELETE' and mode = 'retention' then
          return old;
        end if;
        if tg_op = 'UPDATE' and mode = 'erasure'
           and new.id = old.id and new.at = old.at and new.action = old.action
           and new.region = old.region and new.outcome = old.outcome then
          return new;
        end if;
        raise exception 'audit_event is append-only';
      end $$`);
    await q.query(`create index audit_event_target on audit_event(target_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('drop index audit_event_target');
    await q.query('drop table login_transaction');
    await q.query('drop table federated_identity');
    await q.query('alter table subject drop column last_login_at');
    await q.query('alter table subject drop column home');
    await q.query('alter table subject drop column store_profile');
    await q.query('alter table subject drop column federation_id');
  }
}
