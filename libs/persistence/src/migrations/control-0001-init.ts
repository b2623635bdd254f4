import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Control plane: configuration only. Nothing in here may identify a person. */
export class ControlInit1790000000001 implements MigrationInterface {
  name = 'ControlInit1790000000001';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table region (
        id text primary key,
        issuer text not null unique,
        jurisdiction text,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      )`);
    // Public halves of every region's signing keys: the trust bundle is built from here.
    await q.query(`
      create table region_key (
        kid text primary key,
        region text not null references region(id) on delete cascade,
        alg text not null,
        public_jwk jsonb not null,
        state text not null check (state in ('next', 'current', 'retiring')),
        publish_until timestamptz,
        created_at timestamptz not null default now()
      )`);
    await q.query(`create index region_key_region on region_key(region)`);
    // Client metadata as oidc-provider reads it; client_secret holds only a salted HMAC.
    await q.query(`
      create table oidc_client (
        client_id text primary key,
        metadata jsonb not null,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      )`);
    await q.query(`
      create table resource (
        id text primary key,
        audience text not null unique,
        scopes text[] not null,
        region text not null,
        access_token_ttl_seconds integer not null default 300
          check (access_token_ttl_seconds between 1 and 3600),
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('drop table resource');
    await q.query('drop table oidc_client');
    await q.query('drop table region_key');
    await q.query('drop table region');
  }
}
