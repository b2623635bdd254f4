import { Client } from 'pg';

/**
 * Every row of every table of a database, as text — what `pg_dump --data-only` would show,
 * without depending on a pg_dump that matches the server's major version.
 */
export async function dumpDatabase(url: string): Promise<string> {
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
