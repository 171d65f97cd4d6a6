/**
 * The CapabilityStatement served at `GET /fhir/metadata`: exactly what this adapter serves,
 * no more (the FHIR server of record has its own).
 */
import { PUSHABLE_TYPES } from '../app/ingestion.service.js';

export const OPERATION_BASE = 'http://forfait-fhir.org/fhir/OperationDefinition';

const operation = (name: string, documentation: string): fhir4.CapabilityStatementRestResourceOperation => ({
  name,
  definition: `${OPERATION_BASE}/${name}`,
  documentation,
});

export function capabilityStatement(options: { version: string; baseUrl: string; programs: string[]; enrolmentPrograms: string[] }): fhir4.CapabilityStatement {
  const create: fhir4.CapabilityStatementRestResourceInteraction[] = [{ code: 'create' }];
  const enrolling = options.enrolmentPrograms.join(', ');
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
              documentation: `Synchronous eligibility verdict: Parameters in (program: one of ${options.programs.join(', ')}; asOf), Parameters out (outcome and one criterion part per rule).`,
            },
            operation('enroll', `Enrols the patient (${enrolling}): program, start, careTeam (member, role), consent, personalisation options, overrideReason. Writes the EpisodeOfCare, CareTeam and CarePlans.`),
            operation('decline', 'Records an eligible patient\'s refusal (program, reason, text): the enrolment proposal Task is rejected.'),
          ],
        }
      : {}),
  }));
  resources.push(
    {
      type: 'Encounter',
      interaction: create,
      conditionalCreate: true,
      documentation: 'A care session of an enrolment (episodeOfCare, type = session kind, participant of the care team, identifier): checked against the enrolment and linked from its CarePlan activity.',
    },
    {
      type: 'EpisodeOfCare',
      operation: [
        operation('exit', 'Ends the enrolment with a coded reason (exit-reason) and ends its CarePlans.'),
        operation('add-plan', 'Opens an on-demand plan (REDIAB complementary education, one at a time).'),
        operation('advance', 'Moves this enrolment to a date (asOf): phases completed, activated or opened. Idempotent.'),
      ],
    },
    {
      // Program indicators (issue #5): profiles/Measure-*.json, evaluated from the FHIR server of record.
      type: 'Measure',
      interaction: [{ code: 'read' }, { code: 'search-type' }],
      searchParam: [{ name: 'context', type: 'token', documentation: 'The program id (also accepted as "program").' }],
      operation: [
        {
          name: 'evaluate-measure',
          definition: 'http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure',
          documentation: 'A summary MeasureReport: periodStart, periodEnd (inclusive days), optional subject=Organization/{id} or centre (Organization/{id} or system|value). A client bound to a centre gets its own centre only.',
        },
        operation('report-pack', 'The report pack of a program (program; pack: annual-activity, interim-18-months, final-evaluation; periodStart, periodEnd; optional centre): a collection Bundle of MeasureReports, or CSV with _format=text/csv.'),
      ],
    },
  );
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
          operation('advance', 'Moves every open enrolment to a date (asOf, optional program): the daily job, on demand. Idempotent.'),
          operation('bill', 'Generates the forfait claims due up to a date (asOf, optional program) and queues their submission to the insurer gateway. Idempotent.'),
          operation('budget', 'Claimed, accepted and paid amounts against the program budget (program, optional centre).'),
        ],
      },
    ],
  };
}
