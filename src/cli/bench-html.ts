/**
 * The HTML report of `interprocess bench`: self-contained (inline SVG, no scripts, no network),
 * one chart of round-trip latency per message size (p50 bar, p99 tick, log scale) and one of
 * throughput by message size per mechanism (log-log lines).
 */
import { advise, formatBytes, formatNs, formatSize, placementLine, renderText, targetPlacement, targetsSummary, targetVerdict, type BenchReport, type TrialResult } from './report.js';

const PALETTE = [
  '#4269d0', '#efb118', '#ff725c', '#6cc5b0', '#3ca951', '#ff8ab7', '#a463f2', '#97bbf5', '#9c6b4e', '#9498a0',
  '#1f77b4', '#d62728', '#8c564b', '#17becf', '#bcbd22', '#e377c2', '#2ca02c', '#ff7f0e', '#393b79', '#843c39',
];

const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function latencyChart(rows: TrialResult[], title: string, colors: Map<string, string>): string {
  const ok = rows.filter((r) => r.error === undefined).sort((a, b) => a.p50! - b.p50!);
  if (ok.length === 0) return '';
  const width = 900;
  const left = 230;
  const bar = 18;
  const height = ok.length * (bar + 8) + 50;
  const min = Math.min(...ok.map((r) => r.p50!)) / 2;
  const max = Math.max(...ok.map((r) => r.p99!)) * 1.5;
  // The right margin leaves room for the "p50 / p99" label after the slowest tick.
  const x = (v: number): number => left + ((Math.log10(v) - Math.log10(min)) / (Math.log10(max) - Math.log10(min))) * (width - left - 160);
  const parts: string[] = [];
  for (let decade = Math.ceil(Math.log10(min)); decade <= Math.log10(max); decade++) {
    const v = 10 ** decade;
    parts.push(`<line x1="${x(v)}" y1="20" x2="${x(v)}" y2="${height - 25}" stroke="#ddd"/><text x="${x(v)}" y="${height - 8}" text-anchor="middle" font-size="11">${formatNs(v)}</text>`);
  }
  ok.forEach((r, i) => {
    const y = 24 + i * (bar + 8);
    parts.push(
      `<text x="${left - 8}" y="${y + 13}" text-anchor="end" font-size="12">${esc(r.id)}</text>` +
        `<rect x="${left}" y="${y}" width="${Math.max(1, x(r.p50!) - left)}" height="${bar}" fill="${colors.get(r.id)}"><title>${esc(r.label)}: p50 ${formatNs(r.p50!)}, p99 ${formatNs(r.p99!)}</title></rect>` +
        `<line x1="${x(r.p99!)}" y1="${y}" x2="${x(r.p99!)}" y2="${y + bar}" stroke="#333" stroke-width="2"/>` +
        `<text x="${x(r.p99!) + 5}" y="${y + 13}" font-size="11">${formatNs(r.p50!)} / ${formatNs(r.p99!)}</text>`,
    );
  });
  return `<h3>${esc(title)}: p50 bar, p99 tick (log scale, lower is better)</h3><svg width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">${parts.join('')}</svg>`;
}

function throughputChart(results: TrialResult[], colors: Map<string, string>): string {
  // Primitives move no payload: bytes per second would mean nothing for them.
  const ok = results.filter((r) => r.mode === 'throughput' && r.error === undefined && r.family !== 'primitive' && r.family !== 'map');
  if (ok.length === 0) return '';
  const sizes = [...new Set(ok.map((r) => r.size))].sort((a, b) => a - b);
  const width = 900;
  const height = 420;
  const [left, right, top, bottom] = [80, 220, 20, 40];
  const vals = ok.map((r) => r.bytesPerSecond!);
  const lo = Math.log10(Math.min(...vals) / 2);
  const hi = Math.log10(Math.max(...vals) * 2);
  const x = (size: number): number => (sizes.length === 1 ? left + (width - left - right) / 2 : left + (sizes.indexOf(size) / (sizes.length - 1)) * (width - left - right));
  const y = (v: number): number => top + (1 - (Math.log10(v) - lo) / (hi - lo)) * (height - top - bottom);
  const parts: string[] = [];
  // Grid lines at powers of 1024 and 32 x those (1 KiB, 32 KiB, 1 MiB...): binary units, as the tables use.
  for (const v of binaryGrid(lo, hi)) {
    parts.push(`<line x1="${left}" y1="${y(v)}" x2="${width - right}" y2="${y(v)}" stroke="#ddd"/><text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" font-size="11">${formatBytes(v)}/s</text>`);
  }
  for (const s of sizes) parts.push(`<text x="${x(s)}" y="${height - 15}" text-anchor="middle" font-size="11">${formatSize(s)}</text>`);
  const ids = [...new Set(ok.map((r) => r.id))];
  ids.forEach((id, i) => {
    const points = ok.filter((r) => r.id === id).sort((a, b) => a.size - b.size);
    const color = colors.get(id)!;
    // References and baselines dashed: what the library adds stands out in solid lines.
    const dash = points[0]!.family === 'interprocess' ? '' : ' stroke-dasharray="6 4"';
    // A polyline of one point draws nothing: a mechanism measured at one size gets a larger marker.
    if (points.length > 1) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${points.map((p) => `${x(p.size)},${y(p.bytesPerSecond!)}`).join(' ')}"/>`);
    const r = points.length > 1 ? 3 : 5;
    for (const p of points) parts.push(`<circle cx="${x(p.size)}" cy="${y(p.bytesPerSecond!)}" r="${r}" fill="${color}"><title>${esc(id)} ${formatSize(p.size)}: ${formatBytes(p.bytesPerSecond!)}/s</title></circle>`);
    parts.push(`<rect x="${width - right + 15}" y="${top + i * 18}" width="12" height="12" fill="${color}"/><text x="${width - right + 32}" y="${top + i * 18 + 10}" font-size="12">${esc(id)}${dash ? ' (dashed)' : ''}</text>`);
  });
  return `<h3>One-way throughput by message size (bytes/s, log scale, higher is better; references and baselines dashed)</h3><svg width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">${parts.join('')}</svg>`;
}

/** The values 2^(5k) whose log10 lies between lo and hi: 1 KiB, 32 KiB, 1 MiB, 32 MiB... */
function binaryGrid(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = 0; e <= 60; e += 5) if (e * Math.log10(2) >= lo && e * Math.log10(2) <= hi) out.push(2 ** e);
  return out;
}

export function renderHtml(report: BenchReport): string {
  const colors = new Map<string, string>();
  for (const r of report.results) if (!colors.has(r.id)) colors.set(r.id, PALETTE[colors.size % PALETTE.length]!);
  const sizes = [...new Set(report.results.filter((r) => r.mode === 'roundTrip').map((r) => r.size))].sort((a, b) => a - b);
  const advice = report.advice.length > 0 ? report.advice : advise(report.results);
  const placement = report.placement === undefined ? undefined : placementLine(report.placement);
  const targets = report.targets ?? [];
  const target = (t: (typeof targets)[number]): string => {
    const where = targetPlacement(t);
    return `<li><b>${esc(targetVerdict(t))}</b>: ${esc(t.target)}<br>${esc(t.measured)}${where === '' ? '' : ` <small>(${esc(where)})</small>`}</li>`;
  };
  return `<!doctype html><html><head><meta charset="utf-8"><title>interprocess bench</title>
<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}</style></head><body>
<h1>interprocess bench</h1>
<p>${esc(report.date)}${report.quick ? ' (quick run)' : ''}: ${esc(Object.entries(report.machine).map(([k, v]) => `${k} ${v}`).join(', '))}</p>${placement === undefined ? '' : `\n<p>${esc(placement)}</p>`}
<h2>Which to use</h2><ul>${advice.map((a) => `<li>${esc(a)}</li>`).join('')}</ul>
${targets.length === 0 ? '' : `<h2>Targets</h2><p>${esc(targetsSummary(targets, report.quick))}</p><ul>${targets.map(target).join('')}</ul>`}
${sizes.map((s) => latencyChart(report.results.filter((r) => r.mode === 'roundTrip' && r.size === s && r.family !== 'primitive'), `Round trip, ${formatSize(s)}`, colors)).join('\n')}
${latencyChart(report.results.filter((r) => r.mode === 'roundTrip' && r.family === 'primitive'), 'Synchronization primitives, hand-off between two processes (no payload)', colors)}
${throughputChart(report.results, colors)}
<h2>All figures</h2><pre>${esc(renderText(report))}</pre>
</body></html>
`;
}
