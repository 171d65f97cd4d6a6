/**
 * Program evaluation reports (issue #5): loads the indicator Measures of `profiles/` (and
 * `SITE_DIR/profiles/`), reads what they need from the FHIR server of record, and evaluates
 * them with the pure kinds of src/domain/reports/. Thin: searches, the centre's members and
 * patients, and the clock. Logs nothing about patients.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { dataNeeds, MeasureDefinitionError, parseMeasure } from '../domain/reports/measure-definition.js';
import { evaluateGroups, measureReportOf, type GroupResults } from '../domain/reports/measure-report.js';
import { packBundle, packCsv, type PackHeader } from '../domain/reports/pack.js';
import { EMPTY_DATA, type CentreScope, type DataKey, type KindContext, type MeasureDefinition, type ReportData, type ReportPack, type ReportPeriod } from '../domain/reports/types.js';
import { enumeratedCodes } from '../domain/value-sets.js';
import { referenceKey } from '../domain/references.js';
import type { CentreDirectoryCache } from '../fhir/centre-directory.js';
import type { FhirServer } from '../fhir/fhir-server.port.js';
import { PROGRAM_CODE_SYSTEM } from '../programs/enrolment-schema.js';
import type { LoadedProgram, ProgramCatalog } from '../programs/schema.js';

/** "Ask a large _count": the embedded server has no paging; a real one pages and we follow `next`. */
const LARGE_COUNT = '10000';
/** References per search (`subject=Patient/a,Patient/b,…`), to keep URLs short. */
const CHUNK = 40;

/** A request the service cannot answer as asked: the HTTP layer turns it into a 400 or 403. */
export class ReportRequestError extends Error {
  override name = 'ReportRequestError';
  constructor(
    message: string,
    readonly parameter: string,
    /** `unknown-centre`: a centre that is not one of the program's (403 for a client bound to a centre). */
    readonly reason: 'invalid' | 'unknown-centre' = 'invalid',
  ) {
    super(message);
  }
}

/** Loads `Measure-*.json` of the profiles folder, overlaid file by file by `SITE_DIR/profiles/`. */
export function loadMeasures(catalog: ProgramCatalog, profilesDir: string, siteDir?: string): Map<string, MeasureDefinition> {
  const files = new Map<string, string>();
  for (const dir of [profilesDir, siteDir ? path.join(siteDir, 'profiles') : undefined]) {
    if (!dir || !existsSync(dir)) continue;
    for (const name of readdirSync(dir)) if (/^Measure-.+\.json$/.test(name)) files.set(name, path.join(dir, name));
  }
  const measures = new Map<string, MeasureDefinition>();
  for (const file of [...files.values()].sort()) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (error) {
      throw new MeasureDefinitionError(`${file}: not valid JSON (${(error as Error).message})`);
    }
    const measure = parseMeasure(json, file);
    if (measures.has(measure.id)) throw new MeasureDefinitionError(`${file}: field id: duplicate Measure id ${measure.id}`);
    const program = catalog.programs.get(measure.programId);
    if (!program) continue; // a program this instance does not run (PROGRAMS)
    const { valueSets } = dataNeeds([measure]);
    for (const id of valueSets) if (!catalog.valueSets.has(id)) throw new MeasureDefinitionError(`${file}: a group names value set ${id}, which is not in mappings/value-sets/`);
    for (const group of measure.groups) {
      const dimension = (group.parameters as { dimension?: string }).dimension;
      if (dimension !== undefined && !catalog.units.dimensions[dimension]) throw new MeasureDefinitionError(`${file}: group ${group.id}: unit dimension ${dimension} is not in units.json`);
    }
    measures.set(measure.id, measure);
  }
  return measures;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const result: T[][] = [];
  for (let index = 0; index < items.length; index += size) result.push(items.slice(index, index + size));
  return result;
}

export interface ReportRequest {
  period: ReportPeriod;
  /** `Organization/{id}` or `system|value`; undefined: the whole program. */
  centre?: string;
}

export interface PackResult {
  bundle: fhir4.Bundle;
  csv: () => string;
}

export class ReportsService {
  constructor(
    private readonly fhir: FhirServer,
    private readonly catalog: ProgramCatalog,
    private readonly directory: CentreDirectoryCache,
    readonly definitions: ReadonlyMap<string, MeasureDefinition>,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** The Measures, sorted by id; of one program when given. */
  measures(programId?: string): MeasureDefinition[] {
    return [...this.definitions.values()].filter((m) => !programId || m.programId === programId).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  measure(id: string): MeasureDefinition | undefined {
    return this.definitions.get(id);
  }

  /**
   * The Measure as served: the file's resource plus one `useContext` of type `venue` per
   * participating centre of its program (centres.json), `valueReference` = the centre's
   * Organization (when stored) with its identifier and name; only `onlyCentre` (`system|value`)
   * when given (a client bound to a centre).
   */
  async servedMeasure(measure: MeasureDefinition, onlyCentre?: string): Promise<fhir4.Measure> {
    const program = this.program(measure.programId);
    const directory = await this.directory.get(program);
    const venues: fhir4.UsageContext[] = program.centres
      .filter((centre) => onlyCentre === undefined || `${centre.identifier.system}|${centre.identifier.value}` === onlyCentre)
      .map((centre) => {
        const label = `${centre.identifier.system}|${centre.identifier.value}`;
        const organization = [...directory.members.entries()].find(([key, member]) => key.startsWith('Organization/') && member.centre === label)?.[0];
        return {
          code: { system: 'http://terminology.hl7.org/CodeSystem/usage-context-type', code: 'venue' },
          valueReference: { ...(organization ? { reference: organization } : {}), identifier: { system: centre.identifier.system, value: centre.identifier.value }, ...(centre.name ? { display: centre.name } : {}) },
        };
      });
    return { ...measure.resource, useContext: [...(measure.resource.useContext ?? []), ...venues] };
  }

  get programIds(): string[] {
    return [...new Set(this.measures().map((m) => m.programId))].sort();
  }

  private program(programId: string): LoadedProgram {
    const program = this.catalog.programs.get(programId);
    if (!program) throw new ReportRequestError(`Unknown program ${programId}`, 'program');
    return program;
  }

  /**
   * The centre scope of `centre` (`Organization/{id}` or `system|value`) for a program: its
   * Organization, its members in the centre directory, and (when `withPatients`) the patients
   * whose GP is one of them.
   */
  async centreScope(programId: string, centre: string, withPatients = true): Promise<CentreScope & { label: string }> {
    const program = this.program(programId);
    const directory = await this.directory.get(program);
    let label: string | undefined;
    let organization: string | undefined;
    if (/^Organization\/[A-Za-z0-9\-.]{1,64}$/.test(centre)) {
      const member = directory.members.get(centre);
      if (member) {
        label = member.centre;
        organization = centre;
      }
    } else if (/^[^|\s]+\|[^|\s]+$/.test(centre) && program.centres.some((c) => `${c.identifier.system}|${c.identifier.value}` === centre)) {
      label = centre;
      organization = [...directory.members.entries()].find(([key, member]) => key.startsWith('Organization/') && member.centre === centre)?.[0];
    } else if (!centre.includes('|') && !centre.startsWith('Organization/')) {
      throw new ReportRequestError('A centre is Organization/{id} or the centre identifier system|value', 'centre');
    }
    if (!label) throw new ReportRequestError(`${centre} is not a participating centre of ${programId}`, 'centre', 'unknown-centre');
    const members = new Set([...directory.members.entries()].filter(([, member]) => member.centre === label).map(([key]) => key));
    const patients = new Set<string>();
    if (withPatients) {
      const practitioners = [...members].filter((key) => !key.startsWith('Organization/'));
      for (const part of chunks(practitioners, CHUNK)) {
        const found = await this.fhir.searchAll<fhir4.Patient>('Patient', { 'general-practitioner': part.join(','), _count: LARGE_COUNT });
        for (const patient of found) patients.add(`Patient/${patient.id}`);
      }
    }
    const [system, value] = label.split('|') as [string, string];
    // No Organization stored for the centre yet: it manages nothing (zero figures, reporter by identifier).
    return { ...(organization ? { organization } : {}), identifier: { system, value }, patients, members, label };
  }

  /** Reads what the Measures need for a program from the FHIR server of record. */
  private async load(program: LoadedProgram, measures: readonly MeasureDefinition[]): Promise<ReportData> {
    const { keys, valueSets } = dataNeeds(measures);
    const url = program.definition.url;
    const byIdentifier = <T extends fhir4.Resource>(type: string, suffix: string): Promise<T[]> => this.fhir.searchAll<T>(type, { identifier: `${url}/${suffix}|`, _count: LARGE_COUNT });
    const need = (key: DataKey): boolean => keys.has(key);
    const data: { -readonly [K in keyof ReportData]: ReportData[K] } = { ...EMPTY_DATA };
    // Always read: everything attached to an enrolment is scoped to a centre through its episode.
    const episodes = await this.fhir.searchAll<fhir4.EpisodeOfCare>('EpisodeOfCare', { type: `${PROGRAM_CODE_SYSTEM}|${program.definition.id}`, _count: LARGE_COUNT });
    data.episodes = episodes;
    const episodeRefs = episodes.map((e) => `EpisodeOfCare/${e.id}`);
    const patientRefs = [...new Set(episodes.flatMap((e) => referenceKey(e.patient) ?? []))];
    if (need('carePlans')) data.carePlans = await byIdentifier<fhir4.CarePlan>('CarePlan', 'care-plan');
    if (need('careTeams')) data.careTeams = await byIdentifier<fhir4.CareTeam>('CareTeam', 'care-team');
    if (need('claims')) data.claims = await byIdentifier<fhir4.Claim>('Claim', 'claim');
    if (need('invoices')) data.invoices = await byIdentifier<fhir4.Invoice>('Invoice', 'invoice');
    if (need('tasks')) data.tasks = await byIdentifier<fhir4.Task>('Task', 'enrolment-proposal');
    if (need('guidanceResponses')) data.guidanceResponses = await byIdentifier<fhir4.GuidanceResponse>('GuidanceResponse', 'guidance-response');
    if (need('encounters')) {
      const encounters: fhir4.Encounter[] = [];
      for (const part of chunks(episodeRefs, CHUNK)) encounters.push(...(await this.fhir.searchAll<fhir4.Encounter>('Encounter', { 'episode-of-care': part.join(','), _count: LARGE_COUNT })));
      data.encounters = encounters;
    }
    if (need('claimResponses')) {
      const responses: fhir4.ClaimResponse[] = [];
      for (const part of chunks(data.claims.map((c) => `Claim/${c.id}`), CHUNK)) responses.push(...(await this.fhir.searchAll<fhir4.ClaimResponse>('ClaimResponse', { request: part.join(','), _count: LARGE_COUNT })));
      data.claimResponses = responses;
    }
    if (need('observations')) {
      const codes = [...valueSets].flatMap((id) => {
        const valueSet = this.catalog.valueSets.get(id);
        return valueSet ? enumeratedCodes(valueSet).map((c) => `${c.system}|${c.code}`) : [];
      });
      const observations: fhir4.Observation[] = [];
      if (codes.length) {
        for (const part of chunks(patientRefs, CHUNK)) observations.push(...(await this.fhir.searchAll<fhir4.Observation>('Observation', { subject: part.join(','), code: codes.join(','), _count: LARGE_COUNT })));
      }
      data.observations = observations;
    }
    if (need('conditions')) {
      const conditions: fhir4.Condition[] = [];
      for (const part of chunks(patientRefs, CHUNK)) conditions.push(...(await this.fhir.searchAll<fhir4.Condition>('Condition', { subject: part.join(','), _count: LARGE_COUNT })));
      data.conditions = conditions;
    }
    return data;
  }

  private context(program: LoadedProgram, period: ReportPeriod): KindContext {
    const capacity = program.enrolment?.capacity;
    const budget = program.billing?.budget?.amount;
    return {
      program: { id: program.definition.id, url: program.definition.url, timeZone: program.definition.timeZone, ...(capacity !== undefined ? { capacity } : {}), ...(budget !== undefined ? { budget } : {}) },
      period,
      valueSets: this.catalog.valueSets,
      units: this.catalog.units,
    };
  }

  private async scopeFor(programId: string, measures: readonly MeasureDefinition[], centre: string | undefined): Promise<(CentreScope & { label: string }) | undefined> {
    if (!centre) return undefined;
    const { keys } = dataNeeds(measures);
    return this.centreScope(programId, centre, keys.has('tasks') || keys.has('guidanceResponses'));
  }

  private async evaluateAll(programId: string, measures: readonly MeasureDefinition[], request: ReportRequest): Promise<{ scope: (CentreScope & { label: string }) | undefined; results: { measure: MeasureDefinition; groups: GroupResults; report: fhir4.MeasureReport }[] }> {
    const program = this.program(programId);
    const scope = await this.scopeFor(programId, measures, request.centre);
    const data = await this.load(program, measures);
    const context = this.context(program, request.period);
    const date = this.now().toISOString();
    const results = measures.map((measure) => {
      const input = { measure, context, ...(scope ? { centre: scope } : {}), date };
      const groups = evaluateGroups({ ...input, data });
      return { measure, groups, report: measureReportOf(input, groups) };
    });
    return { scope, results };
  }

  /** `$evaluate-measure`: the MeasureReport of one Measure. */
  async evaluate(measureId: string, request: ReportRequest): Promise<fhir4.MeasureReport> {
    const measure = this.definitions.get(measureId);
    if (!measure) throw new ReportRequestError(`Unknown Measure ${measureId}`, 'id');
    const { results } = await this.evaluateAll(measure.programId, [measure], request);
    return (results[0] as { report: fhir4.MeasureReport }).report;
  }

  /** `$report-pack`: the MeasureReports of the program's Measures in the pack, as a Bundle (and CSV). */
  async pack(programId: string, pack: ReportPack, request: ReportRequest): Promise<PackResult> {
    this.program(programId);
    const measures = this.measures(programId).filter((m) => m.packs.includes(pack));
    const { scope, results } = await this.evaluateAll(programId, measures, request);
    const header: PackHeader = { program: programId, pack, period: request.period, ...(scope ? { centre: scope.label } : {}) };
    return {
      bundle: packBundle(header, results.map((r) => ({ measureId: r.measure.id, report: r.report })), this.now().toISOString()),
      csv: () => packCsv(header, results.map((r) => ({ measureId: r.measure.id, groups: r.groups }))),
    };
  }
}
