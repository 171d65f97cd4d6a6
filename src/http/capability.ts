/**
 * The CapabilityStatement served at `GET /fhir/metadata`: exactly what this adapter serves,
 * no more (the FHIR server of record has its own).
 */
import { PUSHABLE_TYPES } from '../app/ingestion.service.js';

export const OPERATION_BASE = 'http://forfait-fhir.org/fhir/OperationDefinition';

export function capabilityStatement(options: { version: string; baseUrl: string; programs: string[] }): fhir4.CapabilityStatement {
  const create: fhir4.CapabilityStatementRestResourceInteraction[] = [{ code: 'create' }];
  const resources: fhir4.CapabilityStatementRestResource[] = PUSHABLE_TYPES.map((type) => ({
    type,
    interaction: create,
    conditionalCreate: true,
    documentation: `Stored on the FHIR server of record (conditional create on identifier or content hash); queues an eligibility evaluation of the patient concerned for every program (${options.programs.join(', ')}).`,
    ...(type === 'Patient'
      ? {
          operation: [
            {
              name: 'evaluate-eligibility',
              definition: `${OPERATION_BASE}/Patient-evaluate-eligibility`,
              documentation: 'Synchronous eligibility verdict: Parameters in (program, asOf), Parameters out (outcome and one criterion part per rule).',
            },
          ],
        }
      : {}),
  }));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-11-22',
    kind: 'instance',
    publisher: 'forfait-fhir',
    software: { name: 'forfait-fhir', version: options.version },
    implementation: { description: 'FHIR R4 adapter for diabetes prevention and care programs paid by forfaits', url: options.baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        documentation: 'Errors are OperationOutcome resources. Long work follows the FHIR asynchronous request pattern (202 + Content-Location).',
        resource: resources,
        interaction: [{ code: 'batch' }, { code: 'transaction' }],
        operation: [
          {
            name: 'screen',
            definition: `${OPERATION_BASE}/screen`,
            documentation: 'Screens a patient list (default: every patient whose GP is in a participating centre) as queued work; 202 + Content-Location to poll.',
          },
        ],
      },
    ],
  };
}
