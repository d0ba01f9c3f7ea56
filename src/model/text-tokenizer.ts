/**
 * The tokenizer a model's text tower was trained with, chosen by what its directory says (model-dir.ts):
 * CLIP's BPE, or its tokenizer.json run by Hugging Face's library.
 */
import { HfTokenizer } from './hf-tokenizer.js';
import type { ModelSpec } from './model-dir.js';
import type { TextTokenizer } from './text-encoder.js';
import { ClipTokenizer } from './tokenizer.js';

export type ModelTokenizer = ClipTokenizer | HfTokenizer;

export async function loadTextTokenizer(spec: Pick<ModelSpec, 'tokenizer' | 'tokenizerPath' | 'contextLength'>): Promise<ModelTokenizer & TextTokenizer> {
  if (spec.tokenizer.kind === 'hf') {
    return HfTokenizer.fromDir(spec.tokenizerPath, { contextLength: spec.contextLength, cleaning: spec.tokenizer.cleaning });
  }
  return ClipTokenizer.fromFile(spec.tokenizerPath);
}
