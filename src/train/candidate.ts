/**
 * What the trainer needs from a kind of model it fits: start a fit from the base model on some pairs, run
 * it an epoch at a time, measure it on held-out pairs, keep a copy of its weights, and score photos against
 * captions under those weights blended towards the base. The projection adapters are one kind
 * (adapter-candidate.ts); tuned text-tower blocks plug in beside them the same way, and the trainer's
 * selection, final fit and verdict (trainer.ts `fitAndScore`) serve both unchanged.
 */
export interface CandidateFit<W> {
  /** One pass over the fit's training pairs, in the fit's own seeded order; its mean loss (no regulariser). */
  epoch(): Promise<number>;
  /** Mean contrastive loss on these pairs (indices into the data's pairs), no regulariser. */
  heldOutLoss(pairs: readonly number[]): Promise<number>;
  /** A copy of the weights now. */
  snapshot(): W;
  /** The learned logit scale (e^s) now. */
  logitScale(): number;
}

export interface CandidateKind<W> {
  readonly name: string;
  /** A fresh fit from the base model on these pairs (indices into the data's pairs). */
  start(trainPairs: readonly number[], seed: number): CandidateFit<W>;
  /**
   * Cosines of these photo rows (row-major, rows × captions) against every caption, under `weights` blended
   * towards the base model by `blend` (0 = the base model, 1 = the fit as it is: WiSE-FT).
   */
  similarities(weights: W, blend: number, imageRows: readonly number[]): Promise<Float32Array>;
  release(): Promise<void>;
}
