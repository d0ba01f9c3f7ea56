/**
 * The head of the image tower rebuilt from its initializers: the last k blocks (no mask: every token sees
 * every token), the post-LayerNorm on the class token and the projection, written by clip-onnx-graph's own
 * builders (`transformerBlock`, `layerNorm`), so it is the tower's own arithmetic. It starts from the residual
 * stream entering block L−k (cached once per photo, activation-cache.ts) instead of pixels.
 *
 * Input: `residual` [images, tokens, width].
 *
 * The training graph scores the tuned image embeddings against FIXED caption embeddings (the text tower stays
 * locked on this side, so its embeddings are an input, already normalised):
 *   î = head(residual)/|·|      S = î·textsᵀ (n × m)      L = e^s·S      Q = positives (n × m)
 *   contrastive = ½(CE_rows(L, Q/rowsum) + CE_cols(L, Q/colsum))     (multi-positive symmetric InfoNCE)
 *   loss = contrastive + λ·Σ|θ − θ0|²
 * as the text side's head-graph.ts does with the roles swapped. With LoRA (`withImageLora`) a matrix W
 * becomes W0 + A·B, so θ − θ0 of a matrix is A·B.
 */
import type { BlockWeights, MlpActivation } from '../../model/clip-architecture.js';
import { layerNorm, transformerBlock } from '../../model/clip-onnx-graph.js';
import { type FloatTypeName, GraphBuilder } from '../../model/onnx-graph.js';
import type { IrGraph } from '../graph-grad/onnx-ir.js';
import { blockWeights, contrastiveTail, headTensor, LOGIT_SCALE, type LoraInit, loraA, loraB, unitRows, withLora } from '../head-training-graph.js';
import { IMAGE_PROJECTION, imageCanonicalDims, imageHeadTensorNames, isImageMatrix } from './tower-source.js';

export { LOGIT_SCALE, loraA, loraB };

export interface ImageHeadShape {
  width: number;
  heads: number;
  embedDim: number;
  /** 1 class token + the patches. */
  tokens: number;
  /** The first tuned block (L − k). */
  first: number;
  layers: number;
  /** Each block's MLP activation, by block index (the tower's `activations`); QuickGELU where absent. */
  activations?: readonly MlpActivation[];
}

/** Canonical name → values ([in, out] for matrices). */
export type ImageHeadTensors = ReadonlyMap<string, Float32Array>;

const get = headTensor;

function block(t: ImageHeadTensors, i: number, s: { width: number; activations?: readonly MlpActivation[] }): BlockWeights {
  return blockWeights(t, `vision.layers.${i}`, s.width, s.activations?.[i]);
}

/** Writes the head into `b`; returns the raw projected embeddings [images, embed]. */
function headBody(b: GraphBuilder, t: ImageHeadTensors, s: ImageHeadShape, float: FloatTypeName): string {
  const D = s.width;
  let x = b.input('residual', float, ['images', s.tokens, D]);
  for (let i = s.first; i < s.layers; i++) x = transformerBlock(b, x, block(t, i, s), s.heads, D, `vision.layers.${i}`, null);
  // As visionGraph: the class token, then the post-LayerNorm, then the projection.
  const pooled = b.op('Reshape', [b.op('Gather', [x, b.int64([0])], { axis: 1 }), b.int64([-1, D])]);
  const normed = layerNorm(b, pooled, { gamma: get(t, 'vision.post_layernorm.weight'), beta: get(t, 'vision.post_layernorm.bias') }, 'vision.post_layernorm');
  return b.op('MatMul', [normed, b.weight(IMAGE_PROJECTION, get(t, IMAGE_PROJECTION), [D, s.embedDim])]);
}


/** The head alone: `embeds` [images, embed], L2-normalised when the tower's own output is. */
export function imageHeadGraph(t: ImageHeadTensors, s: ImageHeadShape, options: { normalize: boolean; float?: FloatTypeName }): Uint8Array {
  const float = options.float ?? 'float';
  const b = new GraphBuilder('clipdex_image_head', { float });
  const projected = headBody(b, t, s, float);
  if (options.normalize) unitRows(b, projected, 'embeds');
  else b.op('Identity', [projected], {}, 'embeds');
  b.output('embeds', float, ['images', s.embedDim]);
  return b.toBytes();
}

/**
 * The forward training graph. Every tensor of the head and `logit_scale` (ln of e^s) are initializers, so
 * `differentiate` can take them as parameters. Inputs: `residual`, `texts` [captions, embed] (fixed,
 * normalised), `positives` [images, captions], `lambda` (0 for validation).
 * Outputs: `loss`, `contrastive` (without the penalty), `embeds` (the normalised image embeddings).
 */
export function imageTrainingGraph(t: ImageHeadTensors, s: ImageHeadShape, options: { logitScale: number; float?: FloatTypeName }): Uint8Array {
  const float = options.float ?? 'float';
  const b = new GraphBuilder('clipdex_image_blocks_step', { float });
  const embeds = unitRows(b, headBody(b, t, s, float), 'embeds');
  const texts = b.input('texts', float, ['captions', s.embedDim]);
  contrastiveTail(
    b,
    { images: embeds, texts, tuned: imageHeadTensorNames(s.first, s.layers), pretrained: (name) => ({ data: get(t, name), dims: imageCanonicalDims(name, s.width, s.embedDim) }), logitScale: options.logitScale },
    float,
  );
  b.output('embeds', float, ['images', s.embedDim]);
  return b.toBytes();
}

/** The image head's matrices (isImageMatrix: `visual_projection` too) as W0 + A·B: head-training-graph's `withLora`. */
export function withImageLora(g: IrGraph, rank: number, init: LoraInit): IrGraph {
  return withLora(g, rank, isImageMatrix, init);
}
