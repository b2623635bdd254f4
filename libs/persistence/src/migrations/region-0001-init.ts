import type { MigrationInterface, QueryRunner } from 'typeorm';

/** A region's data plane: everything about people and everything secret lives here. */
export class RegionInit1790000000001 implements MigrationInterface {
  name = 'RegionInit1790000000001';

  async up(q: QueryRunner): Promise<void> {
    // Which region this database belongs to; checked at every start so a broker pointed at
    // another region's database refuses to run instead of mixing people's data.
    await q.query(
      `create table region_marker (singleton boolean primary key default true check (singleton), region text not null)`,
    );
    // Subjects known to this region: pseudonymous sub, where their data lives and their profile.
    // Written by the federated login (a later migration extends it); read by findAccount.
    await q.query(`
      create table subject (
        sub text primary key,
        residency jsonb not null,
        claims jsonb not null default '{}'::jsonb,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      )`);
    // oidc-provider's models (sessions, grants, codes, refresh tokens, interactions, ...).
    await q.query(`
      create table oidc_payload (
        model text not null,
        id text not null,
        payload jsonb not null,
        grant_id text,
        uid text,
        user_code text,
        expires_at timestamptz,
        consumed_at timestamptz,
        primary key (model, id)
      )`);
    await q.query(`create index oidc_payload_grant on oidc_payload(grant_id) where grant_id is not null`);
    await q.query(`create index oidc_payload_uid on oidc_payload(uid) where uid is not null`);
    await q.query(
      `create index oidc_payload_user_code on oidc_payload(user_code) where user_code is not null`,
    );
    await q.query(`create index oidc_payload_expires on oidc_payload(expires_at)`);
    // JWT access tokens are not stored by oidc-provider; introspection needs to know which grant
    // a user token came from, and which tokens were revoked before they expired.
    await q.query(`
      create table access_token_grant (
        jti text primary key,
        grant_id text not null,
        expires_at timestamptz not null
      )`);
    await q.query(`create index access_token_grant_grant on access_token_grant(grant_id)`);
    await q.query(`create table revoked_token (jti text primary key, expires_at timestamptz not null)`);
    // Private signing keys, sealed under the KEK (envelope encryption, AES-256-GCM).
    await q.query(`
      create table signing_key (
        kid text primary key,
        alg text not null,
        public_jwk jsonb not null,
        sealed_private_jwk bytea not null,
        kek_id text not null,
        state text not null check (state in ('next', 'current', 'retiring')),
        created_at timestamptz not null default now(),
        activated_at timestamptz,
        publish_until timestamptz
      )`);
    await q.query(
      `create unique index signing_key_one_current on signing_key(state) where state = 'current'`,
    );
    await q.query(`
      create table audit_event (
        id bigserial primary key,
        at timestamptz not null default now(),
        region text not null,
        actor text not null,
        action text not null,
        target_type text not null,
        target_id text,
        outcome text not null default 'success',
        detail jsonb not null default '{}'::jsonb
      )`);
    await q.query(`create index audit_event_at on audit_event(at)`);
    // Append-only: the trail cannot be edited through the application's role.
    await q.query(`
      create function audit_event_append_only() returns trigger language plpgsql as $$
      begin
        raise exception 'audit_event is append-only';
      end $$`);
    await q.query(`
      create trigger audit_event_no_update before update or delete on audit_event
      for each row execute function audit_event_append_only()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('drop table audit_event');
    await q.query('drop function audit_event_append_only');
    await q.query('drop table signing_key');
    await q.query('drop table revoked_token');
    await q.query('drop table access_token_grant');
    await q.query('drop table oidc_payload');
    await q.query('drop table subject');
    await q.query('drop table region_marker');
  }
}
