// Summaries of repeated alternating runs: median with min and max, and the
// bypass/stack ratio (of the medians, plus the spread of per-round ratios).
export interface Summary {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export interface Ratio {
  /** median(bypass) / median(stack) */
  median: number;
  /** smallest and largest per-round ratio (round i's bypass over round i's stack) */
  min: number;
  max: number;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export function summarize(runs: number[]): Summary {
  return { median: median(runs), min: Math.min(...runs), max: Math.max(...runs), runs: [...runs] };
}

export function ratio(num: Summary, den: Summary): Ratio {
  const per = num.runs.map((x, i) => x / (den.runs[i] ?? NaN)).filter((r) => Number.isFinite(r));
  return { median: num.median / den.median, min: per.length ? Math.min(...per) : NaN, max: per.length ? Math.max(...per) : NaN };
}

/** Round to a few significant digits for the JSON report (keeps diffs readable). */
export function sig(x: number, digits = 4): number {
  if (!Number.isFinite(x) || x === 0) return x;
  return Number(x.toPrecision(digits));
}

export function roundSummary(s: Summary, digits = 4): Summary {
  return { median: sig(s.median, digits), min: sig(s.min, digits), max: sig(s.max, digits), runs: s.runs.map((r) => sig(r, digits)) };
}

export function roundRatio(r: Ratio): Ratio {
  return { median: sig(r.median, 3), min: sig(r.min, 3), max: sig(r.max, 3) };
}
