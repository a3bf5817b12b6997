/**
 * BENCH_NODE_OPTIONS, given to every racksmith a benchmark starts: `--trace-gc`, or `--import` of a
 * profiler (Node refuses `--cpu-prof` in NODE_OPTIONS). Empty when unset.
 */
export const serverNodeOptions: Record<string, string> = process.env['BENCH_NODE_OPTIONS'] ? { NODE_OPTIONS: process.env['BENCH_NODE_OPTIONS'] } : {};
