import { seededRandom } from '../util/seeded-random.js';

/**
 * The CLIP architecture as plain data: sizes per preset and seeded weights.
 * Both the ONNX graph writer and the reference forward pass in the tests read these,
 * so the two can be compared number for number.
 */

export interface TransformerConfig {
  width: number;
  layers: number;
  heads: number;
}

export interface ClipArchitecture {
  imageSize: number;
  patchSize: number;
  vision: TransformerConfig;
  text: TransformerConfig & { contextLength: number; vocabSize: number };
  embedDim: number;
  /** ln(1/0.07), CLIP's initial logit scale. */
  logitScaleInit: number;
}

export type PresetName = 'tiny' | 'vit-b-32';

export function presetArchitecture(preset: PresetName, vocabSize: number): ClipArchitecture {
  const common = { imageSize: 224, patchSize: 32, logitScaleInit: Math.log(1 / 0.07) };
  if (preset === 'tiny') {
    return {
      ...common,
      vision: { width: 128, layers: 2, heads: 4 },
      text: { width: 128, layers: 2, heads: 4, contextLength: 77, vocabSize },
      // Not 512, so code that assumes ViT-B/32's dimension fails loudly in tests.
      embedDim: 64,
    };
  }
  return {
    ...common,
    vision: { width: 768, layers: 12, heads: 12 },
    text: { width: 512, layers: 12, heads: 8, contextLength: 77, vocabSize },
    embedDim: 512,
  };
}

export interface LayerNormWeights {
  gamma: Float32Array;
  beta: Float32Array;
}

/** A linear map stored as [in, out] so that y = x · W + b. */
export interface LinearWeights {
  w: Float32Array;
  b: Float32Array;
  inDim: number;
  outDim: number;
}

/**
 * A block's MLP activation: CLIP's (OpenAI's) QuickGELU x·σ(1.702x), or the exact GELU 0.5·x·(1 + erf(x/√2))
 * of open_clip's nn.GELU (LAION-trained OpenCLIP towers).
 */
export type MlpActivation = 'quick_gelu' | 'gelu';

export interface BlockWeights {
  /** Default 'quick_gelu' (what clipdex's towers are). */
  activation?: MlpActivation;
  ln1: LayerNormWeights;
  q: LinearWeights;
  k: LinearWeights;
  v: LinearWeights;
  out: LinearWeights;
  ln2: LayerNormWeights;
  fc1: LinearWeights;
  fc2: LinearWeights;
}

export interface VisionWeights {
  /** Conv kernel [width, 3, patch, patch]. */
  patch: Float32Array;
  classEmbedding: Float32Array;
  /** [(grid² + 1), width] */
  positions: Float32Array;
  preLn: LayerNormWeights;
  blocks: BlockWeights[];
  postLn: LayerNormWeights;
  /** [width, embedDim], no bias. */
  projection: Float32Array;
}

export interface TextWeights {
  /** [vocab, width] */
  tokens: Float32Array;
  /** [contextLength, width] */
  positions: Float32Array;
  blocks: BlockWeights[];
  finalLn: LayerNormWeights;
  projection: Float32Array;
}

export interface ClipWeights {
  arch: ClipArchitecture;
  vision: VisionWeights;
  text: TextWeights;
}

export { seededRandom };

/** Normal samples from a seeded uniform source (Box-Muller), so a seed always gives the same weights. */
export class Gaussian {
  private spare: number | null = null;
  constructor(private readonly uniform: () => number) {}

  next(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const u = 1 - this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  fill(n: number, std: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.next() * std;
    return out;
  }
}

/**
 * Weights initialised as OpenAI's CLIP does (`initialize_parameters`): attention in-projections
 * with std width^-½, residual out-projections scaled down by (2·layers)^-½, unit LayerNorms, zero biases.
 * Random weights still give embeddings that are not collapsed, which is what the tests need.
 */
export function seededWeights(arch: ClipArchitecture, seed: number): ClipWeights {
  const g = new Gaussian(seededRandom(seed));
  const { vision: vc, text: tc } = arch;
  const grid = arch.imageSize / arch.patchSize;
  if (!Number.isInteger(grid)) throw new Error(`image size ${arch.imageSize} is not a multiple of patch ${arch.patchSize}`);
  const vScale = vc.width ** -0.5;
  const vision: VisionWeights = {
    patch: g.fill(vc.width * 3 * arch.patchSize * arch.patchSize, (3 * arch.patchSize * arch.patchSize) ** -0.5),
    classEmbedding: g.fill(vc.width, vScale),
    positions: g.fill((grid * grid + 1) * vc.width, vScale),
    preLn: layerNorm(vc.width),
    blocks: Array.from({ length: vc.layers }, () => block(g, vc)),
    postLn: layerNorm(vc.width),
    projection: g.fill(vc.width * arch.embedDim, vScale),
  };
  const text: TextWeights = {
    tokens: g.fill(tc.vocabSize * tc.width, 0.02),
    positions: g.fill(tc.contextLength * tc.width, 0.01),
    blocks: Array.from({ length: tc.layers }, () => block(g, tc)),
    finalLn: layerNorm(tc.width),
    projection: g.fill(tc.width * arch.embedDim, tc.width ** -0.5),
  };
  return { arch, vision, text };
}

export function layerNorm(width: number): LayerNormWeights {
  return { gamma: new Float32Array(width).fill(1), beta: new Float32Array(width) };
}

export function linear(g: Gaussian, inDim: number, outDim: number, std: number): LinearWeights {
  return { w: g.fill(inDim * outDim, std), b: new Float32Array(outDim), inDim, outDim };
}

function block(g: Gaussian, c: TransformerConfig): BlockWeights {
  const attnStd = c.width ** -0.5;
  const projStd = attnStd * (2 * c.layers) ** -0.5;
  const fcStd = (2 * c.width) ** -0.5;
  return {
    ln1: layerNorm(c.width),
    q: linear(g, c.width, c.width, attnStd),
    k: linear(g, c.width, c.width, attnStd),
    v: linear(g, c.width, c.width, attnStd),
    out: linear(g, c.width, c.width, projStd),
    ln2: layerNorm(c.width),
    fc1: linear(g, c.width, 4 * c.width, fcStd),
    fc2: linear(g, 4 * c.width, c.width, projStd),
  };
}

/** Parameters of each tower, counted from the shapes alone (no allocation), to check presets against published sizes. */
export function parameterCount(arch: ClipArchitecture): { vision: number; text: number } {
  const block = (w: number) => 2 * 2 * w + 4 * (w * w + w) + (w * 4 * w + 4 * w) + (4 * w * w + w);
  const { vision: v, text: t } = arch;
  const grid = arch.imageSize / arch.patchSize;
  const vision =
    v.width * 3 * arch.patchSize ** 2 + v.width + (grid * grid + 1) * v.width + 2 * v.width + v.layers * block(v.width) + 2 * v.width + v.width * arch.embedDim;
  const text = t.vocabSize * t.width + t.contextLength * t.width + t.layers * block(t.width) + 2 * t.width + t.width * arch.embedDim;
  return { vision, text };
}
