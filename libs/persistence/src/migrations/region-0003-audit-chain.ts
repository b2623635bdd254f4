import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The audit trail becomes tamper-evident (issue 6): each entry carries the hash of the one
 * before it. Personal fields (actor, target, detail) enter the hash through a salted digest, so
 * erasure can pseudonymise them without breaking the chain; entries deleted by retention leave a
 * tombstone (id, prev_hash, hash) so the chain still links across them. Entries written before
 * this migration are legacy: reported, not verified.
 */
export class RegionAuditChain1790000000003 implements MigrationInterface {
  name = 'RegionAuditChain1790000000003';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      alter table audit_event
        add column prev_hash text,
        add column hash text,
        add column personal_salt text,
        add column personal_digest text`);
    await q.query(`
      create table audit_chain_head (
        region text primary key,
        last_id bigint not null,
        last_hash text not null,
        legacy_before bigint not null
      )`);
    await q.query(`
      create table audit_tombstone (
        id bigint primary key,
        prev_hash text not null,
        hash text not null,
        deleted_at timestamptz not null default now(),
        reason text not null
      )`);
    // Tombstones are as append-only as the trail itself.
    await q.query(`
      create function audit_tombstone_append_only() returns trigger language plpgsql as $$
      begin
        raise exception 'audit_tombstone is append-only';
      end $$`);
    await q.query(`
      create trigger audit_tombstone_no_update before update or delete on audit_tombstone
      for each row execute function audit_tombstone_append_only()`);
    // Erasure may replace personal fields (and drop the salt); nothing that the chain covers
    // directly may change. Retention may delete (a tombstone is written in the same transaction).
    await q.query(`
      create or replace function audit_event_append_only() returns trigger language plpgsql as $$
      declare mode text := current_setting('meridian.audit_write', true);
      begin
        if tg_op = 'DELETE' and mode = 'retention' then
          return old;
        end if;
        if tg_op = 'UPDATE' and mode = 'erasure'
           and new.id = old.id and new.at = old.at and new.action = old.action
           and new.region = old.region and new.outcome = old.outcome
           and new.target_type = old.target_type
           and new.hash is not distinct from old.hash
           and new.prev_hash is not distinct from old.prev_hash
           and new.personal_digest is not distinct from old.personal_digest then
          return new;
        end if;
        raise exception 'audit_event is append-only';
      end $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('drop table audit_tombstone');
    await q.query('drop function audit_tombstone_append_only');
    await q.query('drop table audit_chain_head');
    await q.query(`
      alter table audit_event
        drop column prev_hash, drop column hash, drop column personal_salt, drop column personal_digest`);
  }
}
