import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Upstream client secret rotation: a region keeps the secret it used before the last rotation
 * (sealed under its KEK like the current one) and tries it while the upstream still refuses
 * the new one, until it expires or the admin promotes the new one. When each was last accepted
 * tells the operator whether the upstream has switched.
 */
export class ControlSecretRotation1790000000013 implements MigrationInterface {
  name = 'ControlSecretRotation1790000000013';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      alter table federation_secret
        add column previous_sealed bytea,
        add column previous_kek_id text,
        add column previous_expires_at timestamptz,
        add column current_set_at timestamptz,
        add column current_accepted_at timestamptz,
        add column previous_accepted_at timestamptz`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`
      alter table federation_secret
        drop column previous_sealed, drop column previous_kek_id, drop column previous_expires_at,
        drop column current_set_at, drop column current_accepted_at, drop column previous_accepted_at`);
  }
}
