/** Audit records for the audit queue's unit tests: valid enough to be queued and written, no more. */
export const auditRecord = (id: string): fhir4.AuditEvent => ({
  resourceType: 'AuditEvent',
  id,
  type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
  recorded: '2026-11-23T00:00:00Z',
  agent: [{ requestor: false, who: { identifier: { system: 'urn:forfait-fhir:adapter', value: 'forfait-fhir' } } }],
  source: { observer: { identifier: { system: 'urn:forfait-fhir:adapter', value: 'forfait-fhir' } } },
});
