/**
 * The SigLIP architecture (Hugging Face's `SiglipModel`, which SigLIP2's fixed-resolution checkpoints use
 * too) as plain data: sizes per preset and seeded weights, read by the graph writer (siglip-onnx-graph.ts)
 * and by the tests' reference forward pass.
 *
 * What differs from CLIP: no class token (the image tower pools with a learned probe attending over all
 * patches, the "MAP" head), tanh-approximated GELU, LayerNorm ε 1e-6, a text tower without causal mask
 * that pools the LAST position (so rows are always padded to the context) through a Linear head with bias,
 * and a sigmoid head whose trained `logit_scale`/`logit_bias` make a cosine a calibrated probability.
 */
import { type BlockWeights, Gaussian, type LayerNormWeights, type LinearWeights, seededRandom, type TransformerConfig } from './clip-architecture.js';

export type SiglipPresetName = 'siglip-tiny' | 'siglip2-tiny' | 'siglip-b-16' | 'siglip2-b-16-256';
export type SiglipTokenizerKind = 'siglip' | 'gemma';

export interface SiglipArchitecture {
  imageSize: number;
  patchSize: number;
  vision: TransformerConfig;
  text: TransformerConfig & { contextLength: number; vocabSize: number };
  /** Output of the text head; equals the vision width (the image tower has no projection). */
  embedDim: number;
  /** ln of the initial scale (ln 10) and the initial bias (-10), SigLIP's initialisation. */
  logitScaleInit: number;
  logitBiasInit: number;
  /** Which tokenizer family: SigLIP's SentencePiece Unigram or SigLIP2's Gemma BPE. */
  tokenizer: SiglipTokenizerKind;
}

export const SIGLIP_LN_EPSILON = 1e-6;
export const SIGLIP_CONTEXT = 64;

export function isSiglipPreset(name: string): name is SiglipPresetName {
  return name === 'siglip-tiny' || name === 'siglip2-tiny' || name === 'siglip-b-16' || name === 'siglip2-b-16-256';
}

export function siglipPresetArchitecture(preset: SiglipPresetName, vocabSize: number): SiglipArchitecture {
  const common = { logitScaleInit: Math.log(10), logitBiasInit: -10 };
  switch (preset) {
    case 'siglip-tiny':
      // 224 px like siglip-base-patch16-224; 48-d so code assuming 768 (or CLIP's 512/64) fails loudly.
      return {
        ...common,
        imageSize: 224,
        patchSize: 32,
        vision: { width: 48, layers: 2, heads: 4 },
        text: { width: 48, layers: 2, heads: 4, contextLength: SIGLIP_CONTEXT, vocabSize },
        embedDim: 48,
        tokenizer: 'siglip',
      };
    case 'siglip2-tiny':
      // 256 px like ViT-B-16-SigLIP2-256: a second input size through the same code.
      return {
        ...common,
        imageSize: 256,
        patchSize: 32,
        vision: { width: 48, layers: 2, heads: 4 },
        text: { width: 48, layers: 2, heads: 4, contextLength: SIGLIP_CONTEXT, vocabSize },
        embedDim: 48,
        tokenizer: 'gemma',
      };
    case 'siglip-b-16':
      // google/siglip-base-patch16-224's shapes (vocabulary size aside): for benchmarks.
      return {
        ...common,
        imageSize: 224,
        patchSize: 16,
        vision: { width: 768, layers: 12, heads: 12 },
        text: { width: 768, layers: 12, heads: 12, contextLength: SIGLIP_CONTEXT, vocabSize },
        embedDim: 768,
        tokenizer: 'siglip',
      };
    case 'siglip2-b-16-256':
      // google/siglip2-base-patch16-256's shapes, for benchmarks (config.json there): vision 12 layers × 768,
      // 12 heads, MLP 3072, 256 px in 16 px patches (256 patches); text 12 layers × 768, 12 heads, MLP 3072,
      // max_position_embeddings 64. Its Gemma vocabulary has 256,000 rows; this preset keeps the tiny trained
      // Gemma tokenizer's few hundred (`vocabSize`), since a lookup costs the same whatever the table's height.
      return {
        ...common,
        imageSize: 256,
        patchSize: 16,
        vision: { width: 768, layers: 12, heads: 12 },
        text: { width: 768, layers: 12, heads: 12, contextLength: SIGLIP_CONTEXT, vocabSize },
        embedDim: 768,
        tokenizer: 'gemma',
      };
  }
}

export interface SiglipVisionWeights {
  /** Conv kernel [width, 3, patch, patch] and its bias. */
  patch: Float32Array;
  patchBias: Float32Array;
  /** [grid², width] */
  positions: Float32Array;
  blocks: BlockWeights[];
  postLn: LayerNormWeights;
  head: {
    /** [width] */
    probe: Float32Array;
    q: LinearWeights;
    k: LinearWeights;
    v: LinearWeights;
    out: LinearWeights;
    ln: LayerNormWeights;
    fc1: LinearWeights;
    fc2: LinearWeights;
  };
}

export interface SiglipTextWeights {
  /** [vocab, width] */
  tokens: Float32Array;
  /** [contextLength, width] */
  positions: Float32Array;
  blocks: BlockWeights[];
  finalLn: LayerNormWeights;
  head: LinearWeights;
}

export interface SiglipWeights {
  arch: SiglipArchitecture;
  vision: SiglipVisionWeights;
  text: SiglipTextWeights;
}

/**
 * Seeded weights. Unlike CLIP's builder, biases and LayerNorm gains are random too (small), so a graph
 * that drops or misplaces one differs from the reference forward pass.
 */
export function siglipSeededWeights(arch: SiglipArchitecture, seed: number): SiglipWeights {
  const g = new Gaussian(seededRandom(seed));
  const grid = arch.imageSize / arch.patchSize;
  if (!Number.isInteger(grid)) throw new Error(`image size ${arch.imageSize} is not a multiple of patch ${arch.patchSize}`);
  const V = arch.vision.width;
  const T = arch.text.width;
  const vision: SiglipVisionWeights = {
    patch: g.fill(V * 3 * arch.patchSize ** 2, (3 * arch.patchSize ** 2) ** -0.5),
    patchBias: g.fill(V, 0.02),
    positions: g.fill(grid * grid * V, V ** -0.5),
    blocks: Array.from({ length: arch.vision.layers }, () => block(g, arch.vision)),
    postLn: norm(g, V),
    head: {
      probe: g.fill(V, 1),
      q: lin(g, V, V, V ** -0.5),
      k: lin(g, V, V, V ** -0.5),
      v: lin(g, V, V, V ** -0.5),
      out: lin(g, V, V, V ** -0.5),
      ln: norm(g, V),
      fc1: lin(g, V, 4 * V, V ** -0.5),
      fc2: lin(g, 4 * V, V, (4 * V) ** -0.5),
    },
  };
  const text: SiglipTextWeights = {
    tokens: g.fill(arch.text.vocabSize * T, 0.5),
    positions: g.fill(arch.text.contextLength * T, 0.1),
    blocks: Array.from({ length: arch.text.layers }, () => block(g, arch.text)),
    finalLn: norm(g, T),
    head: lin(g, T, arch.embedDim, T ** -0.5),
  };
  return { arch, vision, text };
}

function norm(g: Gaussian, width: number): LayerNormWeights {
  const gamma = g.fill(width, 0.1);
  for (let i = 0; i < width; i++) gamma[i]! += 1;
  return { gamma, beta: g.fill(width, 0.05) };
}

function lin(g: Gaussian, inDim: number, outDim: number, std: number): LinearWeights {
  return { w: g.fill(inDim * outDim, std), b: g.fill(outDim, 0.02), inDim, outDim };
}

function block(g: Gaussian, c: TransformerConfig): BlockWeights {
  const std = c.width ** -0.5;
  const resid = std * (2 * c.layers) ** -0.5;
  return {
    ln1: norm(g, c.width),
    q: lin(g, c.width, c.width, std),
    k: lin(g, c.width, c.width, std),
    v: lin(g, c.width, c.width, std),
    out: lin(g, c.width, c.width, resid),
    ln2: norm(g, c.width),
    fc1: lin(g, c.width, 4 * c.width, std),
    fc2: lin(g, 4 * c.width, c.width, (4 * c.width) ** -0.5 * (2 * c.layers) ** -0.5),
  };
}
