/**
 * The HTML report of `interprocess bench`: self-contained (inline SVG, no scripts, no network),
 * one chart of round-trip latency per message size (p50 bar, p99 tick, log scale) and one of
 * throughput by message size per mechanism (log-log lines).
 */
import { advise, formatNs, formatSize, renderText, type BenchReport, type TrialResult } from './report.js';

const PALETTE = [
  '#4269d0', '#efb118', '#ff725c', '#6cc5b0', '#3ca951', '#ff8ab7', '#a463f2', '#97bbf5', '#9c6b4e', '#9498a0',
  '#1f77b4', '#d62728', '#8c564b', '#17becf', '#bcbd22', '#e377c2', '#2ca02c', '#ff7f0e', '#393b79', '#843c39',
];

const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function latencyChart(rows: TrialResult[], size: number, colors: Map<string, string>): string {
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
      `<text x="${left - 8}" y="${y + 13}" text-anchor="end" font-size="12"${r.family === 'primitive' ? ' font-style="italic"' : ''}>${esc(r.id)}</text>` +
        `<rect x="${left}" y="${y}" width="${Math.max(1, x(r.p50!) - left)}" height="${bar}" fill="${colors.get(r.id)}"><title>${esc(r.label)}: p50 ${formatNs(r.p50!)}, p99 ${formatNs(r.p99!)}</title></rect>` +
        `<line x1="${x(r.p99!)}" y1="${y}" x2="${x(r.p99!)}" y2="${y + bar}" stroke="#333" stroke-width="2"/>` +
        `<text x="${x(r.p99!) + 5}" y="${y + 13}" font-size="11">${formatNs(r.p50!)} / ${formatNs(r.p99!)}</text>`,
    );
  });
  return `<h3>Round trip, ${formatSize(size)}: p50 bar, p99 tick (log scale, lower is better; synchronization primitives without payload in italics)</h3><svg width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">${parts.join('')}</svg>`;
}

function throughputChart(results: TrialResult[], colors: Map<string, string>): string {
  // Primitives move no payload: bytes per second would mean nothing for them.
  const ok = results.filter((r) => r.mode === 'throughput' && r.error === undefined && r.skipped === undefined && r.family !== 'primitive' && r.family !== 'map');
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
  for (let d = Math.ceil(lo); d <= hi; d++) {
    parts.push(`<line x1="${left}" y1="${y(10 ** d)}" x2="${width - right}" y2="${y(10 ** d)}" stroke="#ddd"/><text x="${left - 6}" y="${y(10 ** d) + 4}" text-anchor="end" font-size="11">${formatBytesShort(10 ** d)}/s</text>`);
  }
  for (const s of sizes) parts.push(`<text x="${x(s)}" y="${height - 15}" text-anchor="middle" font-size="11">${formatSize(s)}</text>`);
  const ids = [...new Set(ok.map((r) => r.id))];
  ids.forEach((id, i) => {
    const points = ok.filter((r) => r.id === id).sort((a, b) => a.size - b.size);
    const color = colors.get(id)!;
    // References and baselines dashed: what the library adds stands out in solid lines.
    const dash = points[0]!.family === 'interprocess' ? '' : ' stroke-dasharray="6 4"';
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${points.map((p) => `${x(p.size)},${y(p.bytesPerSecond!)}`).join(' ')}"/>`);
    for (const p of points) parts.push(`<circle cx="${x(p.size)}" cy="${y(p.bytesPerSecond!)}" r="3" fill="${color}"><title>${esc(id)} ${formatSize(p.size)}: ${formatBytesShort(p.bytesPerSecond!)}/s</title></circle>`);
    parts.push(`<rect x="${width - right + 15}" y="${top + i * 18}" width="12" height="12" fill="${color}"/><text x="${width - right + 32}" y="${top + i * 18 + 10}" font-size="12">${esc(id)}${dash ? ' (dashed)' : ''}</text>`);
  });
  return `<h3>One-way throughput by message size (bytes/s, log scale, higher is better; references and baselines dashed)</h3><svg width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">${parts.join('')}</svg>`;
}

function formatBytesShort(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) (n /= 1000), i++;
  return `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

export function renderHtml(report: BenchReport): string {
  const colors = new Map<string, string>();
  for (const r of report.results) if (!colors.has(r.id)) colors.set(r.id, PALETTE[colors.size % PALETTE.length]!);
  const sizes = [...new Set(report.results.filter((r) => r.mode === 'roundTrip').map((r) => r.size))].sort((a, b) => a - b);
  const advice = report.advice.length > 0 ? report.advice : advise(report.results);
  return `<!doctype html><html><head><meta charset="utf-8"><title>interprocess bench</title>
<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}</style></head><body>
<h1>interprocess bench</h1>
<p>${esc(report.date)}${report.quick ? ' (quick run)' : ''}: ${esc(Object.entries(report.machine).map(([k, v]) => `${k} ${v}`).join(', '))}</p>
<h2>Which to use</h2><ul>${advice.map((a) => `<li>${esc(a)}</li>`).join('')}</ul>
${sizes.map((s) => latencyChart(report.results.filter((r) => r.mode === 'roundTrip' && r.size === s), s, colors)).join('\n')}
${throughputChart(report.results, colors)}
<h2>All figures</h2><pre>${esc(renderText(report))}</pre>
</body></html>
`;
}
