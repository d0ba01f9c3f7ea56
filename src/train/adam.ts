/** Adam (Kingma & Ba) with bias correction, over one flat parameter vector: what CLIP itself trains with. */
export interface AdamOptions {
  learningRate: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

export class Adam {
  private readonly m: Float64Array;
  private readonly v: Float64Array;
  private t = 0;
  private readonly lr: number;
  private readonly b1: number;
  private readonly b2: number;
  private readonly eps: number;

  constructor(size: number, options: AdamOptions) {
    this.m = new Float64Array(size);
    this.v = new Float64Array(size);
    this.lr = options.learningRate;
    this.b1 = options.beta1 ?? 0.9;
    this.b2 = options.beta2 ?? 0.999;
    this.eps = options.epsilon ?? 1e-8;
  }

  /** Updates `params` in place from `grads` (both of the optimiser's size, in the same order every step). */
  step(params: Float32Array | Float64Array, grads: ArrayLike<number>): void {
    this.t++;
    const c1 = 1 - this.b1 ** this.t;
    const c2 = 1 - this.b2 ** this.t;
    for (let i = 0; i < params.length; i++) {
      const k = i;
      const g = grads[i]!;
      const m = (this.m[k] = this.b1 * this.m[k]! + (1 - this.b1) * g);
      const v = (this.v[k] = this.b2 * this.v[k]! + (1 - this.b2) * g * g);
      params[i]! -= (this.lr * (m / c1)) / (Math.sqrt(v / c2) + this.eps);
    }
  }
}
