/**
 * A clipdex-built tower graph (text or image) rewritten the way torch.onnx lays out open_clip's transformer
 * (see src/train/text-tower/tower-source.ts' header for where that was read): `transformer.resblocks.{i}` names
 * (under `visual.` for the image tower), q, k, v fused into one in_proj matrix and bias (one MatMul + Add, then
 * split), anonymous folded matrices, and in the second variant every LayerNorm spelled out in primitive ops at
 * opset 16. `withExactGelu` swaps each block's QuickGELU for open_clip's nn.GELU as torch.onnx spells it.
 */
import type { IrGraph, IrNode, IrTensor } from '../../src/train/graph-grad/onnx-ir.js';

export type OpenClipVariant = 'fused' | 'fused-spelled-ln';
export type Tower = 'text' | 'image';

const RENAMES: Record<Tower, readonly (readonly [RegExp, string])[]> = {
  text: [
    [/^text\.final_layer_norm\./, 'ln_final.'],
    [/^text_projection\.weight$/, 'text_projection'],
    [/^text\.token_embedding\.weight$/, 'token_embedding.weight'],
    [/^text\.position_embedding\.weight$/, 'positional_embedding'],
    [/^text\.causal_mask$/, 'attn_mask'],
  ],
  image: [
    [/^vision\.post_layernorm\./, 'visual.ln_post.'],
    [/^vision\.pre_layrnorm\./, 'visual.ln_pre.'],
    [/^visual_projection\.weight$/, 'visual.proj'],
    [/^vision\.class_embedding$/, 'visual.class_embedding'],
    [/^vision\.position_embedding$/, 'visual.positional_embedding'],
    [/^vision\.patch_embedding\.weight$/, 'visual.conv1.weight'],
  ],
};

/**
 * `fused`: in_proj_weight named and stored [3w, w] ([out, in]) behind a Transpose, q, k, v cut by a Split
 * (torch < 1.13's `chunk(3, -1)`); LayerNormalization nodes (opset 17).
 * `fused-spelled-ln`: in_proj folded into an anonymous [w, 3w] constant (what constant folding leaves),
 * q, k, v cut as torch ≥ 1.13's `_in_projection_packed` does (Reshape to [.., 3, w], Unsqueeze, Transpose,
 * Squeeze, Gather 0/1/2); every LayerNorm spelled out (ReduceMean, Sub, Pow, ReduceMean, Add ε, Sqrt, Div,
 * Mul γ, Add β) at opset 16.
 */
export function asOpenClipExport(g: IrGraph, variant: OpenClipVariant, tower: Tower = 'text'): IrGraph {
  const from = tower === 'text' ? 'text.layers.' : 'vision.layers.';
  const to = tower === 'text' ? 'transformer.resblocks.' : 'visual.transformer.resblocks.';
  const W = g.initializers.get(`${from}0.layer_norm1.weight`)!.dims[0]!;
  const inits = new Map(g.initializers);
  let nodes: IrNode[] = g.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs] }));
  let anon = 2000;
  let value = 0;
  const fresh = (what: string) => `/${what}_output_${value++}`;
  const put = (name: string, dtype: IrTensor['dtype'], dims: number[], data: IrTensor['data']) => inits.set(name, { name, dtype, dims, data });
  if (variant === 'fused') {
    put('split_sizes', 'int64', [3], BigInt64Array.of(BigInt(W), BigInt(W), BigInt(W)));
  } else {
    put('unflatten_shape', 'int64', [4], BigInt64Array.of(0n, 0n, 3n, BigInt(W)));
    put('axis_0', 'int64', [1], BigInt64Array.of(0n));
    put('axis_3', 'int64', [1], BigInt64Array.of(3n));
    for (const part of [0, 1, 2]) put(`index_${part}`, 'int64', [], BigInt64Array.of(BigInt(part)));
  }

  for (let i = 0; inits.has(`${from}${i}.self_attn.q_proj.weight`); i++) {
    const p = `${from}${i}.self_attn`;
    const block = `${to}${i}.attn`;
    const parts = (['q', 'k', 'v'] as const).map((x) => {
      const mm = nodes.find((n) => n.opType === 'MatMul' && n.inputs[1] === `${p}.${x}_proj.weight`)!;
      const add = nodes.find((n) => n.opType === 'Add' && n.inputs.includes(`${p}.${x}_proj.bias`))!;
      if (add.inputs[0] !== mm.outputs[0]) throw new Error(`${p}.${x}_proj: its Add does not take its MatMul`);
      return { mm, add, w: inits.get(`${p}.${x}_proj.weight`)!.data as Float32Array, b: inits.get(`${p}.${x}_proj.bias`)!.data as Float32Array };
    });
    const h = parts[0]!.mm.inputs[0]!;
    const at = nodes.indexOf(parts[0]!.mm);
    // PyTorch's in_proj_weight [3w, w]: rows [0, w) are q's [out, in], then k's, then v's.
    const fused = new Float32Array(3 * W * W);
    parts.forEach(({ w }, part) => {
      for (let r = 0; r < W; r++) for (let c = 0; c < W; c++) fused[(part * W + r) * W + c] = w[c * W + r]!;
    });
    const bias = new Float32Array(3 * W);
    parts.forEach(({ b }, part) => bias.set(b, part * W));
    put(`${block}.in_proj_bias`, 'float', [3 * W], bias);
    const added: IrNode[] = [];
    const node = (opType: string, inputs: string[], outputs: string[], attrs: IrNode['attrs'] = {}) => added.push({ opType, inputs, outputs, attrs });
    const proj = fresh('MatMul');
    const projBiased = fresh('Add');
    const outs = parts.map((x) => x.add.outputs[0]!);
    if (variant === 'fused') {
      put(`${block}.in_proj_weight`, 'float', [3 * W, W], fused);
      const t = fresh('Transpose');
      node('Transpose', [`${block}.in_proj_weight`], [t], { perm: [1, 0] });
      node('MatMul', [h, t], [proj]);
      node('Add', [proj, `${block}.in_proj_bias`], [projBiased]);
      node('Split', [projBiased, 'split_sizes'], outs, { axis: -1 });
    } else {
      // Constant folding keeps in_proj_weightᵀ, [w, 3w], under a new anonymous name.
      const folded = `onnx::MatMul_${anon++}`;
      const transposed = new Float32Array(3 * W * W);
      for (let r = 0; r < 3 * W; r++) for (let c = 0; c < W; c++) transposed[c * 3 * W + r] = fused[r * W + c]!;
      put(folded, 'float', [W, 3 * W], transposed);
      node('MatMul', [h, folded], [proj]);
      node('Add', [`${block}.in_proj_bias`, proj], [projBiased]);
      const r = fresh('Reshape');
      const u = fresh('Unsqueeze');
      const tr = fresh('Transpose');
      const sq = fresh('Squeeze');
      node('Reshape', [projBiased, 'unflatten_shape'], [r]);
      node('Unsqueeze', [r, 'axis_0'], [u]);
      node('Transpose', [u], [tr], { perm: [3, 1, 2, 0, 4] });
      node('Squeeze', [tr, 'axis_3'], [sq]);
      outs.forEach((o, part) => node('Gather', [sq, `index_${part}`], [o], { axis: 0 }));
    }
    const gone = new Set(parts.flatMap((x) => [x.mm, x.add]));
    nodes = [...nodes.slice(0, at).filter((n) => !gone.has(n)), ...added, ...nodes.slice(at).filter((n) => !gone.has(n))];
    for (const x of ['q', 'k', 'v']) for (const end of ['weight', 'bias']) inits.delete(`${p}.${x}_proj.${end}`);
  }

  // Names: open_clip's module paths; the other block matrices folded into anonymous constants.
  const rename = new Map<string, string>();
  for (const name of [...inits.keys()]) {
    let renamed = name.startsWith(from)
      ? to +
        name
          .slice(from.length)
          .replace('.layer_norm1.', '.ln_1.')
          .replace('.layer_norm2.', '.ln_2.')
          .replace('.self_attn.out_proj.', '.attn.out_proj.')
          .replace('.mlp.fc1.', '.mlp.c_fc.')
          .replace('.mlp.fc2.', '.mlp.c_proj.')
      : name;
    for (const [pattern, replacement] of RENAMES[tower]) renamed = renamed.replace(pattern, replacement);
    if (/\.(attn\.out_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/.test(renamed)) renamed = `onnx::MatMul_${anon++}`;
    if (renamed === name) continue;
    rename.set(name, renamed);
    const t = inits.get(name)!;
    inits.delete(name);
    inits.set(renamed, { ...t, name: renamed });
  }
  for (const n of nodes) n.inputs = n.inputs.map((v) => rename.get(v) ?? v);

  let opset = g.opset;
  if (variant === 'fused-spelled-ln') {
    put('ln_epsilon', 'float', [], Float32Array.of(1e-5));
    put('pow_two', 'float', [], Float32Array.of(2));
    nodes = nodes.flatMap((n) => {
      if (n.opType !== 'LayerNormalization') return [n];
      const [x, gamma, beta] = n.inputs as [string, string, string];
      const mean = fresh('ReduceMean');
      const sub = fresh('Sub');
      const pow = fresh('Pow');
      const variance = fresh('ReduceMean');
      const addEps = fresh('Add');
      const sqrt = fresh('Sqrt');
      const div = fresh('Div');
      const mul = fresh('Mul');
      return [
        { opType: 'ReduceMean', inputs: [x], outputs: [mean], attrs: { axes: [-1], keepdims: 1 } },
        { opType: 'Sub', inputs: [x, mean], outputs: [sub], attrs: {} },
        { opType: 'Pow', inputs: [sub, 'pow_two'], outputs: [pow], attrs: {} },
        { opType: 'ReduceMean', inputs: [pow], outputs: [variance], attrs: { axes: [-1], keepdims: 1 } },
        { opType: 'Add', inputs: [variance, 'ln_epsilon'], outputs: [addEps], attrs: {} },
        { opType: 'Sqrt', inputs: [addEps], outputs: [sqrt], attrs: {} },
        { opType: 'Div', inputs: [sub, sqrt], outputs: [div], attrs: {} },
        { opType: 'Mul', inputs: [div, gamma], outputs: [mul], attrs: {} },
        { opType: 'Add', inputs: [mul, beta], outputs: n.outputs, attrs: {} },
      ];
    });
    opset = 16;
  }
  return { ...g, opset, initializers: inits, nodes };
}

/**
 * Every block's QuickGELU x·σ(1.702x) replaced by exact GELU. `torch`: as torch.onnx exports nn.GELU,
 * Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5). `scaled`: the other order, Mul(x, Mul(Add(Erf(Mul(x, 1/√2)), 1), 0.5)).
 * `node`: one Gelu node (opset 20's op; the graph's opset is left as it is, so it is for reading, not for ORT).
 */
export function withExactGelu(g: IrGraph, form: 'torch' | 'scaled' | 'node' = 'torch'): IrGraph {
  const inits = new Map(g.initializers);
  const put = (name: string, v: number) => inits.set(name, { name, dtype: 'float', dims: [], data: Float32Array.of(v) });
  put('gelu_sqrt2', Math.SQRT2);
  put('gelu_sqrt_half', Math.SQRT1_2);
  put('gelu_one', 1);
  put('gelu_half', 0.5);
  const nodes: IrNode[] = [];
  const replaced = new Set<IrNode>();
  let count = 0;
  for (const sigmoid of g.nodes.filter((n) => n.opType === 'Sigmoid')) {
    const scaled = g.nodes.find((n) => n.outputs[0] === sigmoid.inputs[0])!;
    const gated = g.nodes.find((n) => n.opType === 'Mul' && n.inputs.includes(sigmoid.outputs[0]!))!;
    const x = scaled.inputs.find((v) => !inits.has(v))!;
    replaced.add(scaled).add(sigmoid).add(gated);
    const out = gated.outputs[0]!;
    const v = (s: string) => `${out}/gelu_${s}`;
    if (form === 'node') {
      nodes.push({ opType: 'Gelu', inputs: [x], outputs: [out], attrs: {} });
    } else if (form === 'torch') {
      nodes.push(
        { opType: 'Div', inputs: [x, 'gelu_sqrt2'], outputs: [v('div')], attrs: {} },
        { opType: 'Erf', inputs: [v('div')], outputs: [v('erf')], attrs: {} },
        { opType: 'Add', inputs: [v('erf'), 'gelu_one'], outputs: [v('add')], attrs: {} },
        { opType: 'Mul', inputs: [x, v('add')], outputs: [v('mul')], attrs: {} },
        { opType: 'Mul', inputs: [v('mul'), 'gelu_half'], outputs: [out], attrs: {} },
      );
    } else {
      nodes.push(
        { opType: 'Mul', inputs: [x, 'gelu_sqrt_half'], outputs: [v('scaled')], attrs: {} },
        { opType: 'Erf', inputs: [v('scaled')], outputs: [v('erf')], attrs: {} },
        { opType: 'Add', inputs: ['gelu_one', v('erf')], outputs: [v('add')], attrs: {} },
        { opType: 'Mul', inputs: [v('add'), 'gelu_half'], outputs: [v('half')], attrs: {} },
        { opType: 'Mul', inputs: [x, v('half')], outputs: [out], attrs: {} },
      );
    }
    count++;
  }
  if (count === 0) throw new Error('no QuickGELU to replace');
  // The new nodes go where the gate was: after x, before what reads the activation.
  const out: IrNode[] = [];
  let at = 0;
  for (const n of g.nodes) {
    if (!replaced.has(n)) out.push(n);
    else if (n.opType === 'Mul' && n.inputs.some((i) => g.nodes.some((s) => s.opType === 'Sigmoid' && s.outputs[0] === i))) out.push(...nodes.slice(at, (at += form === 'node' ? 1 : 5)));
  }
  return { ...g, initializers: inits, nodes: out };
}
