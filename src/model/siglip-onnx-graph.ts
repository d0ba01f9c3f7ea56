/**
 * SigLIP's two towers as ONNX graphs, with the input and output names of the real exports:
 * `hf` as Optimum exports SiglipVisionModel / SiglipTextModel for transformers.js (pixel_values / input_ids in,
 * last_hidden_state and pooler_output out, dynamic batch; the pooled output is the embedding, unnormalised);
 * `openclip` as Immich exports open_clip's towers (image / text in, embedding out, L2-normalised, batch 1,
 * text int32 [1, 64]).
 */
import type { BlockWeights, LayerNormWeights, LinearWeights } from './clip-architecture.js';
import type { ModelLayout } from './manifest.js';
import { GraphBuilder } from './onnx-graph.js';
import { SIGLIP_LN_EPSILON, type SiglipWeights } from './siglip-architecture.js';

export const SIGLIP_LAYOUT_IO = {
  hf: {
    vision: { file: 'onnx/vision_model.onnx', input: 'pixel_values', output: 'pooler_output' },
    text: { file: 'onnx/text_model.onnx', input: 'input_ids', output: 'pooler_output' },
  },
  openclip: {
    vision: { file: 'visual/model.onnx', input: 'image', output: 'embedding' },
    text: { file: 'textual/model.onnx', input: 'text', output: 'embedding' },
  },
} as const;

/** Patch Conv (with bias) → + positions → pre-norm encoder → post-LN → MAP head (probe attends over all patches). */
export function siglipVisionGraph(weights: SiglipWeights, layout: ModelLayout): Uint8Array {
  const { arch, vision: w } = weights;
  const io = SIGLIP_LAYOUT_IO[layout].vision;
  const D = arch.vision.width;
  const P = arch.patchSize;
  const S = arch.imageSize;
  const b = new GraphBuilder('siglip_vision');
  const batch = layout === 'hf' ? 'batch_size' : 1;
  const pixels = b.input(io.input, 'float', [batch, 3, S, S]);
  const conv = b.op('Conv', [pixels, b.weight('vision.embeddings.patch_embedding.weight', w.patch, [D, 3, P, P]), b.weight('vision.embeddings.patch_embedding.bias', w.patchBias, [D])], {
    kernel_shape: [P, P],
    strides: [P, P],
  });
  const patches = b.op('Transpose', [b.op('Reshape', [conv, b.int64([0, D, -1])])], { perm: [0, 2, 1] });
  let x = b.op('Add', [patches, b.weight('vision.embeddings.position_embedding.weight', w.positions, [w.positions.length / D, D])]);
  w.blocks.forEach((blk, i) => {
    x = encoderLayer(b, x, blk, arch.vision.heads, D, `vision.encoder.layers.${i}`);
  });
  const hidden = layerNorm(b, x, w.postLn, 'vision.post_layernorm');

  const h = w.head;
  const probe = b.op('Expand', [b.weight('vision.head.probe', h.probe, [1, 1, D]), b.op('Concat', [leadingDim(b, hidden), b.int64([1, D])], { axis: 0 })]);
  const attended = attention(b, probe, hidden, h, arch.vision.heads, D, 'vision.head.attention');
  const normed = layerNorm(b, attended, h.ln, 'vision.head.layernorm');
  const pooled3 = b.op('Add', [attended, mlp(b, normed, h.fc1, h.fc2, 'vision.head.mlp')]);
  const pooled = b.op('Reshape', [pooled3, b.int64([-1, D])]);
  finish(b, layout, hidden, pooled, io.output, [batch, (S / P) ** 2, D], [batch, D]);
  return b.toBytes();
}

/** Token + position embeddings → encoder without causal mask → final LN → last position → head Linear. */
export function siglipTextGraph(weights: SiglipWeights, layout: ModelLayout): Uint8Array {
  const { arch, text: w } = weights;
  const io = SIGLIP_LAYOUT_IO[layout].text;
  const D = arch.text.width;
  const L = arch.text.contextLength;
  const b = new GraphBuilder('siglip_text');
  const ids = layout === 'hf' ? b.input(io.input, 'int64', ['batch_size', 'sequence_length']) : b.input(io.input, 'int32', [1, L]);
  const embedded = b.op('Gather', [b.weight('text.embeddings.token_embedding.weight', w.tokens, [arch.text.vocabSize, D]), ids], { axis: 0 });
  const seqLen = b.op('Slice', [b.op('Shape', [ids]), b.int64([1]), b.int64([2])]);
  const positions = b.op('Slice', [b.weight('text.embeddings.position_embedding.weight', w.positions, [L, D]), b.int64([0]), seqLen, b.int64([0])]);
  let x = b.op('Add', [embedded, positions]);
  w.blocks.forEach((blk, i) => {
    x = encoderLayer(b, x, blk, arch.text.heads, D, `text.encoder.layers.${i}`);
  });
  const hidden = layerNorm(b, x, w.finalLn, 'text.final_layer_norm');
  const last = b.op('Reshape', [b.op('Gather', [hidden, b.int64([-1])], { axis: 1 }), b.int64([-1, D])]);
  const pooled = linear(b, last, w.head, 'text.head');
  const batch = layout === 'hf' ? 'batch_size' : 1;
  finish(b, layout, hidden, pooled, io.output, [batch, layout === 'hf' ? 'sequence_length' : L, D], [batch, arch.embedDim]);
  return b.toBytes();
}

function finish(b: GraphBuilder, layout: ModelLayout, hidden: string, pooled: string, output: string, hiddenDims: (number | string)[], pooledDims: (number | string)[]): void {
  if (layout === 'openclip') {
    const norm = b.op('ReduceL2', [pooled], { axes: [-1], keepdims: 1 });
    b.op('Div', [pooled, norm], {}, output);
    b.output(output, 'float', pooledDims);
    return;
  }
  b.op('Identity', [hidden], {}, 'last_hidden_state');
  b.output('last_hidden_state', 'float', hiddenDims);
  b.op('Identity', [pooled], {}, output);
  b.output(output, 'float', pooledDims);
}

function leadingDim(b: GraphBuilder, x: string): string {
  return b.op('Slice', [b.op('Shape', [x]), b.int64([0]), b.int64([1])]);
}

function layerNorm(b: GraphBuilder, x: string, ln: LayerNormWeights, name: string): string {
  const width = ln.gamma.length;
  return b.op('LayerNormalization', [x, b.weight(`${name}.weight`, ln.gamma, [width]), b.weight(`${name}.bias`, ln.beta, [width])], {
    axis: -1,
    epsilon: { float: SIGLIP_LN_EPSILON },
  });
}

function linear(b: GraphBuilder, x: string, lin: LinearWeights, name: string): string {
  const mm = b.op('MatMul', [x, b.weight(`${name}.weight`, lin.w, [lin.inDim, lin.outDim])]);
  return b.op('Add', [mm, b.weight(`${name}.bias`, lin.b, [lin.outDim])]);
}

/** GELU, tanh approximation (`gelu_pytorch_tanh`): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). Opset 17 has no Gelu. */
function geluTanh(b: GraphBuilder, x: string): string {
  const cube = b.op('Mul', [b.op('Mul', [x, x]), x]);
  const inner = b.op('Mul', [b.op('Add', [x, b.op('Mul', [cube, b.scalar(0.044715)])]), b.scalar(Math.sqrt(2 / Math.PI))]);
  return b.op('Mul', [b.op('Mul', [x, b.scalar(0.5)]), b.op('Add', [b.op('Tanh', [inner]), b.scalar(1)])]);
}

function mlp(b: GraphBuilder, x: string, fc1: LinearWeights, fc2: LinearWeights, name: string): string {
  return linear(b, geluTanh(b, linear(b, x, fc1, `${name}.fc1`)), fc2, `${name}.fc2`);
}

function encoderLayer(b: GraphBuilder, x: string, blk: BlockWeights, heads: number, width: number, name: string): string {
  const h = layerNorm(b, x, blk.ln1, `${name}.layer_norm1`);
  const x1 = b.op('Add', [x, attention(b, h, h, blk, heads, width, `${name}.self_attn`)]);
  const h2 = layerNorm(b, x1, blk.ln2, `${name}.layer_norm2`);
  return b.op('Add', [x1, mlp(b, h2, blk.fc1, blk.fc2, `${name}.mlp`)]);
}

/** Multi-head attention of `query` rows over `kv` rows, no mask (SigLIP's text tower attends both ways). */
function attention(
  b: GraphBuilder,
  query: string,
  kv: string,
  w: Pick<BlockWeights, 'q' | 'k' | 'v' | 'out'>,
  heads: number,
  width: number,
  name: string,
): string {
  const headDim = width / heads;
  const split = b.int64([0, 0, heads, headDim]);
  const q = b.op('Mul', [linear(b, query, w.q, `${name}.q_proj`), b.scalar(headDim ** -0.5)]);
  const k = linear(b, kv, w.k, `${name}.k_proj`);
  const v = linear(b, kv, w.v, `${name}.v_proj`);
  const qh = b.op('Transpose', [b.op('Reshape', [q, split])], { perm: [0, 2, 1, 3] });
  const khT = b.op('Transpose', [b.op('Reshape', [k, split])], { perm: [0, 2, 3, 1] });
  const vh = b.op('Transpose', [b.op('Reshape', [v, split])], { perm: [0, 2, 1, 3] });
  const probs = b.op('Softmax', [b.op('MatMul', [qh, khT])], { axis: -1 });
  const ctx = b.op('Transpose', [b.op('MatMul', [probs, vh])], { perm: [0, 2, 1, 3] });
  return linear(b, b.op('Reshape', [ctx, b.int64([0, 0, width])]), w.out, `${name}.out_proj`);
}
