// `--compare`: the change of every headline metric against the last committed results file.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './common.mjs';
import { headline } from './metrics.mjs';
import { fmtMetric } from './report.mjs';

const RESULT_RE = /^bench\/results\/\d{4}-\d\d-\d\dT[\d-]+Z\.json$/;

/** The newest bench/results/<date>.json committed at HEAD (other than `exclude`), read from git. */
export function lastCommittedResults(exclude) {
  let files;
  try {
    files = execFileSync('git', ['ls-tree', '-r', '--name-only', 'HEAD', 'bench/results/'], {
      cwd: ROOT,
      encoding: 'utf8',
    })
      .split('\n')
      .filter((f) => RESULT_RE.test(f));
  } catch {
    return null;
  }
  const skip = exclude ? path.relative(ROOT, path.resolve(exclude)) : '';
  const candidates = files.filter((f) => f !== skip).sort();
  const file = candidates.at(-1);
  if (!file) return null;
  const text = execFileSync('git', ['show', `HEAD:${file}`], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 256 * 2 ** 20,
  });
  return { path: file, results: JSON.parse(text) };
}

/**
 * Per metric: the change of the median, and a verdict. A regression is a change for the worse
 * beyond the spread: the new run's whole min–max range lies on the worse side of the old one's.
 */
export function compareResults(base, current) {
  const old = new Map(headline(base).map((m) => [m.key, m]));
  const rows = [];
  for (const m of headline(current)) {
    const o = old.get(m.key);
    if (!o) {
      rows.push({ ...m, old: null, change: null, verdict: 'new' });
      continue;
    }
    const change = (m.value.median - o.value.median) / Math.abs(o.value.median);
    const worse = m.better === 'higher' ? change < 0 : change > 0;
    const beyond = m.better === 'higher' ? m.value.max < o.value.min : m.value.min > o.value.max;
    const better = m.better === 'higher' ? m.value.min > o.value.max : m.value.max < o.value.min;
    // One round (or one point) has no spread: a change is then only reported, never judged.
    const noSpread = !(m.value.max > m.value.min) || !(o.value.max > o.value.min);
    const verdict =
      Math.abs(change) < 0.02
        ? 'same'
        : noSpread
          ? `${worse ? 'worse' : 'better'} (no spread to judge)`
          : worse && beyond
            ? 'REGRESSION'
            : !worse && better
              ? 'better'
              : 'within spread';
    rows.push({ ...m, old: o.value, change, verdict });
  }
  const params = (r) =>
    JSON.stringify({
      load: r.params?.load,
      scale: r.params?.scale,
      quick: r.params?.quick,
      growthRounds: r.params?.growthRounds,
    });
  return {
    rows,
    sameParams: params(base) === params(current),
    base: {
      params: base.params,
      date: base.date,
      loadavg: base.machine?.loadavgAtStart,
      cores: base.machine?.cores,
      cpu: base.machine?.cpuModel,
    },
    current: {
      params: current.params,
      date: current.date,
      loadavg: current.machine?.loadavgAtStart,
      cores: current.machine?.cores,
      cpu: current.machine?.cpuModel,
    },
  };
}

export function printComparison(cmp, basePath, currentPath) {
  const lines = [];
  lines.push('', `## Change against ${basePath} (committed)`, '');
  lines.push(
    `base: ${cmp.base.date}, ${cmp.base.cores} × ${cmp.base.cpu}, load average ${cmp.base.loadavg?.join(' ')}`,
  );
  lines.push(
    `this: ${cmp.current.date}, ${cmp.current.cores} × ${cmp.current.cpu}, load average ${cmp.current.loadavg?.join(' ')} (${path.relative(process.cwd(), currentPath)})`,
  );
  if (cmp.base.cpu !== cmp.current.cpu || cmp.base.cores !== cmp.current.cores)
    lines.push('**Different machines: compare the ratios (×), not the absolute figures.**');
  if (!cmp.sameParams)
    lines.push(
      `**Different parameters** (base ${JSON.stringify(cmp.base.params?.load)} scale ${cmp.base.params?.scale}${cmp.base.params?.quick ? ' --quick' : ''}; this ${JSON.stringify(cmp.current.params?.load)} scale ${cmp.current.params?.scale}${cmp.current.params?.quick ? ' --quick' : ''}): growth points and spreads are not like for like.`,
    );
  if (Math.max(cmp.base.loadavg?.[0] ?? 0, cmp.current.loadavg?.[0] ?? 0) > (cmp.current.cores ?? 2) * 0.5)
    lines.push(
      '**A busy machine in one of the runs** (load average above half the cores): treat changes with caution.',
    );
  lines.push(
    '',
    '| scenario | metric | base | this run | change | |',
    '| --- | --- | ---: | ---: | ---: | --- |',
  );
  for (const r of cmp.rows) {
    const ch = r.change === null ? '' : `${r.change >= 0 ? '+' : ''}${(r.change * 100).toFixed(1)} %`;
    const flag = r.verdict === 'REGRESSION' ? '**REGRESSION**' : r.verdict;
    lines.push(
      `| ${r.scenario} | ${r.label} | ${r.old ? fmtMetric(r.old, r.unit) : '–'} | ${fmtMetric(r.value, r.unit)} | ${ch} | ${flag} |`,
    );
  }
  const reg = cmp.rows.filter((r) => r.verdict === 'REGRESSION');
  lines.push(
    '',
    reg.length
      ? `${reg.length} regression(s) beyond the spread of both runs.`
      : 'No regression beyond the spread.',
    '',
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  return reg.length;
}
