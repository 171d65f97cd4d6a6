/**
 * Audit records queued together travel as one job (src/queue/audit.ts auditJobs, runAuditJob):
 * the jobs they make, and how a job of several records settles when some of them fail. The
 * writer is scripted (its batching is tested in batch-writer.test.ts).
 */
import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { FhirServerError } from '../../../src/fhir/fhir-server.port.js';
import { AUDIT_BATCH_MAX, auditJobs, auditRecordsJobId, runAuditJob, type AuditJobData, type AuditResource } from '../../../src/queue/audit.js';
import { auditRecord } from './records.js';

const event = auditRecord;
const provenance = (id: string): fhir4.Provenance => ({ resourceType: 'Provenance', id, target: [{ reference: 'GuidanceResponse/g/_history/1' }], recorded: '2026-11-23T00:00:00Z', agent: [] });

/** A writer answering per record id: written, or the error given. */
function writer(script: Record<string, Error> = {}) {
  const written: string[] = [];
  return {
    written,
    async write(data: unknown): Promise<string> {
      const record = data as AuditResource;
      const error = script[record.id as string];
      if (error) throw error;
      written.push(record.id as string);
      return `${record.resourceType}/${record.id}`;
    },
  };
}

function job(data: AuditJobData) {
  const updates: AuditJobData[] = [];
  return {
    updates,
    job: {
      data,
      async updateData(next: AuditJobData) {
        updates.push(next);
      },
    },
  };
}

describe('audit jobs', () => {
  it('a lone record is a job of its own (its id, the resource as data); records queued together are one job', () => {
    expect(auditJobs([event('e1')])).toEqual([{ name: 'AuditEvent', data: event('e1'), opts: expect.objectContaining({ jobId: 'ae.e1', attempts: 12 }) }]);
    const together = auditJobs([event('e1'), provenance('p1')]);
    expect(together).toHaveLength(1);
    expect(together[0]?.data).toEqual({ records: [event('e1'), provenance('p1')] });
    expect(together[0]?.opts.jobId).toBe(auditRecordsJobId([provenance('p1'), event('e1')]));
    expect(together[0]?.opts.jobId).toMatch(/^ab\.[A-Za-z0-9_-]{22}$/);
    expect(together[0]?.opts.attempts).toBe(12);
  });

  it(`more than ${AUDIT_BATCH_MAX} records make several jobs, every record in one`, () => {
    const records = Array.from({ length: AUDIT_BATCH_MAX * 2 + 1 }, (_, i) => event(`e${i}`));
    const jobs = auditJobs(records);
    expect(jobs.map((j) => (j.data as { records: AuditResource[] }).records.length)).toEqual([AUDIT_BATCH_MAX, AUDIT_BATCH_MAX, 1]);
    expect(jobs.flatMap((j) => (j.data as { records: AuditResource[] }).records)).toEqual(records);
    expect(new Set(jobs.map((j) => j.opts.jobId)).size).toBe(3);
  });

  it('a job of several records writes each and returns their references', async () => {
    const w = writer();
    const { job: j, updates } = job({ records: [event('e1'), provenance('p1')] });
    await expect(runAuditJob(w, j)).resolves.toEqual(['AuditEvent/e1', 'Provenance/p1']);
    expect(updates).toEqual([]);
  });

  it('a transient failure of one record: the job keeps only that record and is retried', async () => {
    const w = writer({ p1: new FhirServerError('FHIR server unavailable', 503, undefined, true) });
    const { job: j, updates } = job({ records: [event('e1'), provenance('p1'), event('e2')] });
    const error = await runAuditJob(w, j).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FhirServerError);
    expect(error).not.toBeInstanceOf(UnrecoverableError);
    expect(w.written).toEqual(['e1', 'e2']);
    expect(updates).toEqual([{ records: [provenance('p1')] }]);
  });

  it('records all refused for good: the job fails at once, keeping the refused records only', async () => {
    const w = writer({ e1: new UnrecoverableError('FHIR batch: PUT AuditEvent answered 422') });
    const { job: j, updates } = job({ records: [event('e1'), provenance('p1')] });
    const error = await runAuditJob(w, j).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnrecoverableError);
    expect((error as Error).message).toBe('1 of 2 audit records refused: FHIR batch: PUT AuditEvent answered 422');
    expect(updates).toEqual([{ records: [event('e1')] }]);
  });

  it('a refused and a transient failure together: retried with both kept', async () => {
    const w = writer({ e1: new UnrecoverableError('refused'), p1: new Error('socket hang up') });
    const { job: j, updates } = job({ records: [event('e1'), provenance('p1'), event('e2')] });
    await expect(runAuditJob(w, j)).rejects.toThrow('socket hang up');
    expect(updates).toEqual([{ records: [event('e1'), provenance('p1')] }]);
  });

  it('every record failing: nothing to drop, the data is left as it is', async () => {
    const down = new FhirServerError('timeout', 0, undefined, true);
    const w = writer({ e1: down, p1: down });
    const { job: j, updates } = job({ records: [event('e1'), provenance('p1')] });
    await expect(runAuditJob(w, j)).rejects.toBe(down);
    expect(updates).toEqual([]);
  });

  it('a job whose data is one record (a lone record, or queued by an older version) writes it', async () => {
    const w = writer();
    await expect(runAuditJob(w, job(event('e1')).job)).resolves.toBe('AuditEvent/e1');
  });
});
