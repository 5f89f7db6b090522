// The throughput-ratio chart as a hand-written SVG: bypass/stack ratio against
// write size (log2 x axis), one line per topology and family, min-max whiskers,
// reference lines at 1x (parity) and the 3.5x target.
export interface Series {
  label: string;
  color: string;
  dash?: string;
  points: Array<{ size: number; ratio: number; min: number; max: number }>;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function sizeLabel(n: number): string {
  if (n >= 1 << 20) return `${n / (1 << 20)} MiB`;
  if (n >= 1024) return `${n / 1024} KiB`;
  return `${n} B`;
}

export function ratioChart(series: Series[], opts: { title: string; subtitle?: string; target?: number }): string {
  const W = 760;
  const H = 460;
  const m = { l: 64, r: 180, t: 58, b: 56 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = series.flatMap((s) => s.points);
  const sizes = [...new Set(all.map((p) => p.size))].sort((a, b) => a - b);
  const lx0 = Math.log2(sizes[0] ?? 64);
  const lx1 = Math.log2(sizes[sizes.length - 1] ?? 1 << 20);
  const target = opts.target ?? 3.5;
  const yMaxData = Math.max(target, ...all.map((p) => (Number.isFinite(p.max) ? p.max : p.ratio)));
  const yMax = Math.max(1, Math.ceil(yMaxData + 0.25));
  const x = (size: number) => m.l + (lx1 === lx0 ? pw / 2 : ((Math.log2(size) - lx0) / (lx1 - lx0)) * pw);
  const y = (r: number) => m.t + ph - (Math.min(r, yMax) / yMax) * ph;
  const f = (n: number) => n.toFixed(1);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${m.l}" y="24" font-size="16" font-weight="bold">${esc(opts.title)}</text>`);
  if (opts.subtitle) out.push(`<text x="${m.l}" y="42" fill="#555">${esc(opts.subtitle)}</text>`);
  // grid and y axis
  const step = yMax <= 4 ? 0.5 : yMax <= 10 ? 1 : 2;
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${f(y(v))}" y2="${f(y(v))}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.l - 8}" y="${f(y(v) + 4)}" text-anchor="end">${v % 1 === 0 ? v.toFixed(0) : v.toFixed(1)}×</text>`);
  }
  for (const s of sizes) {
    out.push(`<line x1="${f(x(s))}" x2="${f(x(s))}" y1="${m.t}" y2="${m.t + ph}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${f(x(s))}" y="${m.t + ph + 18}" text-anchor="middle">${sizeLabel(s)}</text>`);
  }
  out.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  out.push(`<text x="${m.l + pw / 2}" y="${H - 14}" text-anchor="middle">write size (log2 scale)</text>`);
  out.push(`<text transform="translate(18 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">throughput, bypass ÷ stack</text>`);
  // reference lines
  out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${f(y(1))}" y2="${f(y(1))}" stroke="#c00" stroke-width="1.5"/>`);
  out.push(`<text x="${m.l + pw - 6}" y="${f(y(1) + 15)}" fill="#c00" text-anchor="end">1× = parity (below: bypass slower)</text>`);
  out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${f(y(target))}" y2="${f(y(target))}" stroke="#2a7" stroke-width="1.2" stroke-dasharray="6 4"/>`);
  out.push(`<text x="${m.l + 6}" y="${f(y(target) - 5)}" fill="#2a7">target ${target}× (16 KiB and up)</text>`);
  // series
  series.forEach((s, i) => {
    const pts = [...s.points].sort((a, b) => a.size - b.size);
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : '';
    if (pts.length > 1) {
      out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2.2"${dash} points="${pts.map((p) => `${f(x(p.size))},${f(y(p.ratio))}`).join(' ')}"/>`);
    }
    for (const p of pts) {
      if (Number.isFinite(p.min) && Number.isFinite(p.max)) {
        out.push(`<line x1="${f(x(p.size))}" x2="${f(x(p.size))}" y1="${f(y(p.min))}" y2="${f(y(p.max))}" stroke="${s.color}" stroke-width="1" opacity="0.7"/>`);
      }
      out.push(`<circle cx="${f(x(p.size))}" cy="${f(y(p.ratio))}" r="3.5" fill="${s.color}"><title>${esc(`${s.label} ${sizeLabel(p.size)}: ${p.ratio.toFixed(2)}×`)}</title></circle>`);
    }
    const ly = m.t + 10 + i * 22;
    const lx = m.l + pw + 16;
    out.push(`<line x1="${lx}" x2="${lx + 26}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2.2"${dash}/>`);
    out.push(`<circle cx="${lx + 13}" cy="${ly}" r="3.5" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 32}" y="${ly + 4}">${esc(s.label)}</text>`);
  });
  const ny = m.t + 10 + series.length * 22 + 8;
  out.push(`<text x="${m.l + pw + 16}" y="${ny}" fill="#555" font-size="11">dots: median ratio</text>`);
  out.push(`<text x="${m.l + pw + 16}" y="${ny + 15}" fill="#555" font-size="11">whiskers: min–max of</text>`);
  out.push(`<text x="${m.l + pw + 16}" y="${ny + 29}" fill="#555" font-size="11">per-round ratios</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
