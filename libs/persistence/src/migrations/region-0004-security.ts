import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Abuse limits and anomaly detection (issue 6), shared by every replica of the region.
 *
 * - `rate_limit`: one GCRA state per key (the theoretical arrival time, ms since the epoch on the
 *   database's clock, so replicas with skewed clocks still agree). Unlogged: a crash forgets the
 *   counters (every bucket full again), which is what a restart of a rate limiter does anyway,
 *   and no WAL is written per request.
 * - `security_counter`: events per detector and key in fixed windows; the detectors estimate a
 *   sliding window from the current and the previous one. Unlogged for the same reason.
 * - `security_lockout`: temporary lockouts with back-off (logged: a lockout survives a crash).
 * - `subject_login_trace`: the last login region of a subject at its home region (impossible
 *   travel); erased with the subject.
 */
export class RegionSecurity1790000000004 implements MigrationInterface {
  name = 'RegionSecurity1790000000004';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`create unlogged table rate_limit (key text primary key, tat double precision not null)`);
    await q.query(`create index rate_limit_tat on rate_limit (tat)`);
    // GCRA (generic cell rate algorithm) for several keys at once, in one round trip: a key may
    // take `want` units when `want` more would still fit in its bucket of period/emission units;
    // it gets what fits (at least one) or nothing and how long until one fits. Rows are locked in
    // key order, so two calls over overlapping keys cannot deadlock.
    await q.query(`
      create function meridian_rate_take(
        p_keys text[], p_emission_ms double precision[], p_period_ms double precision[], p_want int[])
      returns table (idx int, granted int, retry_after_ms double precision)
      language plpgsql as $$
      declare
        now_ms double precision := extract(epoch from clock_timestamp()) * 1000;
        i int;
        cur double precision;
        base double precision;
        room int;
      begin
        for i in select s.n from unnest(p_keys) with ordinality as s(k, n) order by s.k loop
          insert into rate_limit (key, tat) values (p_keys[i], now_ms) on conflict (key) do nothing;
          select r.tat into cur from rate_limit r where r.key = p_keys[i] for update;
          base := greatest(cur, now_ms);
          room := floor((p_period_ms[i] - (base - now_ms)) / p_emission_ms[i] + 1e-9)::int;
          idx := i;
          if room >= 1 then
            granted := least(room, p_want[i]);
            retry_after_ms := 0;
            update rate_limit set tat = base + granted * p_emission_ms[i] where key = p_keys[i];
          else
            granted := 0;
            retry_after_ms := greatest(1, base + p_emission_ms[i] - p_period_ms[i] - now_ms);
          end if;
          return next;
        end loop;
      end $$`);
    await q.query(`
      create unlogged table security_counter (
        detector text not null,
        key text not null,
        window_no bigint not null,
        count bigint not null,
        alerted boolean not null default false,
        touched_at timestamptz not null default clock_timestamp(),
        primary key (detector, key, window_no)
      )`);
    // Adds `amount` events; answers the sliding-window estimate and whether this call is the one
    // that raises the alert (at most one per key in two consecutive windows, across replicas).
    await q.query(`
      create function meridian_security_count(
        p_detector text, p_key text, p_window_s double precision, p_amount bigint, p_threshold bigint)
      returns table (estimate double precision, fire boolean)
      language plpgsql as $$
      declare
        now_s double precision := extract(epoch from clock_timestamp());
        w bigint := floor(now_s / p_window_s);
        frac double precision := (now_s - w * p_window_s) / p_window_s;
        cur bigint;
        cur_alerted boolean;
        prev bigint;
        prev_alerted boolean;
      begin
        insert into security_counter as c (detector, key, window_no, count)
          values (p_detector, p_key, w, p_amount)
          on conflict (detector, key, window_no)
          do update set count = c.count + excluded.count, touched_at = clock_timestamp()
          returning c.count, c.alerted into cur, cur_alerted;
        select c.count, c.alerted into prev, prev_alerted from security_counter c
          where c.detector = p_detector and c.key = p_key and c.window_no = w - 1;
        estimate := coalesce(prev, 0) * (1 - frac) + cur;
        fire := false;
        if estimate >= p_threshold and not cur_alerted and not coalesce(prev_alerted, false) then
          update security_counter set alerted = true
            where detector = p_detector and key = p_key and window_no = w and not alerted;
          fire := found;
        end if;
        return next;
      end $$`);
    await q.query(`
      create table security_lockout (
        key text primary key,
        locked_until timestamptz not null,
        strikes int not null,
        locked_at timestamptz not null
      )`);
    await q.query(`create index security_lockout_until on security_lockout (locked_until)`);
    // Locks `key` out unless it already is: the first lockout lasts p_base_s, each further one
    // that starts within p_max_s of the end of the previous one doubles, up to p_max_s.
    await q.query(`
      create function meridian_security_lock(p_key text, p_base_s int, p_max_s int)
      returns table (locked_until timestamptz, strikes int, seconds int, fresh boolean)
      language plpgsql as $$
      declare
        t timestamptz := clock_timestamp();
        prior security_lockout%rowtype;
      begin
        insert into security_lockout (key, locked_until, strikes, locked_at)
          values (p_key, '-infinity', 0, t) on conflict (key) do nothing;
        select * into prior from security_lockout l where l.key = p_key for update;
        if prior.locked_until > t then
          locked_until := prior.locked_until;
          strikes := prior.strikes;
          seconds := ceil(extract(epoch from prior.locked_until - t));
          fresh := false;
          return next;
          return;
        end if;
        strikes := case when prior.locked_until > t - make_interval(secs => p_max_s) then prior.strikes + 1 else 1 end;
        seconds := least(p_max_s::double precision, p_base_s * power(2::double precision, least(strikes - 1, 30)))::int;
        locked_until := t + make_interval(secs => seconds);
        fresh := true;
        update security_lockout l set locked_until = meridian_security_lock.locked_until,
          strikes = meridian_security_lock.strikes, locked_at = t where l.key = p_key;
        return next;
      end $$`);
    await q.query(`
      create table subject_login_trace (
        sub text primary key references subject (sub) on delete cascade,
        region text not null,
        at timestamptz not null
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('drop table subject_login_trace');
    await q.query('drop function meridian_security_lock(text, int, int)');
    await q.query('drop table security_lockout');
    await q.query('drop function meridian_security_count(text, text, double precision, bigint, bigint)');
    await q.query('drop table security_counter');
    await q.query('drop function meridian_rate_take(text[], double precision[], double precision[], int[])');
    await q.query('drop table rate_limit');
  }
}
