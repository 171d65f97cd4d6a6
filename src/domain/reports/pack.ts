/**
 * Report packs (DOMAIN.md 2, Evaluation: annual activity report, interim report at 18 months,
 * final evaluation): the MeasureReports of the program's Measures in the pack, as a FHIR
 * `collection` Bundle, or as CSV (one row per population count and per score; columns in
 * notes/report-api.md section 7). Pure.
 */
import { deterministicUuid, FORFAIT_UUID_NAMESPACE } from '../ids.js';
import { formatScore, scoreUnit, type GroupResults } from './measure-report.js';
import { REPORT_PACK_IDENTIFIER_SYSTEM, type PopulationResult, type Score } from './types.js';

export interface PackHeader {
  program: string;
  pack: string;
  period: { start: string; end: string };
  /** `system|value` of the centre, when the pack is one centre's. */
  centre?: string;
}

function packKey(header: PackHeader): string {
  return [header.program, header.pack, header.period.start, header.period.end, ...(header.centre ? [header.centre] : [])].join('|');
}

/** The pack as a `collection` Bundle; `reports` in Measure id order; `timestamp` a FHIR instant. */
export function packBundle(header: PackHeader, reports: readonly { measureId: string; report: fhir4.MeasureReport }[], timestamp: string): fhir4.Bundle {
  const key = packKey(header);
  return {
    resourceType: 'Bundle',
    identifier: { system: REPORT_PACK_IDENTIFIER_SYSTEM, value: key },
    type: 'collection',
    timestamp,
    entry: reports.map(({ measureId, report }) => ({ fullUrl: `urn:uuid:${deterministicUuid(FORFAIT_UUID_NAMESPACE, `MeasureReport|${key}|${measureId}`)}`, resource: report })),
  };
}

export const CSV_COLUMNS = ['pack', 'program', 'measure', 'period_start', 'period_end', 'centre', 'group', 'stratifier', 'stratum', 'population', 'count', 'score', 'unit'] as const;

/** RFC 4180 field: quoted when it holds a comma, a quote or a line break. */
function field(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/** The pack as CSV (RFC 4180, CRLF, header first): scores with their fixed decimals (`formatScore`). */
export function packCsv(header: PackHeader, measures: readonly { measureId: string; groups: GroupResults }[]): string {
  const rows: string[][] = [];
  for (const { measureId, groups } of measures) {
    const base = [header.pack, header.program, measureId, header.period.start, header.period.end, header.centre ?? ''];
    for (const { id, result } of groups) {
      const emit = (stratifier: string, stratum: string, populations: readonly PopulationResult[], score: Score | undefined): void => {
        for (const population of populations) rows.push([...base, id, stratifier, stratum, population.code, String(population.count), '', '']);
        if (score) rows.push([...base, id, stratifier, stratum, 'measure-score', '', formatScore(score), scoreUnit(score)]);
      };
      emit('', '', result.populations, result.score);
      for (const stratifier of result.stratifiers) for (const stratum of stratifier.strata) emit(stratifier.code, stratum.key, stratum.populations, stratum.score);
    }
  }
  return [CSV_COLUMNS.join(','), ...rows.map((row) => row.map(field).join(','))].join('\r\n') + '\r\n';
}
