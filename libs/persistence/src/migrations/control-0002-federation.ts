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
    // Each region is its own client at the upstream (its own redirect URI): its client id, and
    // the client secret sealed under that region's KEK (regions do not share KEKs).
    await q.query(`
      create table federation_secret (
        federation_id text not null references federation(id) on delete cascade,
        region text not null,
        client_id text not null,
        sealed bytea,
        kek_id text,
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
    // The client a service itself uses: only it may exchange tokens issued for its audience.
    await q.query(`alter table resource add column client_id text`);
    // A service's public encryption key: its access tokens are then signed, then encrypted.
    await q.query(`alter table resource add column encryption_jwk jsonb`);
    // HMAC(pepper, sub) of subjects erased at their home region: regions that hold a copy from a
    // hand-off erase it too (pushed at once, and swept here for any region that missed the push).
    await q.query(`
      create table subject_tombstone (
        key text primary key,
        home_region text not null,
        erased_at timestamptz not null default now()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('drop table subject_tombstone');
    await q.query('alter table resource drop column encryption_jwk');
    await q.query('alter table resource drop column client_id');
    await q.query('drop table subject_locator');
    await q.query('drop table residency_policy');
    await q.query('drop table federation_secret');
    await q.query('drop table federation');
  }
}
