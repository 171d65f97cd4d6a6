/**
 * One line of the table `npm run bench` prints. Each figure is compared with a baseline measured
 * in the same run (the machines are shared and noisy), so `ratio` is what the README publishes.
 */
export interface BenchRow {
  /** What was measured, e.g. "push mode: evaluations/s (fast local FHIR responder)". */
  name: string;
  /** The figure, with its unit, e.g. "2 310 evaluations/s". */
  value: string;
  /** The baseline of the same run it is compared with, e.g. "raw BullMQ 9 800 jobs/s". */
  baseline: string;
  /** value / baseline as text, e.g. "23.6 %"; empty when the row has no baseline. */
  ratio: string;
  /** The goal of issue 7, e.g. ">= 25 %"; empty when none. */
  goal: string;
  /** Whether the goal is met; null when the row has no goal. */
  met: boolean | null;
}

/** A benchmark module: `bench/<name>.ts` exports `run` and the runner prints its rows. */
export type Bench = (options: { quick: boolean }) => Promise<BenchRow[]>;
