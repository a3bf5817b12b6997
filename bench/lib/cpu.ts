import { readFileSync } from 'node:fs';

/**
 * How busy each CPU was over a stretch of a benchmark, from /proc/stat. With servers pinned to
 * CPU 0 and clients to CPU 1, this tells which side bounds a figure: a client CPU near 100 %
 * means no server could have been measured faster by that client, and both CPUs well below
 * 100 % means the run is bound by round trips (wake-ups), not by work.
 */
export interface CpuSample {
  readonly busy: readonly number[];
  readonly total: readonly number[];
}

export function cpuSample(): CpuSample {
  const busy: number[] = [];
  const total: number[] = [];
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (!m) continue;
    // user nice system idle iowait irq softirq steal …: idle and iowait are not busy, and steal
    // (a virtual CPU the host did not run) is not time at all.
    const f = (m[2] ?? '').trim().split(/\s+/).map(Number);
    const sum = f.slice(0, 7).reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    busy[Number(m[1])] = sum - idle;
    total[Number(m[1])] = sum;
  }
  return { busy, total };
}

/** Percent busy per CPU between two samples. */
export function cpuBusy(a: CpuSample, b: CpuSample): number[] {
  return b.total.map((t, i) => {
    const dt = t - (a.total[i] ?? 0);
    return dt > 0 ? (100 * ((b.busy[i] ?? 0) - (a.busy[i] ?? 0))) / dt : 0;
  });
}

/** "server CPU 53 %, client CPU 42 %" for pinned runs (CPU 0 servers, CPU 1 clients). */
export function formatBusy(busy: readonly number[]): string {
  return `server CPU ${Math.round(busy[0] ?? 0)} %, client CPU ${Math.round(busy[1] ?? 0)} %`;
}
