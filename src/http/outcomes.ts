/**
 * OperationOutcome is the one error currency of the HTTP layer (after Medplum's
 * `packages/core/src/outcomes.ts`): small builders, an error that carries an outcome and
 * its HTTP status, and nothing else.
 */
type IssueType = fhir4.OperationOutcomeIssue['code'];

export interface IssueInput {
  code: IssueType;
  diagnostics: string;
  expression?: string[];
  severity?: fhir4.OperationOutcomeIssue['severity'];
}

export function operationOutcome(issues: IssueInput[]): fhir4.OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: issues.map((issue) => ({
      severity: issue.severity ?? 'error',
      code: issue.code,
      diagnostics: issue.diagnostics,
      ...(issue.expression?.length ? { expression: issue.expression } : {}),
    })),
  };
}

export class OperationOutcomeError extends Error {
  override name = 'OperationOutcomeError';
  constructor(
    readonly status: number,
    readonly outcome: fhir4.OperationOutcome,
    /** Sent as `Retry-After` (seconds) when set: the request can be sent again then. */
    readonly retryAfterSeconds?: number,
  ) {
    super(outcome.issue.map((issue) => issue.diagnostics ?? issue.code).join('; '));
  }
}

const fail = (status: number, code: IssueType) => (diagnostics: string, expression?: string) =>
  new OperationOutcomeError(status, operationOutcome([{ code, diagnostics, ...(expression ? { expression: [expression] } : {}) }]));

export const badRequest = fail(400, 'invalid');
export const malformed = fail(400, 'structure');
export const notFound = fail(404, 'not-found');
export const conflict = fail(409, 'conflict');
export const tooLarge = fail(413, 'too-costly');
export const unsupportedMediaType = fail(415, 'not-supported');
export const unprocessable = fail(422, 'business-rule');
/** 503: a service we depend on is unavailable; the caller sends the same request again after `Retry-After`. */
export const dependencyDown = (diagnostics: string, retryAfterSeconds = 5): OperationOutcomeError =>
  new OperationOutcomeError(503, operationOutcome([{ code: 'transient', diagnostics }]), retryAfterSeconds);

export function allOk(diagnostics: string): fhir4.OperationOutcome {
  return operationOutcome([{ severity: 'information', code: 'informational', diagnostics }]);
}
