/**
 * The language of a typed query, for NLLB-CLIP when neither the caller nor the UI names one.
 *
 * eld (Nito-ELD, pure JS, 60 languages, ISO 639-1 out) was measured against tinyld 1.3.4 and franc-min
 * 6.2.0 on 72 short photo-search phrases in 24 languages (test/multilingual-family.test.ts keeps the list):
 * eld's large data got 67 right, tinyld 66, franc-min 48. eld's misses were near neighbours (Swedish read as
 * Norwegian) or Indonesian, which it lacks (read as Malay, a close FLORES-200 neighbour). Its smaller data
 * sets read an English phrase as Tagalog; English being the usual query, the large one is loaded (about 2 s,
 * once, and only by a model that takes language codes).
 */
import { DEFAULT_FLORES_CODE, floresCodeFor } from './language-codes.js';

interface Detector {
  detect(text: string): { language: string; isReliable(): boolean };
}

let detector: Promise<Detector> | null = null;

function loadDetector(): Promise<Detector> {
  detector ??= import('eld/large').then((m) => m.eld as Detector);
  return detector;
}

export interface DetectedLanguage {
  /** What eld said (ISO 639-1), or '' when it could not tell. */
  iso: string;
  /** Its FLORES-200 code, or the default (`eng_Latn`) when eld could not tell or the language has none. */
  flores: string;
  reliable: boolean;
}

export async function detectLanguage(text: string): Promise<DetectedLanguage> {
  const result = (await loadDetector()).detect(text);
  const flores = result.language ? floresCodeFor(result.language) : null;
  return { iso: result.language, flores: flores ?? DEFAULT_FLORES_CODE, reliable: result.language !== '' && result.isReliable() };
}
