/**
 * The multilingual families of Immich's zoo as plain data: sizes per preset and seeded weights, read by the
 * graph writer (multilingual-onnx-graph.ts) and by the tests, which compute the pooling and the projection
 * from these same weights on their own.
 *
 * - `xlmr-clip-tiny`: M-CLIP's XLM-Roberta-Large-Vit-B-16Plus. Text: an XLM-RoBERTa encoder (post-LN BERT
 *   layers, exact GELU, RoBERTa's position ids counted from the first non-pad token at padding_idx + 1),
 *   mean-pooled over the attention mask, then M-CLIP's `LinearTransformation` (a Linear with bias). Image:
 *   open_clip's ViT-B-16-plus-240 (a CLIP ViT at 240 px).
 * - `mclip-tiny`: M-CLIP's LABSE-Vit-L-14. The same text head on a LaBSE (BERT) encoder: WordPiece ids,
 *   positions 0…L-1, token type 0. Image: OpenAI's ViT-L-14 (a CLIP ViT at 224 px).
 * - `nllb-siglip-tiny`: open_clip's nllb-clip-base-siglip. Text: NLLB-200's encoder (M2M100: embeddings
 *   scaled by √d, fixed sinusoidal positions counted like RoBERTa's, pre-LN layers with ReLU, a final LN),
 *   the first position pooled (open_clip's `cls_pooler`: the language-code token) and a Linear without bias.
 *   Image: SigLIP's ViT with the MAP head at 384 px.
 *
 * `xlmr-clip-large-b-16plus` and `nllb-siglip-b-16-384` are the first and third at their real shapes (small
 * vocabularies aside), for `npm run bench:families`: slow to build and large, never built by the tests.
 */
import {
  type ClipArchitecture,
  type ClipWeights,
  Gaussian,
  type LayerNormWeights,
  type LinearWeights,
  seededRandom,
  seededWeights,
  type TransformerConfig,
} from './clip-architecture.js';
import type { SiglipArchitecture, SiglipWeights } from './siglip-architecture.js';
import { siglipSeededWeights } from './siglip-architecture.js';

export type MultilingualPresetName = 'xlmr-clip-tiny' | 'mclip-tiny' | 'nllb-siglip-tiny' | 'xlmr-clip-large-b-16plus' | 'nllb-siglip-b-16-384';
export const MULTILINGUAL_PRESETS: readonly MultilingualPresetName[] = ['xlmr-clip-tiny', 'mclip-tiny', 'nllb-siglip-tiny', 'xlmr-clip-large-b-16plus', 'nllb-siglip-b-16-384'];

export function isMultilingualPreset(name: string): name is MultilingualPresetName {
  return (MULTILINGUAL_PRESETS as readonly string[]).includes(name);
}

/** Which text encoder: XLM-RoBERTa (M-CLIP), BERT (LaBSE, M-CLIP) or NLLB-200's encoder (NLLB-CLIP). */
export type MultilingualTextKind = 'xlm-roberta' | 'bert' | 'nllb';

export interface MultilingualTextArchitecture extends TransformerConfig {
  kind: MultilingualTextKind;
  /** Tokens per row the Immich export takes (its graphs are fixed at [1, context]). */
  contextLength: number;
  vocabSize: number;
  /** The pad id the position ids and (NLLB) the in-graph mask are counted from. */
  padId: number;
  layerNormEps: number;
  /** Rows in the position table: XLM-R and NLLB start at padding_idx + 1, so context + 2. */
  positionRows: number;
}

export interface MultilingualArchitecture {
  preset: MultilingualPresetName;
  text: MultilingualTextArchitecture;
  /** Output of the text projection; equals the image tower's embedding. */
  embedDim: number;
  /** The image tower: a CLIP ViT (M-CLIP) or SigLIP's (NLLB-SigLIP). */
  vision: { kind: 'clip'; arch: ClipArchitecture } | { kind: 'siglip'; arch: SiglipArchitecture };
}

export const MCLIP_CONTEXT = 77;
export const NLLB_CONTEXT = 77;

export function multilingualPresetArchitecture(preset: MultilingualPresetName, vocabSize: number, padId: number): MultilingualArchitecture {
  const clipVision = (imageSize: number, patchSize: number, embedDim: number): ClipArchitecture => ({
    imageSize,
    patchSize,
    vision: { width: 64, layers: 2, heads: 4 },
    // Unused (M-CLIP replaces CLIP's text tower); the smallest that seededWeights accepts.
    text: { width: 8, layers: 0, heads: 1, contextLength: 1, vocabSize: 1 },
    embedDim,
    logitScaleInit: Math.log(1 / 0.07),
  });
  switch (preset) {
    case 'xlmr-clip-tiny':
      // 40-d: neither CLIP's 512/64 nor SigLIP's 48, so code assuming another family's width fails.
      return {
        preset,
        text: { kind: 'xlm-roberta', width: 48, layers: 2, heads: 4, contextLength: MCLIP_CONTEXT, vocabSize, padId, layerNormEps: 1e-5, positionRows: MCLIP_CONTEXT + 2 },
        embedDim: 40,
        vision: { kind: 'clip', arch: clipVision(240, 48, 40) },
      };
    case 'mclip-tiny':
      return {
        preset,
        text: { kind: 'bert', width: 48, layers: 2, heads: 4, contextLength: MCLIP_CONTEXT, vocabSize, padId, layerNormEps: 1e-12, positionRows: MCLIP_CONTEXT },
        embedDim: 40,
        vision: { kind: 'clip', arch: clipVision(224, 32, 40) },
      };
    case 'xlmr-clip-large-b-16plus':
      // The real shapes of M-CLIP/XLM-Roberta-Large-Vit-B-16Plus (Immich: immich-app/XLM-Roberta-Large-Vit-B-16Plus),
      // for benchmarks. Text: FacebookAI/xlm-roberta-large's config.json (24 layers × 1024, 16 heads, MLP 4096,
      // layer_norm_eps 1e-5), then M-CLIP's LinearTransformation 1024 → 640 (M-CLIP's config: transformerDimensions
      // 1024, numDims 640). Image: open_clip's ViT-B-16-plus-240.json (embed_dim 640, width 896, 12 layers, 16 px
      // patches at 240 px: 225 patches; heads = width / open_clip's head_width 64 = 14; mlp_ratio 4 → 3584).
      // XLM-R's vocabulary has 250,002 rows and its position table 514; this preset keeps the tiny trained XLM-R
      // tokenizer's few hundred rows and context + 2 positions: a lookup costs the same whatever the table's height.
      return {
        preset,
        text: { kind: 'xlm-roberta', width: 1024, layers: 24, heads: 16, contextLength: MCLIP_CONTEXT, vocabSize, padId, layerNormEps: 1e-5, positionRows: MCLIP_CONTEXT + 2 },
        embedDim: 640,
        vision: { kind: 'clip', arch: { ...clipVision(240, 16, 640), vision: { width: 896, layers: 12, heads: 14 } } },
      };
    case 'nllb-siglip-b-16-384':
      // The real shapes of open_clip's nllb-clip-base-siglip (Immich: immich-app/nllb-clip-base-siglip__v1 and
      // __mrl), for benchmarks. Text: facebook/nllb-200-distilled-600M's encoder (config.json: d_model 1024,
      // encoder_layers 12, encoder_attention_heads 16, encoder_ffn_dim 4096), cls-pooled, then open_clip's
      // linear projection 1024 → 768 (nllb-clip-base-siglip.json: embed_dim 768, hf_proj_type linear). Image:
      // timm's vit_base_patch16_siglip_384 (12 layers × 768, 12 heads, MLP 3072, 384 px in 16 px patches: 576
      // patches, MAP head). NLLB-200's vocabulary has 256,206 rows; this preset keeps the tiny trained NLLB
      // tokenizer's (with all 202 language codes): a lookup costs the same whatever the table's height.
      return {
        preset,
        text: { kind: 'nllb', width: 1024, layers: 12, heads: 16, contextLength: NLLB_CONTEXT, vocabSize, padId, layerNormEps: 1e-5, positionRows: NLLB_CONTEXT + 2 },
        embedDim: 768,
        vision: {
          kind: 'siglip',
          arch: {
            imageSize: 384,
            patchSize: 16,
            vision: { width: 768, layers: 12, heads: 12 },
            text: { width: 8, layers: 0, heads: 1, contextLength: 1, vocabSize: 1 },
            embedDim: 768,
            logitScaleInit: Math.log(10),
            logitBiasInit: -10,
            tokenizer: 'siglip',
          },
        },
      };
    case 'nllb-siglip-tiny':
      return {
        preset,
        text: { kind: 'nllb', width: 48, layers: 2, heads: 4, contextLength: NLLB_CONTEXT, vocabSize, padId, layerNormEps: 1e-5, positionRows: NLLB_CONTEXT + 2 },
        embedDim: 48,
        vision: {
          kind: 'siglip',
          arch: {
            imageSize: 384,
            patchSize: 64,
            vision: { width: 48, layers: 2, heads: 4 },
            text: { width: 8, layers: 0, heads: 1, contextLength: 1, vocabSize: 1 },
            embedDim: 48,
            logitScaleInit: Math.log(10),
            logitBiasInit: -10,
            tokenizer: 'siglip',
          },
        },
      };
  }
}

export interface EncoderLayerWeights {
  q: LinearWeights;
  k: LinearWeights;
  v: LinearWeights;
  out: LinearWeights;
  /** BERT: LN after attention + residual. NLLB: LN before attention. */
  ln1: LayerNormWeights;
  fc1: LinearWeights;
  fc2: LinearWeights;
  /** BERT: LN after the MLP + residual. NLLB: LN before the MLP. */
  ln2: LayerNormWeights;
}

export interface MultilingualTextWeights {
  /** [vocab, width] */
  tokens: Float32Array;
  /** [positionRows, width]: learned (BERT, XLM-R) or NLLB's fixed sinusoids. */
  positions: Float32Array;
  /** [2, width]: BERT's token-type rows (type 0 is used). Empty for NLLB. */
  tokenTypes: Float32Array;
  /** BERT/XLM-R: the embedding LayerNorm. NLLB: the encoder's final LayerNorm. */
  ln: LayerNormWeights;
  layers: EncoderLayerWeights[];
  /** M-CLIP: Linear with bias. NLLB-CLIP: Linear without (bias all zeros, and not written). */
  projection: LinearWeights;
}

export interface MultilingualWeights {
  arch: MultilingualArchitecture;
  text: MultilingualTextWeights;
  vision: { kind: 'clip'; weights: ClipWeights } | { kind: 'siglip'; weights: SiglipWeights };
}

export function multilingualSeededWeights(arch: MultilingualArchitecture, seed: number): MultilingualWeights {
  return { arch, text: multilingualTextWeights(arch, seed), vision: multilingualVisionWeights(arch, seed) };
}

/** The text tower's share of `multilingualSeededWeights` (the towers draw from separate seeds): one tower in memory at a time. */
export function multilingualTextWeights(arch: MultilingualArchitecture, seed: number): MultilingualTextWeights {
  const g = new Gaussian(seededRandom(seed));
  const t = arch.text;
  const D = t.width;
  const nllb = t.kind === 'nllb';
  const text: MultilingualTextWeights = {
    tokens: g.fill(t.vocabSize * D, nllb ? D ** -0.5 : 0.5),
    positions: nllb ? sinusoidalPositions(t.positionRows, D, t.padId) : g.fill(t.positionRows * D, 0.1),
    tokenTypes: nllb ? new Float32Array(0) : g.fill(2 * D, 0.1),
    ln: norm(g, D),
    layers: Array.from({ length: t.layers }, () => layer(g, t)),
    projection: nllb ? { ...lin(g, D, arch.embedDim, D ** -0.5), b: new Float32Array(arch.embedDim) } : lin(g, D, arch.embedDim, D ** -0.5),
  };
  return text;
}

/** The image tower's share of `multilingualSeededWeights`. */
export function multilingualVisionWeights(arch: MultilingualArchitecture, seed: number): MultilingualWeights['vision'] {
  return arch.vision.kind === 'clip'
    ? { kind: 'clip', weights: seededWeights(arch.vision.arch, seed + 1) }
    : { kind: 'siglip', weights: siglipSeededWeights(arch.vision.arch, seed + 1) };
}

/**
 * M2M100's `SinusoidalPositionalEmbedding.get_embedding`: row p is [sin(p·f), cos(p·f)] with
 * f_i = exp(-i · ln(10000) / (half - 1)), and the padding row zero.
 */
export function sinusoidalPositions(rows: number, width: number, paddingIdx: number): Float32Array {
  const half = Math.floor(width / 2);
  const step = Math.log(10000) / (half - 1);
  const out = new Float32Array(rows * width);
  for (let p = 0; p < rows; p++) {
    if (p === paddingIdx) continue;
    for (let i = 0; i < half; i++) {
      const angle = p * Math.fround(Math.exp(-i * step));
      out[p * width + i] = Math.sin(angle);
      out[p * width + half + i] = Math.cos(angle);
    }
  }
  return out;
}

function norm(g: Gaussian, width: number): LayerNormWeights {
  const gamma = g.fill(width, 0.1);
  for (let i = 0; i < width; i++) gamma[i]! += 1;
  return { gamma, beta: g.fill(width, 0.05) };
}

function lin(g: Gaussian, inDim: number, outDim: number, std: number): LinearWeights {
  return { w: g.fill(inDim * outDim, std), b: g.fill(outDim, 0.02), inDim, outDim };
}

function layer(g: Gaussian, c: TransformerConfig): EncoderLayerWeights {
  const std = c.width ** -0.5;
  return {
    q: lin(g, c.width, c.width, std),
    k: lin(g, c.width, c.width, std),
    v: lin(g, c.width, c.width, std),
    out: lin(g, c.width, c.width, std * 0.5),
    ln1: norm(g, c.width),
    fc1: lin(g, c.width, 4 * c.width, std),
    fc2: lin(g, 4 * c.width, c.width, (4 * c.width) ** -0.5 * 0.5),
    ln2: norm(g, c.width),
  };
}
