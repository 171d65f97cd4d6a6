/**
 * Deterministic BullMQ job ids (BullMQ docs, "Job IDs" and the idempotent-jobs pattern):
 * the same patient, program and triggering resource versions always give the same id, so a
 * re-sent resource adds no second evaluation while the first job is kept. Ids contain no
 * `:` (BullMQ forbids it) and are not integers.
 */
import { createHash } from 'node:crypto';

const digest = (text: string): string => createHash('sha256').update(text).digest('base64url').slice(0, 22);

/**
 * `ev.<programs>.<patient>.<digest of the trigger>`, the programs sorted and joined by `+`
 * (program ids are `[a-z0-9-]`). `trigger` lists the versioned references
 * (`Type/id/_history/v`) that caused the evaluation.
 */
export function evaluationJobId(programIds: readonly string[], patientId: string, trigger: readonly string[]): string {
  return `ev.${[...programIds].sort().join('+')}.${patientId}.${digest([...trigger].sort().join('\n'))}`;
}

export function screeningChildJobId(screenId: string, programId: string, patientId: string): string {
  return `sc.${screenId}.${programId}.${patientId}`;
}
