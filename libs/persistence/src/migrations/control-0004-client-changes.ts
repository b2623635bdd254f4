import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A change feed for client metadata. Every broker keeps the clients it has seen in memory and
 * polls this table each second for the ids written since (by any replica, any region, or by
 * hand in SQL — the trigger sees them all), so a large client population stays cached without
 * a time-to-live forcing reloads, and a change reaches every replica within a poll.
 * `changed_at` is the writing transaction's start; readers re-read a window behind their cursor
 * because a transaction can commit after a later-started one was already read.
 */
export class ControlClientChanges1790000000014 implements MigrationInterface {
  name = 'ControlClientChanges1790000000014';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table oidc_client_change (
        seq bigserial primary key,
        client_id text not null,
        changed_at timestamptz not null default now()
      )`);
    await q.query(`create index oidc_client_change_at on oidc_client_change(changed_at)`);
    await q.query(`
      create function oidc_client_changed() returns trigger language plpgsql as $$
      begin
        if tg_op = 'DELETE' then
          insert into oidc_client_change(client_id) values (old.client_id);
        else
          insert into oidc_client_change(client_id) values (new.client_id);
          if tg_op = 'UPDATE' and old.client_id <> new.client_id then
            insert into oidc_client_change(client_id) values (old.client_id);
          end if;
        end if;
        return null;
      end $$`);
    await q.query(`
      create trigger oidc_client_changed after insert or update or delete on oidc_client
        for each row execute function oidc_client_changed()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('drop trigger oidc_client_changed on oidc_client');
    await q.query('drop function oidc_client_changed()');
    await q.query('drop table oidc_client_change');
  }
}
