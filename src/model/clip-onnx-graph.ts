import type { BlockWeights, ClipWeights, LayerNormWeights, LinearWeights, MlpActivation } from './clip-architecture.js';
import type { ModelLayout } from './manifest.js';
import { type FloatTypeName, GraphBuilder } from './onnx-graph.js';

/** Input/output names of the two export layouts we read; the self-built model uses the same ones. */
export const LAYOUT_IO = {
  hf: {
    vision: { file: 'onnx/vision_model.onnx', input: 'pixel_values', output: 'image_embeds' },
    text: { file: 'onnx/text_model.onnx', input: 'input_ids', output: 'text_embeds' },
  },
  openclip: {
    vision: { file: 'visual/model.onnx', input: 'image', output: 'embedding' },
    text: { file: 'textual/model.onnx', input: 'text', output: 'embedding' },
  },
} as const;

const LN_EPSILON = 1e-5;
/** CLIP's causal mask value; large and finite so softmax never sees a row of -inf. */
const MASKED = -1e9;

/**
 * The image tower as CLIP's ViT: patch Conv, class token, positions, pre-LN,
 * pre-norm transformer blocks, post-LN on the class token, projection.
 * `hf`: dynamic batch, raw projection out (as the transformers.js export).
 * `openclip`: batch fixed at 1, L2-normalised inside the graph (as the Immich export).
 */
export function visionGraph(weights: ClipWeights, layout: ModelLayout): Uint8Array {
  const { arch, vision: w } = weights;
  const io = LAYOUT_IO[layout].vision;
  const D = arch.vision.width;
  const P = arch.patchSize;
  const S = arch.imageSize;
  const b = new GraphBuilder('clip_vision');
  const batch = layout === 'hf' ? 'batch' : 1;
  const pixels = b.input(io.input, 'float', [batch, 3, S, S]);

  const conv = b.op('Conv', [pixels, b.weight('vision.patch_embedding.weight', w.patch, [D, 3, P, P])], {
    kernel_shape: [P, P],
    strides: [P, P],
  });
  const patches = b.op('Transpose', [b.op('Reshape', [conv, b.int64([0, D, -1])])], { perm: [0, 2, 1] });
  const cls = b.op('Expand', [
    b.weight('vision.class_embedding', w.classEmbedding, [1, 1, D]),
    b.op('Concat', [leadingDim(b, patches), b.int64([1, D])], { axis: 0 }),
  ]);
  const tokens = b.op('Concat', [cls, patches], { axis: 1 });
  const positioned = b.op('Add', [tokens, b.weight('vision.position_embedding', w.positions, [w.positions.length / D, D])]);
  let x = layerNorm(b, positioned, w.preLn, 'vision.pre_layrnorm');
  w.blocks.forEach((blk, i) => {
    x = transformerBlock(b, x, blk, arch.vision.heads, D, `vision.layers.${i}`, null);
  });
  const first = b.op('Gather', [x, b.int64([0])], { axis: 1 });
  const pooled = b.op('Reshape', [first, b.int64([-1, D])]);
  const normed = layerNorm(b, pooled, w.postLn, 'vision.post_layernorm');
  const projected = b.op('MatMul', [normed, b.weight('visual_projection.weight', w.projection, [D, arch.embedDim])]);
  finish(b, projected, io.output, layout, [batch, arch.embedDim]);
  return b.toBytes();
}

/**
 * The text tower: token + position embeddings, causal pre-norm blocks, final LN,
 * pooling at the first end token (argmax of the ids, as CLIP does), projection.
 * `hf`: int64 ids of any batch and length up to the context; `openclip`: int32 [1, context].
 */
export function textGraph(weights: ClipWeights, layout: ModelLayout): Uint8Array {
  const { arch, text: w } = weights;
  const io = LAYOUT_IO[layout].text;
  const D = arch.text.width;
  const L = arch.text.contextLength;
  const b = new GraphBuilder('clip_text');
  const ids =
    layout === 'hf' ? b.input(io.input, 'int64', ['batch', 'sequence']) : b.input(io.input, 'int32', [1, L]);

  const embedded = b.op('Gather', [b.weight('text.token_embedding.weight', w.tokens, [arch.text.vocabSize, D]), ids], {
    axis: 0,
  });
  // Slicing positions and mask to the real length is what lets queries run unpadded.
  const seqLen = b.op('Slice', [b.op('Shape', [ids]), b.int64([1]), b.int64([2])]);
  const positions = b.op('Slice', [
    b.weight('text.position_embedding.weight', w.positions, [L, D]),
    b.int64([0]),
    seqLen,
    b.int64([0]),
  ]);
  let x = b.op('Add', [embedded, positions]);
  const mask = slicedCausalMask(b, seqLen, L);
  w.blocks.forEach((blk, i) => {
    x = transformerBlock(b, x, blk, arch.text.heads, D, `text.layers.${i}`, mask);
  });
  x = layerNorm(b, x, w.finalLn, 'text.final_layer_norm');

  const idsInt32 = layout === 'hf' ? b.op('Cast', [ids], { to: 6 }) : ids;
  const endPos = b.op('Unsqueeze', [b.op('ArgMax', [idsInt32], { axis: -1, keepdims: 1 }), b.int64([2])]);
  const gatherIdx = b.op('Expand', [endPos, b.op('Concat', [leadingDim(b, x), b.int64([1, D])], { axis: 0 })]);
  const pooled = b.op('Reshape', [b.op('GatherElements', [x, gatherIdx], { axis: 1 }), b.int64([-1, D])]);
  const projected = b.op('MatMul', [pooled, b.weight('text_projection.weight', w.projection, [D, arch.embedDim])]);
  finish(b, projected, io.output, layout, [layout === 'hf' ? 'batch' : 1, arch.embedDim]);
  return b.toBytes();
}

/**
 * One transformer block on its own, input `x` [batch, sequence, width] → output `y`, written by the same
 * builders as the towers: the unit the trainer differentiates (issue 17) and its gradient checks run.
 * `contextLength` set: a text block, with the tower's causal mask sliced to the input's length.
 * `float: 'double'` writes weights, constants and the two ends in float64, for finite-difference checks.
 */
export function transformerBlockGraph(
  blk: BlockWeights,
  options: { heads: number; width: number; contextLength?: number; float?: FloatTypeName; name?: string },
): Uint8Array {
  const { heads, width, contextLength } = options;
  const float = options.float ?? 'float';
  const b = new GraphBuilder('clip_block', { float });
  const x = b.input('x', float, ['batch', 'sequence', width]);
  const mask =
    contextLength === undefined ? null : slicedCausalMask(b, b.op('Slice', [b.op('Shape', [x]), b.int64([1]), b.int64([2])]), contextLength);
  transformerBlock(b, x, blk, heads, width, options.name ?? 'block', mask, 'y');
  b.output('y', float, ['batch', 'sequence', width]);
  return b.toBytes();
}

/** CLIP's additive causal mask for `seqLen` (a 1-element int64 tensor) tokens, cut from the full [L, L] one. */
export function slicedCausalMask(b: GraphBuilder, seqLen: string, L: number): string {
  return b.op('Slice', [
    b.weight('text.causal_mask', causalMask(L), [L, L]),
    b.int64([0, 0]),
    b.op('Concat', [seqLen, seqLen], { axis: 0 }),
    b.int64([0, 1]),
  ]);
}

function finish(b: GraphBuilder, x: string, output: string, layout: ModelLayout, dims: (number | string)[]): void {
  if (layout === 'openclip') {
    const norm = b.op('ReduceL2', [x], { axes: [-1], keepdims: 1 });
    b.op('Div', [x, norm], {}, output);
  } else {
    b.op('Identity', [x], {}, output);
  }
  b.output(output, 'float', dims);
}

/** The first dimension of `x` as a 1-element int64 tensor (the dynamic batch). */
function leadingDim(b: GraphBuilder, x: string): string {
  return b.op('Slice', [b.op('Shape', [x]), b.int64([0]), b.int64([1])]);
}

export function layerNorm(b: GraphBuilder, x: string, ln: LayerNormWeights, name: string): string {
  const width = ln.gamma.length;
  return b.op(
    'LayerNormalization',
    [x, b.weight(`${name}.weight`, ln.gamma, [width]), b.weight(`${name}.bias`, ln.beta, [width])],
    { axis: -1, epsilon: { float: LN_EPSILON } },
  );
}

function linear(b: GraphBuilder, x: string, lin: LinearWeights, name: string): string {
  const mm = b.op('MatMul', [x, b.weight(`${name}.weight`, lin.w, [lin.inDim, lin.outDim])]);
  return b.op('Add', [mm, b.weight(`${name}.bias`, lin.b, [lin.outDim])]);
}

export function transformerBlock(
  b: GraphBuilder,
  x: string,
  blk: BlockWeights,
  heads: number,
  width: number,
  name: string,
  mask: string | null,
  output?: string,
): string {
  const h = layerNorm(b, x, blk.ln1, `${name}.layer_norm1`);
  const attn = attention(b, h, blk, heads, width, name, mask);
  const x1 = b.op('Add', [x, attn]);
  const h2 = layerNorm(b, x1, blk.ln2, `${name}.layer_norm2`);
  const fc1 = linear(b, h2, blk.fc1, `${name}.mlp.fc1`);
  const act = mlpActivation(b, fc1, blk.activation ?? 'quick_gelu');
  const fc2 = linear(b, act, blk.fc2, `${name}.mlp.fc2`);
  return b.op('Add', [x1, fc2], {}, output);
}

/**
 * quick_gelu, CLIP's activation: x·σ(1.702x). gelu, the exact one (open_clip's nn.GELU), as torch.onnx spells
 * it out: (x · (erf(x / √2) + 1)) · 0.5.
 */
function mlpActivation(b: GraphBuilder, x: string, activation: MlpActivation): string {
  if (activation === 'quick_gelu') return b.op('Mul', [x, b.op('Sigmoid', [b.op('Mul', [x, b.scalar(1.702)])])]);
  const erf = b.op('Erf', [b.op('Div', [x, b.scalar(Math.SQRT2)])]);
  return b.op('Mul', [b.op('Mul', [x, b.op('Add', [erf, b.scalar(1)])]), b.scalar(0.5)]);
}

function attention(
  b: GraphBuilder,
  x: string,
  blk: BlockWeights,
  heads: number,
  width: number,
  name: string,
  mask: string | null,
): string {
  const headDim = width / heads;
  const splitHeads = b.int64([0, 0, heads, headDim]);
  const q = b.op('Mul', [linear(b, x, blk.q, `${name}.self_attn.q_proj`), b.scalar(headDim ** -0.5)]);
  const k = linear(b, x, blk.k, `${name}.self_attn.k_proj`);
  const v = linear(b, x, blk.v, `${name}.self_attn.v_proj`);
  const qh = b.op('Transpose', [b.op('Reshape', [q, splitHeads])], { perm: [0, 2, 1, 3] });
  const khT = b.op('Transpose', [b.op('Reshape', [k, splitHeads])], { perm: [0, 2, 3, 1] });
  const vh = b.op('Transpose', [b.op('Reshape', [v, splitHeads])], { perm: [0, 2, 1, 3] });
  let scores = b.op('MatMul', [qh, khT]);
  if (mask) scores = b.op('Add', [scores, mask]);
  const probs = b.op('Softmax', [scores], { axis: -1 });
  const ctx = b.op('Transpose', [b.op('MatMul', [probs, vh])], { perm: [0, 2, 1, 3] });
  const merged = b.op('Reshape', [ctx, b.int64([0, 0, width])]);
  return linear(b, merged, blk.out, `${name}.self_attn.out_proj`);
}

function causalMask(L: number): Float32Array {
  const m = new Float32Array(L * L);
  for (let i = 0; i < L; i++) for (let j = i + 1; j < L; j++) m[i * L + j] = MASKED;
  return m;
}
