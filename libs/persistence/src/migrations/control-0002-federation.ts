import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Federations, residency policies and the pseudonymous subject locator: still nothing personal. */
export class ControlFederation1790000000002 implements MigrationInterface {
  name = 'ControlFederation1790000000002';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table federation (
        id text primary key,
        config jsonb not null,
        enabled boolean not null default true,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      )`);
    // The upstream client secret, sealed under the KEK of each region that uses the federation:
    // regions do not share KEKs, so each region that logs people in through it holds its own copy.
    await q.query(`
      create table federation_secret (
        federation_id text not null references federation(id) on delete cascade,
        region text not null,
        sealed bytea not null,
        kek_id text not null,
        updated_at timestamptz not null default now(),
        primary key (federation_id, region)
      )`);
    await q.query(`
      create table residency_policy (
        id text not null,
        version integer not null,
        document jsonb not null,
        created_by text not null,
        created_at timestamptz not null default now(),
        primary key (id, version)
      )`);
    // HMAC(pepper, kind + value) → home region. The key reveals nothing without the pepper.
    await q.query(`
      create table subject_locator (
        key text primary key,
        region text not null,
        updated_at timestamptz not null default now()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('drop table subject_locator');
    await q.query('drop table residency_policy');
    await q.query('drop table federation_secret');
    await q.query('drop table federation');
  }
}
