/**
 * Greedy CTC decoding of the recogniser's output (PaddleOCR CTCLabelDecode): at each time step the most
 * likely class; repeats collapse, the blank (class 0) separates them and is dropped. Classes 1…n are the
 * dictionary's lines in order and class n + 1 is a space (PaddleOCR's use_space_char). The confidence is the
 * mean probability of the characters kept, as PaddleOCR reports it.
 */
import { ClipdexError } from '../errors.js';

export interface DecodedText {
  text: string;
  confidence: number;
}

/** The class table: index 0 is the blank. */
export function ctcClasses(dictionaryText: string): string[] {
  const lines = dictionaryText.split(/\r?\n/);
  if (lines.at(-1) === '') lines.pop();
  if (lines.length === 0) throw new ClipdexError('MODEL_INVALID', 'the OCR dictionary is empty');
  return ['', ...lines, ' '];
}

/** One sequence: `probs` holds `steps` rows of `classes.length` probabilities, row-major. */
export function ctcDecode(probs: Float32Array, steps: number, classes: readonly string[]): DecodedText {
  const n = classes.length;
  if (probs.length !== steps * n) {
    throw new ClipdexError('INFERENCE_FAILED', `the OCR recogniser returned ${probs.length} values, expected ${steps} × ${n}`);
  }
  let text = '';
  let sum = 0;
  let kept = 0;
  let previous = -1;
  for (let t = 0; t < steps; t++) {
    let best = 0;
    let bestP = probs[t * n]!;
    for (let c = 1; c < n; c++) {
      const p = probs[t * n + c]!;
      if (p > bestP) {
        bestP = p;
        best = c;
      }
    }
    if (best !== 0 && best !== previous) {
      text += classes[best];
      sum += bestP;
      kept++;
    }
    previous = best;
  }
  return { text, confidence: kept === 0 ? 0 : sum / kept };
}
