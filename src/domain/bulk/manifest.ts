/**
 * Bulk screening, the Bulk Data shapes (pure): the input a `$screen` takes (FHIR Bulk Data
 * NDJSON files or an `$export` output manifest) and the output manifest it answers with
 * (https://hl7.org/fhir/uv/bulkdata/export.html#response---complete-status).
 */

export const NDJSON_FORMAT = 'application/fhir+ndjson';

/** One input file: its resource type (when known) and where it is (`file://`, a path, or http(s)). */
export interface BulkInput {
  type?: string;
  url: string;
}

/** A Bulk Data output manifest as `$export` answers it (the fields this adapter reads or writes). */
export interface BulkManifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: boolean;
  output: { type: string; url: string; count?: number }[];
  error: { type: string; url: string; count?: number }[];
  extension?: Record<string, unknown>;
}

/** Result of reading an `$export` manifest: its files, or why it is not one. */
export function inputsOfManifest(value: unknown): { ok: true; inputs: BulkInput[] } | { ok: false; reason: string } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, reason: 'a Bulk Data manifest is a JSON object' };
  const output = (value as { output?: unknown }).output;
  if (!Array.isArray(output)) return { ok: false, reason: 'a Bulk Data manifest has an "output" array' };
  const inputs: BulkInput[] = [];
  for (const [index, item] of output.entries()) {
    const { type, url } = (item ?? {}) as { type?: unknown; url?: unknown };
    if (typeof url !== 'string' || url.length === 0) return { ok: false, reason: `output[${index}] has no "url"` };
    if (type !== undefined && typeof type !== 'string') return { ok: false, reason: `output[${index}].type must be a string` };
    inputs.push({ url, ...(typeof type === 'string' ? { type } : {}) });
  }
  return { ok: true, inputs };
}

/** A type alias (not an interface) so that it is a `Record<string, number>` too. */
export type ScreeningCounts = {
  eligible: number;
  'not-eligible': number;
  undetermined: number;
  error: number;
};

export const emptyCounts = (): ScreeningCounts => ({ eligible: 0, 'not-eligible': 0, undetermined: 0, error: 0 });

export interface OutputFile {
  /** Resource type of the file's lines. */
  type: string;
  /** File name in the screening's output folder. */
  file: string;
  count: number;
}

/** Extension key under which the manifest carries the screening's own figures. */
export const SCREENING_EXTENSION = 'http://forfait-fhir.org/fhir/StructureDefinition/bulk-screening';

/**
 * The manifest of a finished bulk screening. `fileUrl` turns a file name into the URL it is
 * served at (ours, authenticated: `requiresAccessToken` follows).
 */
export function outputManifest(options: {
  transactionTime: string;
  request: string;
  requiresAccessToken: boolean;
  output: readonly OutputFile[];
  errors: readonly OutputFile[];
  fileUrl: (file: string) => string;
  program: string;
  asOf: string;
  counts: ScreeningCounts;
  tasksWritten: number;
}): BulkManifest {
  const entry = (file: OutputFile) => ({ type: file.type, url: options.fileUrl(file.file), count: file.count });
  return {
    transactionTime: options.transactionTime,
    request: options.request,
    requiresAccessToken: options.requiresAccessToken,
    output: options.output.map(entry),
    error: options.errors.filter((file) => file.count > 0).map(entry),
    extension: {
      [SCREENING_EXTENSION]: { program: options.program, asOf: options.asOf, counts: options.counts, tasksWritten: options.tasksWritten },
    },
  };
}

/** One line of the error file: an OperationOutcome naming the input file and line, never its content. */
export function inputIssue(code: string, diagnostics: string, location?: string): fhir4.OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code: code as fhir4.OperationOutcomeIssue['code'], diagnostics, ...(location ? { location: [location] } : {}) }],
  };
}
