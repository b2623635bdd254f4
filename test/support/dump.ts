import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Client } from 'pg';

/**
 * The database as `pg_dump` sees it when the machine has a pg_dump that can read the server
 * (not older than it); otherwise every row of every table as text, which is what a data dump
 * holds. Returns which of the two it was, so a test can say what it looked at.
 */
export async function dumpDatabase(url: string): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)('pg_dump', ['--no-owner', '--inserts', url], {
      maxBuffer: 256 * 1024 * 1024,
    });
    return `-- pg_dump\n${stdout}`;
  } catch {
    return `-- rows\n${await dumpRows(url)}`;
  }
}

async function dumpRows(url: string): Promise<string> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ schemaname: string; tablename: string }>(
      `select schemaname, tablename from pg_tables where schemaname not in ('pg_catalog', 'information_schema')`,
    );
    const parts: string[] = [];
    for (const t of tables) {
      const ident = `${client.escapeIdentifier(t.schemaname)}.${client.escapeIdentifier(t.tablename)}`;
      // bytea columns are rendered as hex by to_jsonb, which is what a dump would contain too.
      const { rows } = await client.query<{ row: unknown }>(`select to_jsonb(t) as row from ${ident} t`);
      parts.push(`-- ${ident}\n${rows.map((r) => JSON.stringify(r.row)).join('\n')}`);
    }
    return parts.join('\n');
  } finally {
    await client.end();
  }
}
