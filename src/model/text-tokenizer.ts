/**
 * The tokenizer a model's text tower was trained with, chosen by what its directory says (model-dir.ts):
 * CLIP's BPE, or its tokenizer.json run by Hugging Face's library, with NLLB's language code for NLLB-CLIP.
 */
import { HfTokenizer } from './hf-tokenizer.js';
import type { ModelSpec } from './model-dir.js';
import { NllbTokenizer } from './nllb-tokenizer.js';
import type { TextTokenizer } from './text-encoder.js';
import { ClipTokenizer } from './tokenizer.js';

export type ModelTokenizer = ClipTokenizer | HfTokenizer | NllbTokenizer;

export async function loadTextTokenizer(spec: Pick<ModelSpec, 'tokenizer' | 'tokenizerPath' | 'contextLength'>): Promise<ModelTokenizer & TextTokenizer> {
  if (spec.tokenizer.kind === 'hf') {
    const options = { contextLength: spec.contextLength, cleaning: spec.tokenizer.cleaning };
    if (spec.tokenizer.languageCodes === 'flores-200') return NllbTokenizer.fromDir(spec.tokenizerPath, options);
    return HfTokenizer.fromDir(spec.tokenizerPath, options);
  }
  return ClipTokenizer.fromFile(spec.tokenizerPath);
}
