import { z } from 'zod';

export const categories = [
  'riot',
  'fight',
  'escape',
  'contraband',
  'fire',
  'hostage',
  'medical',
  'self_harm',
  'external_threat',
  'protest',
  'other',
] as const;
export const Category = z.enum(categories);
export type Category = z.infer<typeof Category>;

export const categoryLabels: Record<Category, { id: string; en: string }> = {
  riot: { id: 'Kerusuhan', en: 'Riot' },
  fight: { id: 'Perkelahian', en: 'Fight' },
  escape: { id: 'Pelarian', en: 'Escape' },
  contraband: { id: 'Narkoba / barang terlarang', en: 'Drugs / contraband' },
  fire: { id: 'Kebakaran', en: 'Fire' },
  hostage: { id: 'Penyanderaan', en: 'Hostage-taking' },
  medical: { id: 'Darurat medis', en: 'Medical emergency' },
  self_harm: { id: 'Melukai diri', en: 'Self-harm' },
  external_threat: { id: 'Ancaman dari luar', en: 'External threat' },
  protest: { id: 'Unjuk rasa / mogok makan', en: 'Protest' },
  other: { id: 'Lainnya', en: 'Other' },
};
