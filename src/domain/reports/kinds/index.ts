/**
 * The indicator kinds, by the name a Measure group gives in its `text/x-forfait-indicator`
 * expression. A program's indicators compose these; a new kind is the only reason to write code.
 */
import type { IndicatorKind } from '../types.js';
import { activeFileVsCapacity, countEpisodes, declinesByReason, exitsByReason, patientsPerPhase, phaseCompletion, professionalsByCategory, screeningOutcomes } from './enrolment-kinds.js';
import { budget, claimsByForfaitAndCategory } from './money-kinds.js';
import { newDiagnoses, observationChange } from './outcome-kinds.js';
import { sessionsByKindAndCategory } from './session-kinds.js';

export const INDICATOR_KINDS: ReadonlyMap<string, IndicatorKind<never>> = new Map<string, IndicatorKind<never>>([
  ['count-episodes', countEpisodes],
  ['active-file-vs-capacity', activeFileVsCapacity],
  ['exits-by-reason', exitsByReason],
  ['declines-by-reason', declinesByReason],
  ['patients-per-phase', patientsPerPhase],
  ['phase-completion', phaseCompletion],
  ['professionals-by-category', professionalsByCategory],
  ['screening-outcomes', screeningOutcomes],
  ['sessions-by-kind-and-category', sessionsByKindAndCategory],
  ['claims-by-forfait-and-category', claimsByForfaitAndCategory],
  ['budget', budget],
  ['observation-change', observationChange],
  ['new-diagnoses', newDiagnoses],
] as [string, IndicatorKind<never>][]);
