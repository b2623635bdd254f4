import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { inject } from 'vitest';

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

export function pgAdminUrl(): string {
  let provided: string | undefined;
  try {
    provided = inject('pgAdminUrl');
  } catch {
    // Not inside a vitest worker (e.g. a process a test spawned).
  }
  const url = provided ?? process.env.MERIDIAN_TEST_PG_ADMIN_URL;
  if (!url)
    throw new Error('no test PostgreSQL: run under vitest (test/global-setup.ts) or set TEST_DATABASE_URL');
  return url;
}

export async function createTestDatabase(prefix: string): Promise<TestDatabase> {
  const name = databaseName(prefix);
  const adminUrl = pgAdminUrl();
  await withAdmin(adminUrl, (client) => client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`));

  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped: Promise<void> | undefined;
  return {
    url: url.toString(),
    drop() {
      // FORCE ends connections a test left open (pools not closed on failure).
      dropped ??= withAdmin(adminUrl, (client) =>
        client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`),
      ).then(() => undefined);
      return dropped;
    },
  };
}

function databaseName(prefix: string): string {
  const clean = prefix
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/^[^a-z_]+/, '');
  // 63 bytes is PostgreSQL's identifier limit; keep room for the suffix.
  return `${(clean || 'test').slice(0, 40)}_${randomBytes(6).toString('hex')}`;
}

async function withAdmin<T>(adminUrl: string, work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
