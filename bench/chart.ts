// Draws the throughput chart for docs/performance.md from a `make bench` result:
//   node bench/chart.ts [bench/results/gateway-<date>-workers-1.json] [docs/performance-gateway.svg]
// Bars: requests/second per target, one group per upstream, each group scaled
// to its own maximum (the stub's direct figure dwarfs everything else).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface Sample {
  upstream: string;
  target: string;
  mode: string;
  requestsPerSec: number;
}

const root = new URL('..', import.meta.url).pathname;
const results = join(root, 'bench', 'results');
const input = process.argv[2] ?? join(results, readdirSync(results).filter((f) => /^gateway-.*-workers-1\.json$/.test(f)).sort().at(-1) ?? '');
const output = process.argv[3] ?? join(root, 'docs', 'performance-gateway.svg');
const data = JSON.parse(readFileSync(input, 'utf8')) as { date: string; command: string; samples: Sample[] };

const TARGETS = ['direct', 'prom-label-proxy', 'lbac-gateway', 'passthrough'] as const;
const COLORS: Record<(typeof TARGETS)[number], string> = { direct: '#9e9e9e', 'prom-label-proxy': '#e07b39', 'lbac-gateway': '#2f7ed8', passthrough: '#6abf69' };
const upstreams = [...new Set(data.samples.map((s) => s.upstream))];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

const groupW = 360;
const barW = 60;
const chartH = 220;
const top = 60;
const width = 40 + upstreams.length * groupW;
const height = top + chartH + 90;
const parts: string[] = [];
parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
parts.push(`<rect width="100%" height="100%" fill="#fff"/>`);
parts.push(`<text x="20" y="24" font-size="15" font-weight="bold">Throughput, same request mix (req/s, higher is better)</text>`);
parts.push(`<title>${esc(data.command)}</title>`);
parts.push(`<text x="20" y="42" fill="#555">${esc(data.date.slice(0, 10))}; 2 cores shared by load generator, backend and proxy</text>`);
upstreams.forEach((u, gi) => {
  const x0 = 40 + gi * groupW;
  const rows = TARGETS.map((t) => data.samples.find((s) => s.upstream === u && s.target === t && s.mode === 'throughput'));
  const max = Math.max(...rows.map((r) => r?.requestsPerSec ?? 0), 1);
  rows.forEach((r, i) => {
    const v = r?.requestsPerSec ?? 0;
    const h = Math.round((v / max) * chartH);
    const x = x0 + i * (barW + 20);
    const y = top + chartH - h;
    parts.push(`<rect x="${x}" y="${y}" width="${barW}" height="${h}" fill="${COLORS[TARGETS[i]!]}"/>`);
    parts.push(`<text x="${x + barW / 2}" y="${y - 4}" text-anchor="middle">${Math.round(v)}</text>`);
    parts.push(`<text x="${x + barW / 2}" y="${top + chartH + 16}" text-anchor="middle" font-size="10">${esc(TARGETS[i]!)}</text>`);
  });
  parts.push(`<text x="${x0}" y="${top + chartH + 40}" font-weight="bold">${esc(u === 'stub' ? 'canned stub (proxy cost only)' : 'real Prometheus')}</text>`);
});
parts.push('</svg>');
writeFileSync(output, parts.join('\n') + '\n');
console.log(`wrote ${output} from ${input}`);
