/**
 * The multilingual text towers as ONNX graphs, with the I/O of Immich's exports:
 * - M-CLIP (`immich_model_exporter/exporters/onnx/models/mclip.py`): `input_ids` and `attention_mask`, int32
 *   [1, 77], one output `embedding`, mean-pooled over the mask, projected, L2-normalised;
 * - NLLB-CLIP (open_clip's `encode_text(normalize=True)`, `exporters/onnx/models/openclip.py`): one input
 *   `text`, int32 [1, 77]; the mask is computed inside, from the pad id, as open_clip's `HFTextEncoder` does.
 *
 * `hfEncoderGraph` writes the bare encoder as transformers.js loads `XLMRobertaModel` / `BertModel`
 * (onnx/model.onnx: input_ids, attention_mask [, token_type_ids] → last_hidden_state, dynamic shapes): the
 * tests' oracle, never part of a model folder.
 */
import type { LayerNormWeights, LinearWeights } from './clip-architecture.js';
import type { EncoderLayerWeights, MultilingualTextArchitecture, MultilingualWeights } from './multilingual-architecture.js';
import { GraphBuilder } from './onnx-graph.js';

export const MULTILINGUAL_TEXT_IO = {
  mclip: { file: 'textual/model.onnx', input: 'input_ids', mask: 'attention_mask', output: 'embedding' },
  nllb: { file: 'textual/model.onnx', input: 'text', output: 'embedding' },
} as const;

/** Softmax weight of a masked key: e^-1e9 is exactly 0 in float32, and finite, so no row is all -inf. */
const MASKED = -1e9;
const ONNX_INT64 = 7;
const ONNX_FLOAT = 1;

/** The Immich export of the text tower: fixed [1, context] int32 in, the normalised embedding out. */
export function multilingualTextGraph(weights: Pick<MultilingualWeights, 'arch' | 'text'>): Uint8Array {
  const { arch, text: w } = weights;
  const t = arch.text;
  const L = t.contextLength;
  // Weights referenced, not copied: XLM-R Large's tower is 1.2 GB, and toBytes runs before this returns.
  const b = new GraphBuilder(`${t.kind}_text`, { copyWeights: false });
  let ids: string;
  let mask: string;
  if (t.kind === 'nllb') {
    const text = b.input(MULTILINGUAL_TEXT_IO.nllb.input, 'int32', [1, L]);
    ids = b.op('Cast', [text], { to: ONNX_INT64 });
    mask = b.op('Cast', [notPad(b, ids, t.padId)], { to: ONNX_FLOAT });
  } else {
    const io = MULTILINGUAL_TEXT_IO.mclip;
    ids = b.op('Cast', [b.input(io.input, 'int32', [1, L])], { to: ONNX_INT64 });
    mask = b.op('Cast', [b.input(io.mask, 'int32', [1, L])], { to: ONNX_FLOAT });
  }
  const hidden = encoder(b, t, w, ids, mask, null);
  let pooled: string;
  if (t.kind === 'nllb') {
    // open_clip's cls_pooler on an encoder without a pooler: the first position, i.e. the language token.
    pooled = b.op('Reshape', [b.op('Gather', [hidden, b.int64([0])], { axis: 1 }), b.int64([-1, t.width])]);
  } else {
    // M-CLIP: (embs * mask).sum(1) / mask.sum(1).
    const masked = b.op('Mul', [hidden, b.op('Unsqueeze', [mask, b.int64([2])])]);
    const sum = b.op('ReduceSum', [masked, b.int64([1])], { keepdims: 0 });
    const count = b.op('ReduceSum', [mask, b.int64([1])], { keepdims: 1 });
    pooled = b.op('Div', [sum, count]);
  }
  const p = w.projection;
  let projected = b.op('MatMul', [pooled, b.weight('text_projection.weight', p.w, [p.inDim, p.outDim])]);
  if (t.kind !== 'nllb') projected = b.op('Add', [projected, b.weight('text_projection.bias', p.b, [p.outDim])]);
  const norm = b.op('ReduceL2', [projected], { axes: [-1], keepdims: 1 });
  const out = MULTILINGUAL_TEXT_IO.mclip.output;
  b.op('Div', [projected, norm], {}, out);
  b.output(out, 'float', [1, arch.embedDim]);
  return b.toBytes();
}

/** The bare encoder as transformers.js' XLMRobertaModel / BertModel loads it (for the tests' oracle). */
export function hfEncoderGraph(weights: MultilingualWeights): Uint8Array {
  const t = weights.arch.text;
  if (t.kind === 'nllb') throw new Error('transformers.js has no bare NLLB encoder model to compare with');
  const b = new GraphBuilder(`${t.kind}_model`);
  const ids = b.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
  const mask = b.op('Cast', [b.input('attention_mask', 'int64', ['batch_size', 'sequence_length'])], { to: ONNX_FLOAT });
  const types = t.kind === 'bert' ? b.input('token_type_ids', 'int64', ['batch_size', 'sequence_length']) : null;
  const hidden = encoder(b, t, weights.text, ids, mask, types);
  b.op('Identity', [hidden], {}, 'last_hidden_state');
  b.output('last_hidden_state', 'float', ['batch_size', 'sequence_length', t.width]);
  return b.toBytes();
}

/** 1 where the id is not the pad id, as int64. */
function notPad(b: GraphBuilder, ids: string, padId: number): string {
  return b.op('Cast', [b.op('Not', [b.op('Equal', [ids, b.int64([padId])])])], { to: ONNX_INT64 });
}

function encoder(
  b: GraphBuilder,
  t: MultilingualTextArchitecture,
  w: MultilingualWeights['text'],
  ids: string,
  mask: string,
  tokenTypes: string | null,
): string {
  const D = t.width;
  let x = b.op('Gather', [b.weight('embeddings.word_embeddings.weight', w.tokens, [t.vocabSize, D]), ids], { axis: 0 });
  const table = b.weight('embeddings.position_embeddings.weight', w.positions, [t.positionRows, D]);
  let positions: string;
  if (t.kind === 'bert') {
    const seqLen = b.op('Slice', [b.op('Shape', [ids]), b.int64([1]), b.int64([2])]);
    positions = b.op('Slice', [table, b.int64([0]), seqLen, b.int64([0])]);
  } else {
    // RoBERTa's and M2M100's create_position_ids_from_input_ids: cumsum(not pad) · not pad + padding_idx.
    const keep = notPad(b, ids, t.padId);
    const counted = b.op('Mul', [b.op('CumSum', [keep, b.int64([1])]), keep]);
    positions = b.op('Gather', [table, b.op('Add', [counted, b.int64([t.padId])])], { axis: 0 });
  }
  if (t.kind === 'nllb') {
    x = b.op('Add', [b.op('Mul', [x, b.scalar(Math.sqrt(D))]), positions]);
  } else {
    const typeTable = b.weight('embeddings.token_type_embeddings.weight', w.tokenTypes, [2, D]);
    const typed = tokenTypes
      ? b.op('Gather', [typeTable, tokenTypes], { axis: 0 })
      : b.op('Slice', [typeTable, b.int64([0]), b.int64([1]), b.int64([0])]);
    x = layerNorm(b, b.op('Add', [b.op('Add', [x, positions]), typed]), w.ln, t.layerNormEps, 'embeddings.LayerNorm');
  }
  // [B, L] → additive [B, 1, 1, L]: 0 for real tokens, MASKED for pads.
  const additive = b.op('Mul', [b.op('Sub', [b.scalar(1), mask]), b.scalar(MASKED)]);
  const keyMask = b.op('Unsqueeze', [additive, b.int64([1, 2])]);
  w.layers.forEach((layer, i) => {
    const name = `encoder.layer.${i}`;
    if (t.kind === 'nllb') {
      const h = b.op('Add', [x, attention(b, layerNorm(b, x, layer.ln1, t.layerNormEps, `${name}.self_attn_layer_norm`), layer, keyMask, t, name)]);
      const f = linear(b, b.op('Relu', [linear(b, layerNorm(b, h, layer.ln2, t.layerNormEps, `${name}.final_layer_norm`), layer.fc1, `${name}.fc1`)]), layer.fc2, `${name}.fc2`);
      x = b.op('Add', [h, f]);
    } else {
      const h = layerNorm(b, b.op('Add', [x, attention(b, x, layer, keyMask, t, name)]), layer.ln1, t.layerNormEps, `${name}.attention.output.LayerNorm`);
      const f = linear(b, geluErf(b, linear(b, h, layer.fc1, `${name}.intermediate.dense`)), layer.fc2, `${name}.output.dense`);
      x = layerNorm(b, b.op('Add', [h, f]), layer.ln2, t.layerNormEps, `${name}.output.LayerNorm`);
    }
  });
  return t.kind === 'nllb' ? layerNorm(b, x, w.ln, t.layerNormEps, 'encoder.layer_norm') : x;
}

function layerNorm(b: GraphBuilder, x: string, ln: LayerNormWeights, eps: number, name: string): string {
  const width = ln.gamma.length;
  return b.op('LayerNormalization', [x, b.weight(`${name}.weight`, ln.gamma, [width]), b.weight(`${name}.bias`, ln.beta, [width])], {
    axis: -1,
    epsilon: { float: eps },
  });
}

function linear(b: GraphBuilder, x: string, lin: LinearWeights, name: string): string {
  return b.op('Add', [b.op('MatMul', [x, b.weight(`${name}.weight`, lin.w, [lin.inDim, lin.outDim])]), b.weight(`${name}.bias`, lin.b, [lin.outDim])]);
}

/** BERT's exact GELU: 0.5·x·(1 + erf(x/√2)). */
function geluErf(b: GraphBuilder, x: string): string {
  const erf = b.op('Erf', [b.op('Mul', [x, b.scalar(Math.SQRT1_2)])]);
  return b.op('Mul', [b.op('Mul', [x, b.scalar(0.5)]), b.op('Add', [erf, b.scalar(1)])]);
}

function attention(b: GraphBuilder, x: string, w: EncoderLayerWeights, keyMask: string, t: MultilingualTextArchitecture, name: string): string {
  const headDim = t.width / t.heads;
  const split = b.int64([0, 0, t.heads, headDim]);
  const q = b.op('Mul', [linear(b, x, w.q, `${name}.q`), b.scalar(headDim ** -0.5)]);
  const qh = b.op('Transpose', [b.op('Reshape', [q, split])], { perm: [0, 2, 1, 3] });
  const khT = b.op('Transpose', [b.op('Reshape', [linear(b, x, w.k, `${name}.k`), split])], { perm: [0, 2, 3, 1] });
  const vh = b.op('Transpose', [b.op('Reshape', [linear(b, x, w.v, `${name}.v`), split])], { perm: [0, 2, 1, 3] });
  const probs = b.op('Softmax', [b.op('Add', [b.op('MatMul', [qh, khT]), keyMask])], { axis: -1 });
  const ctx = b.op('Transpose', [b.op('MatMul', [probs, vh])], { perm: [0, 2, 1, 3] });
  return linear(b, b.op('Reshape', [ctx, b.int64([0, 0, t.width])]), w.out, `${name}.out`);
}
