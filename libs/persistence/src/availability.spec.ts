import { QueryFailedError } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { DatabaseAvailability, isDatabaseUnavailable } from './availability';

function pgError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe('isDatabaseUnavailable — the database cannot serve, as opposed to a query it refused', () => {
  it.each([
    [
      'connection refused (node-postgres connect)',
      pgError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'),
    ],
    [
      'server shut down during a query (57P01, wrapped by TypeORM)',
      new QueryFailedError(
        'select 1',
        [],
        pgError('57P01', 'terminating connection due to administrator command'),
      ),
    ],
    ['server starting up or shutting down (57P03)', pgError('57P03', 'the database system is shutting down')],
    ['connection exception class 08', pgError('08006', 'connection failure')],
    ['too many connections (53300)', pgError('53300', 'sorry, too many clients already')],
    ['statement_timeout (57014)', pgError('57014', 'canceling statement due to statement timeout')],
    [
      'a write at a read-only standby (25006)',
      pgError('25006', 'cannot execute INSERT in a read-only transaction'),
    ],
    [
      'database not accepting connections',
      pgError('55000', 'database "x" is not currently accepting connections'),
    ],
    ['pg-pool connect timeout', new Error('timeout exceeded when trying to connect')],
    ['connection lost mid-query', new Error('Connection terminated unexpectedly')],
    ['client-side query_timeout', new Error('Query read timeout')],
  ])('yes: %s', (_name, err) => {
    expect(isDatabaseUnavailable(err)).toBe(true);
  });

  it.each([
    ['unique violation (23505)', new QueryFailedError('insert', [], pgError('23505', 'duplicate key value'))],
    ['syntax error (42601)', pgError('42601', 'syntax error at or near "selec"')],
    [
      'an HTTP call that was refused (undici)',
      new TypeError('fetch failed', { cause: pgError('ECONNREFUSED', 'connect ECONNREFUSED') }),
    ],
    ['anything else', new Error('boom')],
    ['not an error', 'ECONNREFUSED'],
  ])('no: %s', (_name, err) => {
    expect(isDatabaseUnavailable(err)).toBe(false);
  });
});

describe('DatabaseAvailability', () => {
  it('marks a database down when its probe fails or does not answer in time, and up again when it answers', async () => {
    let region: 'ok' | 'refused' | 'hang' = 'ok';
    const changes: string[] = [];
    const a = new DatabaseAvailability(
      {
        control: async () => undefined,
        region: () =>
          region === 'ok'
            ? Promise.resolve()
            : region === 'refused'
              ? Promise.reject(pgError('ECONNREFUSED', 'connect ECONNREFUSED'))
              : new Promise(() => undefined),
      },
      {
        probeTimeoutMs: 50,
        onChange: (db, up, reason) => changes.push(`${db} ${up ? 'up' : `down: ${reason}`}`),
      },
    );
    expect(a.down()).toEqual([]);
    region = 'refused';
    await a.suspect();
    expect(a.down()).toEqual(['region']);
    region = 'hang';
    await a.probe('region');
    expect(a.status('region')).toMatchObject({ available: false, reason: 'connection refused' });
    region = 'ok';
    await a.probe('region');
    region = 'hang';
    await a.probe('region');
    expect(a.down()).toEqual(['region']);
    region = 'ok';
    await a.probe('region');
    expect(a.down()).toEqual([]);
    expect(changes).toEqual([
      'region down: connection refused',
      'region up',
      'region down: no answer in time',
      'region up',
    ]);
  });

  it('shares one probe among concurrent callers', async () => {
    let probes = 0;
    const a = new DatabaseAvailability({
      control: async () => undefined,
      region: async () => {
        probes++;
        await new Promise((r) => setTimeout(r, 20));
      },
    });
    await Promise.all([a.suspect(), a.suspect(), a.probe('region')]);
    expect(probes).toBe(1);
  });

  it('probes on a schedule once started: an outage nobody requested through is noticed', async () => {
    let up = true;
    const a = new DatabaseAvailability(
      {
        control: async () => undefined,
        region: () => (up ? Promise.resolve() : Promise.reject(new Error('Connection terminated'))),
      },
      { upIntervalMs: 20, downIntervalMs: 10 },
    );
    a.start();
    try {
      up = false;
      await expect.poll(() => a.down(), { timeout: 1_000 }).toEqual(['region']);
      up = true;
      await expect.poll(() => a.down(), { timeout: 1_000 }).toEqual([]);
    } finally {
      a.stop();
    }
  });
});
