import { ClipdexError } from '../errors.js';
import { type ProviderFallback, type ProviderName, tensor } from '../inference/onnx-runtime.js';
import { runTower, type TowerSession } from './tower-session.js';

/**
 * CLIP image tower: preprocessed pixels in, L2-normalised embeddings out.
 * Splits a batch to what the graph accepts (exports with a fixed batch of 1 are run in a loop).
 */
export class ImageEncoder {
  constructor(
    private readonly tower: TowerSession,
    readonly imageSize: number,
    /** Largest batch to send at once even when the graph takes any. */
    private readonly preferredBatch = 16,
  ) {}

  get provider(): ProviderName {
    return this.tower.provider;
  }

  get fallbacks(): ProviderFallback[] {
    return this.tower.fallbacks;
  }

  get batchSize(): number {
    return Math.min(this.tower.maxBatch, this.preferredBatch);
  }

  /** `pixels` holds `count` images as CHW float32, [count, 3, S, S]. */
  async encode(pixels: Float32Array, count: number): Promise<Float32Array[]> {
    const S = this.imageSize;
    const per = 3 * S * S;
    if (pixels.length !== count * per) {
      throw new ClipdexError('INVALID_ARGUMENT', `expected ${count}×3×${S}×${S} = ${count * per} values, got ${pixels.length}`);
    }
    const out: Float32Array[] = [];
    for (let start = 0; start < count; start += this.batchSize) {
      const n = Math.min(this.batchSize, count - start);
      const chunk = pixels.subarray(start * per, (start + n) * per);
      const feeds = { [this.tower.input.name]: tensor('float32', chunk, [n, 3, S, S]) };
      out.push(...(await runTower(this.tower, feeds, n, 'image')));
    }
    return out;
  }

  get dim(): number | null {
    return this.tower.outputDim;
  }

  async release(): Promise<void> {
    await this.tower.session.release();
  }
}
