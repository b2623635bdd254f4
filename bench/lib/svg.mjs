// Small hand-written SVG charts (no dependencies, no browser): horizontal bars with min–max
// whiskers, and line charts with points and min–max error bars. Deterministic output, so a
// re-generated report only changes where the numbers changed.

export const COLORS = {
  meridian: '#1d4ed8',
  meridian2: '#60a5fa',
  peer: '#9ca3af',
  peer2: '#4b5563',
  floor: '#16a34a',
  target: '#dc2626',
  accent: '#d97706',
};

const esc = (s) =>
  String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n = (x) => (Math.round(x * 10) / 10).toString();

export function fmtNum(v, digits) {
  if (v === null || v === undefined || !Number.isFinite(v)) return 'n/a';
  const d = digits ?? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2);
  return v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function ticks(max, count = 5) {
  const step = max / count;
  return Array.from({ length: count + 1 }, (_, i) => i * step);
}

function frame(width, height, title, body) {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">
<rect width="${width}" height="${height}" fill="#ffffff"/>
<text x="12" y="20" font-size="14" font-weight="600" fill="#111827">${esc(title)}</text>
${body}
</svg>
`;
}

/**
 * Horizontal bars. rows: [{ label, value, min?, max?, color?, note? }]; `marker`: an optional
 * vertical line { value, label } (a target or the floor).
 */
export function barChart({ title, unit, rows, marker, markers = marker ? [marker] : [], width = 720 }) {
  const left = 250;
  const right = 90;
  const top = 34 + (markers.length ? 14 * markers.length : 0);
  const rowH = 26;
  const height = top + rows.length * rowH + 34;
  const maxV = niceMax(
    Math.max(...rows.map((r) => Math.max(r.value ?? 0, r.max ?? 0)), ...markers.map((m) => m.value)),
  );
  const x = (v) => left + ((width - left - right) * v) / maxV;
  let body = '';
  for (const t of ticks(maxV)) {
    body += `<line x1="${n(x(t))}" y1="${top - 4}" x2="${n(x(t))}" y2="${top + rows.length * rowH}" stroke="#e5e7eb"/>`;
    body += `<text x="${n(x(t))}" y="${top + rows.length * rowH + 14}" text-anchor="middle" fill="#6b7280">${esc(fmtNum(t, t < 10 && maxV <= 10 ? 1 : 0))}</text>`;
  }
  body += `<text x="${width - right}" y="${height - 4}" text-anchor="end" fill="#6b7280">${esc(unit)}</text>`;
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const v = r.value ?? 0;
    body += `<text x="${left - 8}" y="${y + 16}" text-anchor="end" fill="#111827">${esc(r.label)}</text>`;
    body += `<rect x="${left}" y="${y + 4}" width="${n(Math.max(0, x(v) - left))}" height="${rowH - 10}" fill="${r.color ?? COLORS.meridian}" rx="2"/>`;
    if (Number.isFinite(r.min) && Number.isFinite(r.max) && r.max > r.min) {
      const cy = y + rowH / 2 - 1;
      body += `<line x1="${n(x(r.min))}" y1="${cy}" x2="${n(x(r.max))}" y2="${cy}" stroke="#111827" stroke-width="1.2"/>`;
      body += `<line x1="${n(x(r.min))}" y1="${cy - 5}" x2="${n(x(r.min))}" y2="${cy + 5}" stroke="#111827" stroke-width="1.2"/>`;
      body += `<line x1="${n(x(r.max))}" y1="${cy - 5}" x2="${n(x(r.max))}" y2="${cy + 5}" stroke="#111827" stroke-width="1.2"/>`;
    }
    const tx = Math.max(x(v), Number.isFinite(r.max) ? x(r.max) : 0) + 6;
    body += `<text x="${n(tx)}" y="${y + 16}" fill="#111827">${esc(r.note ?? fmtNum(v))}</text>`;
  });
  markers.forEach((mk, i) => {
    const color = mk.color ?? COLORS.target;
    const ly = top - 8 - (markers.length - 1 - i) * 14;
    body += `<line x1="${n(x(mk.value))}" y1="${ly + 2}" x2="${n(x(mk.value))}" y2="${top + rows.length * rowH}" stroke="${color}" stroke-dasharray="5 3" stroke-width="1.5"/>`;
    body += `<text x="${n(x(mk.value) + 4)}" y="${ly}" fill="${color}">${esc(mk.label)}</text>`;
  });
  return frame(width, height, title, body);
}

/**
 * Line chart. series: [{ label, color, points: [{ x, y, min?, max? }], dashed? }]; `logX` for
 * sizes spanning decades; `hline`: { value, label } (a target).
 */
export function lineChart({
  title,
  xLabel,
  yLabel,
  series,
  logX = false,
  hline,
  width = 720,
  height = 340,
  yMin = 0,
}) {
  const left = 70;
  const right = 170;
  const top = 34;
  const bottom = 48;
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.y));
  if (!all.length) return frame(width, 60, `${title} (no data)`, '');
  const xs = all.map((p) => p.x);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  const lx = (v) => Math.log10(Math.max(v, 1));
  const x = (v) => {
    const [a, b, c] = logX ? [lx(v), lx(xMin), lx(xMax)] : [v, xMin, xMax];
    return left + (c === b ? 0.5 : (a - b) / (c - b)) * (width - left - right);
  };
  const maxV = niceMax(Math.max(...all.map((p) => Math.max(p.y, p.max ?? 0)), hline?.value ?? 0));
  const y = (v) => top + (1 - (v - yMin) / (maxV - yMin)) * (height - top - bottom);
  let body = '';
  for (const t of ticks(maxV - yMin).map((t) => t + yMin)) {
    body += `<line x1="${left}" y1="${n(y(t))}" x2="${width - right}" y2="${n(y(t))}" stroke="#e5e7eb"/>`;
    body += `<text x="${left - 6}" y="${n(y(t) + 4)}" text-anchor="end" fill="#6b7280">${esc(fmtNum(t, maxV <= 10 ? 1 : 0))}</text>`;
  }
  const xTicks = [...new Set(xs)].sort((a, b) => a - b);
  for (const t of xTicks) {
    body += `<line x1="${n(x(t))}" y1="${height - bottom}" x2="${n(x(t))}" y2="${height - bottom + 4}" stroke="#6b7280"/>`;
    body += `<text x="${n(x(t))}" y="${height - bottom + 16}" text-anchor="middle" fill="#6b7280">${esc(fmtNum(t, 0))}</text>`;
  }
  body += `<line x1="${left}" y1="${height - bottom}" x2="${width - right}" y2="${height - bottom}" stroke="#6b7280"/>`;
  body += `<text x="${(left + width - right) / 2}" y="${height - 10}" text-anchor="middle" fill="#374151">${esc(xLabel)}${logX ? ' (log scale)' : ''}</text>`;
  body += `<text x="14" y="${(top + height - bottom) / 2}" text-anchor="middle" fill="#374151" transform="rotate(-90 14 ${(top + height - bottom) / 2})">${esc(yLabel)}</text>`;
  if (hline) {
    body += `<line x1="${left}" y1="${n(y(hline.value))}" x2="${width - right}" y2="${n(y(hline.value))}" stroke="${hline.color ?? COLORS.target}" stroke-dasharray="5 3" stroke-width="1.5"/>`;
    body += `<text x="${width - right + 6}" y="${n(y(hline.value) + 4)}" fill="${hline.color ?? COLORS.target}">${esc(hline.label)}</text>`;
  }
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => Number.isFinite(p.y)).sort((a, b) => a.x - b.x);
    if (!pts.length) return;
    body += `<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${pts.map((p) => `${n(x(p.x))},${n(y(p.y))}`).join(' ')}"/>`;
    for (const p of pts) {
      if (Number.isFinite(p.min) && Number.isFinite(p.max) && p.max > p.min)
        body += `<line x1="${n(x(p.x))}" y1="${n(y(p.min))}" x2="${n(x(p.x))}" y2="${n(y(p.max))}" stroke="${s.color}" stroke-width="1.2"/>`;
      body += `<circle cx="${n(x(p.x))}" cy="${n(y(p.y))}" r="3.5" fill="${s.color}"/>`;
    }
    const ly = top + 8 + i * 18;
    body += `<line x1="${width - right + 8}" y1="${ly}" x2="${width - right + 28}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`;
    body += `<text x="${width - right + 32}" y="${ly + 4}" fill="#111827">${esc(s.label)}</text>`;
  });
  return frame(width, height, title, body);
}
