/**
 * Care volumes (REDIAB Art. 14 "volumes de soins par type"; FNMF sessions per patient by kind
 * and professional category): the sessions (Encounters) recorded on the program's enrolments.
 * Pure.
 */
import { z } from 'zod';
import { CARE_TEAM_ROLE_SYSTEM, SESSION_KIND_SYSTEM } from '../../../programs/enrolment-schema.js';
import { Decimal } from '../../decimal.js';
import { referenceKey } from '../../references.js';
import { codesOf, enrolledDuring, enrolmentsOf, firstDay, inPeriod, monthsOf } from '../records.js';
import { NO_CODE, type IndicatorKind, type PopulationResult, type Score, type StratumResult } from '../types.js';
import { codeList, codedStrata, parseWith, population } from './shared.js';

export const SESSION_RATE_UNIT = '{session}/{patient}';

const sessionsSchema = z.strictObject({
  kind: z.literal('sessions-by-kind-and-category'),
  kinds: codeList,
  categories: codeList,
  stratifiers: z.array(z.enum(['kind', 'category', 'month', 'month-kind'])).default(['kind', 'category']),
});

interface Session {
  kinds: string[];
  categories: string[];
  month: string;
}

function perPatient(sessions: number, patients: number): Score | undefined {
  return patients === 0 ? undefined : { type: 'rate', value: new Decimal(sessions).dividedBy(patients), unit: SESSION_RATE_UNIT };
}

/**
 * Sessions held in the period (Encounter on an enrolment of the program, not cancelled or
 * entered-in-error, `period.start` in the period); the denominator is the number of patients
 * enrolled at some time in the period, and the score sessions per patient. A session counts
 * once in the total and once in each of its participants' categories.
 */
export const sessionsByKindAndCategory: IndicatorKind<z.infer<typeof sessionsSchema>> = {
  parse: (parameters) => parseWith(sessionsSchema, parameters),
  needs: () => ['episodes', 'encounters'],
  evaluate(parameters, data, { program, period }) {
    const enrolments = enrolmentsOf(data.episodes, program);
    const programEpisodes = new Set(enrolments.map((e) => e.reference));
    const patients = new Set(enrolments.filter((e) => enrolledDuring(e, period)).map((e) => e.patient)).size;
    const sessions: Session[] = [];
    for (const encounter of data.encounters) {
      if (encounter.status === 'cancelled' || encounter.status === 'entered-in-error') continue;
      if (!(encounter.episodeOfCare ?? []).some((reference) => programEpisodes.has(referenceKey(reference) ?? ''))) continue;
      const day = firstDay(encounter.period?.start, program.timeZone);
      if (!inPeriod(day, period)) continue;
      const kinds = codesOf(encounter.type, SESSION_KIND_SYSTEM);
      const categories = [...new Set((encounter.participant ?? []).flatMap((participant) => codesOf(participant.type, CARE_TEAM_ROLE_SYSTEM)))];
      sessions.push({ kinds: kinds.length ? [kinds[0] as string] : [NO_CODE], categories: categories.length ? categories : [NO_CODE], month: day.slice(0, 7) });
    }
    const stratum = (count: number): Omit<StratumResult, 'key' | 'system'> => {
      const score = perPatient(count, patients);
      const populations: PopulationResult[] = [population('initial-population', count), population('denominator', patients)];
      return { populations, ...(score ? { score } : {}) };
    };
    const tally = (keysOf: (s: Session) => string[]): Map<string, number> => {
      const counts = new Map<string, number>();
      for (const s of sessions) for (const key of keysOf(s)) counts.set(key, (counts.get(key) ?? 0) + 1);
      return counts;
    };
    const score = perPatient(sessions.length, patients);
    return {
      populations: [population('initial-population', sessions.length), population('denominator', patients)],
      ...(score ? { score } : {}),
      stratifiers: parameters.stratifiers.map((code) => {
        if (code === 'month') {
          const byMonth = tally((s) => [s.month]);
          return { code, strata: monthsOf(period).map((month) => ({ key: month, ...stratum(byMonth.get(month) ?? 0) })) };
        }
        if (code === 'month-kind') {
          // `YYYY-MM|kind`: every month × listed kind (zeros included), then the other kinds found, month by month.
          const byMonthKind = tally((s) => s.kinds.map((kind) => `${s.month}|${kind}`));
          const found = [...new Set(sessions.flatMap((s) => s.kinds))].filter((kind) => !parameters.kinds.includes(kind)).sort();
          const kinds = [...parameters.kinds, ...found];
          return { code, strata: monthsOf(period).flatMap((month) => kinds.map((kind) => ({ key: `${month}|${kind}`, populations: [population('initial-population', byMonthKind.get(`${month}|${kind}`) ?? 0)] }))) };
        }
        const counts = tally((s) => (code === 'kind' ? s.kinds : s.categories));
        const system = code === 'kind' ? SESSION_KIND_SYSTEM : CARE_TEAM_ROLE_SYSTEM;
        return { code, strata: codedStrata(system, code === 'kind' ? parameters.kinds : parameters.categories, counts.keys(), (key) => stratum(counts.get(key) ?? 0)) };
      }),
    };
  },
};
