/**
 * The training loss in float64, written as plainly as possible and independently of the ONNX graph:
 * the reference the graph's hand-derived gradients are checked against (by finite differences).
 */
export interface ReferenceInput {
  images: ArrayLike<number>;
  texts: ArrayLike<number>;
  positives: ArrayLike<number>;
  n: number;
  m: number;
  d: number;
}

function projectUnit(rows: ArrayLike<number>, count: number, w: ArrayLike<number>, d: number): number[][] {
  const out: number[][] = [];
  for (let r = 0; r < count; r++) {
    const u = new Array<number>(d).fill(0);
    for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) u[j]! += rows[r * d + k]! * w[k * d + j]!;
    const norm = Math.hypot(...u);
    out.push(u.map((v) => v / norm));
  }
  return out;
}

function logSumExp(xs: number[]): number {
  const max = Math.max(...xs);
  return max + Math.log(xs.reduce((a, x) => a + Math.exp(x - max), 0));
}

export function referenceLoss(input: ReferenceInput, imageW: ArrayLike<number>, textW: ArrayLike<number>, logScale: number, lambda: number): number {
  return referenceTerms(input, imageW, textW, logScale, lambda).loss;
}

export interface ReferenceTerms {
  /** Mean over images of the image→caption cross-entropy against the normalised positives of its row. */
  imageToText: number;
  /** Mean over captions of the caption→image cross-entropy against the normalised positives of its column. */
  textToImage: number;
  /** Squared Frobenius distance of both adapters from the identity (before lambda). */
  penalty: number;
  /** 0.5 · (imageToText + textToImage) + lambda · penalty. */
  loss: number;
}

export function referenceTerms(input: ReferenceInput, imageW: ArrayLike<number>, textW: ArrayLike<number>, logScale: number, lambda: number): ReferenceTerms {
  const { n, m, d } = input;
  const u = projectUnit(input.images, n, imageW, d);
  const v = projectUnit(input.texts, m, textW, d);
  const logits = u.map((ui) => v.map((vj) => Math.exp(logScale) * ui.reduce((a, x, k) => a + x * vj[k]!, 0)));
  const q = (i: number, j: number) => input.positives[i * m + j]!;
  let i2t = 0;
  for (let i = 0; i < n; i++) {
    const lse = logSumExp(logits[i]!);
    let total = 0;
    for (let j = 0; j < m; j++) total += q(i, j);
    for (let j = 0; j < m; j++) i2t -= (q(i, j) / total) * (logits[i]![j]! - lse);
  }
  let t2i = 0;
  for (let j = 0; j < m; j++) {
    const column = logits.map((row) => row[j]!);
    const lse = logSumExp(column);
    let total = 0;
    for (let i = 0; i < n; i++) total += q(i, j);
    for (let i = 0; i < n; i++) t2i -= (q(i, j) / total) * (column[i]! - lse);
  }
  let penalty = 0;
  for (let a = 0; a < d; a++) {
    for (let b = 0; b < d; b++) {
      const eye = a === b ? 1 : 0;
      penalty += (imageW[a * d + b]! - eye) ** 2 + (textW[a * d + b]! - eye) ** 2;
    }
  }
  return { imageToText: i2t / n, textToImage: t2i / m, penalty, loss: 0.5 * (i2t / n + t2i / m) + lambda * penalty };
}
