import { z } from 'zod';

/** 1 low · 2 medium · 3 high · 4 critical. */
export const Severity = z.number().int().min(1).max(4);
export type Severity = z.infer<typeof Severity>;

export const CRITICAL: Severity = 4;

export const severityLabels: Record<Severity, { id: string; en: string }> = {
  1: { id: 'rendah', en: 'low' },
  2: { id: 'sedang', en: 'medium' },
  3: { id: 'tinggi', en: 'high' },
  4: { id: 'kritis', en: 'critical' },
};
