/**
 * The head of the text tower rebuilt from its initializers: the last k blocks, the final LayerNorm, pooling at
 * the end token and the projection, written by clip-onnx-graph's own builders (`transformerBlock`,
 * `layerNorm`, the tower's causal mask), so it is the tower's own arithmetic, not a look-alike. It starts from
 * the residual stream entering block L−k (cached once per caption, residual-cache.ts) instead of token ids.
 *
 * Inputs: `residual` [captions, sequence, width] (positions past a caption's end token are don't-care: the
 * causal mask keeps them out of the pooled position), `pool_index` [captions, 1, width] int64 (each caption's
 * end-token position, repeated along the width, for GatherElements).
 *
 * The training graph adds the contrastive loss over stored image embeddings and the pull towards the
 * pretrained weights:
 *   t̂ = head(residual)/|·|      S = images·t̂ᵀ (n × m)      L = e^s·S      Q = positives (n × m)
 *   contrastive = ½(CE_rows(L, Q/rowsum) + CE_cols(L, Q/colsum))     (multi-positive symmetric InfoNCE)
 *   loss = contrastive + λ·Σ|θ − θ0|²
 * With LoRA (`withLora`) a matrix W becomes W0 + A·B in the graph, so θ − θ0 of a matrix is A·B.
 */
import type { BlockWeights, MlpActivation } from '../../model/clip-architecture.js';
import { layerNorm, slicedCausalMask, transformerBlock } from '../../model/clip-onnx-graph.js';
import { type FloatTypeName, GraphBuilder } from '../../model/onnx-graph.js';
import type { IrGraph } from '../graph-grad/onnx-ir.js';
import { blockWeights, contrastiveTail, type HeadTensors, headTensor, initializersAsInputs, LOGIT_SCALE, type LoraInit, loraA, loraB, unitRows, withLora as withLoraWhere } from '../head-training-graph.js';
import { headTensorNames, isMatrix } from './tower-source.js';

export { initializersAsInputs, LOGIT_SCALE, loraA, loraB };

export interface HeadShape {
  width: number;
  heads: number;
  embedDim: number;
  contextLength: number;
  /** The first tuned block (L − k). */
  first: number;
  layers: number;
  /** Each block's MLP activation, by block index (the tower's `activations`); QuickGELU where absent. */
  activations?: readonly MlpActivation[];
}

export type { HeadTensors };


const get = headTensor;

function block(t: HeadTensors, i: number, s: { width: number; activations?: readonly MlpActivation[] }): BlockWeights {
  return blockWeights(t, `text.layers.${i}`, s.width, s.activations?.[i]);
}

/** Writes the head into `b`; returns the raw projected embeddings [captions, embed]. */
function headBody(b: GraphBuilder, t: HeadTensors, s: HeadShape, float: FloatTypeName): string {
  const D = s.width;
  const residual = b.input('residual', float, ['captions', 'sequence', D]);
  const poolIndex = b.input('pool_index', 'int64', ['captions', 1, D]);
  const mask = slicedCausalMask(b, b.op('Slice', [b.op('Shape', [residual]), b.int64([1]), b.int64([2])]), s.contextLength);
  let x = residual;
  for (let i = s.first; i < s.layers; i++) x = transformerBlock(b, x, block(t, i, s), s.heads, D, `text.layers.${i}`, mask);
  x = layerNorm(b, x, { gamma: get(t, 'text.final_layer_norm.weight'), beta: get(t, 'text.final_layer_norm.bias') }, 'text.final_layer_norm');
  const pooled = b.op('Reshape', [b.op('GatherElements', [x, poolIndex], { axis: 1 }), b.int64([-1, D])]);
  return b.op('MatMul', [pooled, b.weight('text_projection.weight', get(t, 'text_projection.weight'), [D, s.embedDim])]);
}


/** The head alone: `embeds` [captions, embed], L2-normalised when the tower's own output is. */
export function headGraph(t: HeadTensors, s: HeadShape, options: { normalize: boolean; float?: FloatTypeName }): Uint8Array {
  const float = options.float ?? 'float';
  const b = new GraphBuilder('clipdex_text_head', { float });
  const projected = headBody(b, t, s, float);
  if (options.normalize) unitRows(b, projected, 'embeds');
  else b.op('Identity', [projected], {}, 'embeds');
  b.output('embeds', float, ['captions', s.embedDim]);
  return b.toBytes();
}

/**
 * The forward training graph. Every tensor of the head and `logit_scale` (ln of e^s) are initializers, so
 * `differentiate` can take them as parameters; `lambda` is an input (0 for validation).
 * Outputs: `loss`, `contrastive` (the loss without the penalty), `embeds` (the normalised text embeddings).
 */
export function trainingGraph(t: HeadTensors, s: HeadShape, options: { logitScale: number; float?: FloatTypeName }): Uint8Array {
  const float = options.float ?? 'float';
  const b = new GraphBuilder('clipdex_text_blocks_step', { float });
  const embeds = unitRows(b, headBody(b, t, s, float), 'embeds');
  const images = b.input('images', float, ['images', s.embedDim]);
  contrastiveTail(
    b,
    { images, texts: embeds, tuned: headTensorNames(s.first, s.layers), pretrained: (name) => ({ data: get(t, name), dims: isMatrix(name) ? matrixDims(name, s) : [get(t, name).length] }), logitScale: options.logitScale },
    float,
  );
  b.output('embeds', float, ['captions', s.embedDim]);
  return b.toBytes();
}

function matrixDims(name: string, s: HeadShape): number[] {
  if (name === 'text_projection.weight') return [s.width, s.embedDim];
  return [name.includes('.mlp.fc2.') ? 4 * s.width : s.width, name.includes('.mlp.fc1.') ? 4 * s.width : s.width];
}

/** The head's matrices (isMatrix) as W0 + A·B: head-training-graph's `withLora`. */
export function withLora(g: IrGraph, rank: number, init: LoraInit): IrGraph {
  return withLoraWhere(g, rank, isMatrix, init);
}
