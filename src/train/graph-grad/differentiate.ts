/**
 * Reverse-mode differentiation of an ONNX graph into ONE graph that computes the forward outputs and the
 * gradients together, so the backward ops read the forward activations from the same run instead of
 * recomputing them. ONNX Runtime runs it like any other graph — on the CPU here, on CUDA where installed.
 *
 *   const grad = differentiate(readGraph(bytes), { loss: 'loss', wrt: ['fc1.weight', 'x'] });
 *   const session = await openGraph(writeGraph(grad.graph), 'a training step');
 *   // feeds: the forward inputs, every parameter in grad.parameters (they became inputs), any seeds;
 *   // outputs: the forward outputs and grad.gradients.get(name) for each name in wrt.
 *
 * The pass: order the nodes topologically; mark the values that depend on a `wrt` name through a
 * differentiable input (integer and boolean values, shapes and indices are cut); walk the nodes backwards
 * from the seeds, asking each node's VJP rule (vjp-rules.ts) for its inputs' gradients and summing the
 * contributions of a value used by several nodes. A node on the path with no rule is an error naming its op.
 */
import { ClipdexError } from '../../errors.js';
import type { Dim } from '../../model/onnx-graph.js';
import { Emitter } from './emitter.js';
import { cloneGraph, type IrGraph, type IrNode, type IrTensor, type IrValue } from './onnx-ir.js';
import { inferFacts, isFloat, type MaybeDim } from './shape-infer.js';
import { NON_DIFFERENTIABLE, RULES } from './vjp-rules.js';

export interface GradientRequest {
  /** A scalar output to differentiate, seeded with 1. */
  loss?: string;
  /**
   * Outputs whose gradient the caller supplies (a loss computed elsewhere, or the next chunk of a model):
   * each becomes an input `${prefix}${name}` shaped like the output.
   */
  upstream?: string[];
  /** Initializers (they become inputs, fed by the caller each step) and graph inputs to differentiate. */
  wrt: string[];
  /** Prefix of the gradient outputs and seed inputs; default 'grad.'. */
  prefix?: string;
}

export interface GradientGraph {
  graph: IrGraph;
  /** wrt name → the output holding its gradient. */
  gradients: Map<string, string>;
  /** upstream output → the input that takes its gradient. */
  seeds: Map<string, string>;
  /** The initializers that became inputs, with the values they had (the starting weights). */
  parameters: IrTensor[];
}

/** Ops the pass can differentiate through. */
export function supportedOps(): string[] {
  return Object.keys(RULES).sort();
}

/** Kahn's algorithm; ONNX requires topological order already, but graphs built by hand may not keep it. */
export function topologicalOrder(g: IrGraph): IrNode[] {
  const ready = new Set<string>(['', ...g.inputs.map((v) => v.name), ...g.initializers.keys()]);
  const pending = [...g.nodes];
  const order: IrNode[] = [];
  while (pending.length > 0) {
    const before = pending.length;
    for (let i = 0; i < pending.length; ) {
      const n = pending[i] as IrNode;
      if (n.inputs.every((v) => ready.has(v))) {
        order.push(n);
        for (const o of n.outputs) ready.add(o);
        pending.splice(i, 1);
      } else {
        i++;
      }
    }
    if (pending.length === before) {
      const n = pending[0] as IrNode;
      const missing = n.inputs.filter((v) => !ready.has(v));
      throw new ClipdexError('MODEL_INVALID', `graph ${g.name}: ${n.opType} (${n.outputs[0]}) waits on ${missing.join(', ')}, which nothing computes (or a cycle)`);
    }
  }
  return order;
}

function concreteDims(dims: MaybeDim[] | null, hint: string): Dim[] {
  if (!dims) throw new ClipdexError('MODEL_UNSUPPORTED', `gradient graph: the rank of ${hint} cannot be inferred`);
  return dims.map((d, i) => d ?? `${hint}_d${i}`);
}

export function differentiate(forward: IrGraph, request: GradientRequest): GradientGraph {
  const prefix = request.prefix ?? 'grad.';
  const upstream = request.upstream ?? [];
  if (!request.loss && upstream.length === 0) throw new ClipdexError('INVALID_ARGUMENT', 'gradient graph: name a loss or an upstream output');
  if (request.wrt.length === 0) throw new ClipdexError('INVALID_ARGUMENT', 'gradient graph: nothing to differentiate with respect to');
  if (forward.opset < 13) throw new ClipdexError('MODEL_UNSUPPORTED', `gradient graph: opset ${forward.opset} is older than 13`);
  const g = cloneGraph(forward);
  // ScatterND/ScatterElements' reduction='add' (Gather's gradient) arrived in opset 16; nothing the forward
  // ops mean changed between 13 and 16.
  g.opset = Math.max(g.opset, 16);

  const inputNames = new Set(g.inputs.map((v) => v.name));
  const parameters: IrTensor[] = [];
  for (const name of new Set(request.wrt)) {
    const t = g.initializers.get(name);
    if (t) {
      if (!isFloat(t.dtype)) throw new ClipdexError('INVALID_ARGUMENT', `gradient graph: ${name} is ${t.dtype}, not a floating-point parameter`);
      g.initializers.delete(name);
      g.inputs.push({ name, dtype: t.dtype, dims: [...t.dims] });
      parameters.push(t);
    } else if (!inputNames.has(name)) {
      throw new ClipdexError('INVALID_ARGUMENT', `gradient graph: ${name} is neither an initializer nor an input of ${g.name}`);
    } else {
      const dtype = g.inputs.find((v) => v.name === name)?.dtype ?? 'float';
      if (!isFloat(dtype)) throw new ClipdexError('INVALID_ARGUMENT', `input ${name} is ${dtype}; only floating-point values have gradients`);
    }
  }

  const order = topologicalOrder(g);
  g.nodes = [...order];
  const facts = inferFacts(g, order);
  const outputs = new Set(g.outputs.map((v) => v.name));
  for (const name of [...(request.loss ? [request.loss] : []), ...upstream]) {
    if (!outputs.has(name)) throw new ClipdexError('INVALID_ARGUMENT', `gradient graph: ${name} is not an output of ${g.name}`);
  }

  // Forward: which values depend on a parameter through something differentiable.
  const active = new Set(request.wrt);
  for (const node of order) {
    if (NON_DIFFERENTIABLE.has(node.opType)) continue;
    const rule = RULES[node.opType];
    const differentiable = rule?.inputs ?? 'all';
    const fed = node.inputs.some((v, i) => v && active.has(v) && (differentiable === 'all' || differentiable.includes(i)));
    if (!fed) continue;
    for (const o of node.outputs) {
      const info = facts.info.get(o);
      if (info && isFloat(info.dtype)) active.add(o);
    }
  }

  const e = new Emitter(g, facts);
  const contributions = new Map<string, string[]>();
  const add = (name: string, grad: string) => {
    const list = contributions.get(name) ?? [];
    list.push(grad);
    contributions.set(name, list);
  };
  // A value's gradient is final once every node reading it has been visited (reverse topological order).
  const total = (name: string): string | null => {
    const list = contributions.get(name);
    if (!list || list.length === 0) return null;
    if (list.length === 1) return list[0] as string;
    const sum = e.op('Sum', list);
    contributions.set(name, [sum]);
    return sum;
  };

  const seeds = new Map<string, string>();
  if (request.loss) {
    const info = facts.info.get(request.loss);
    if (!info || !isFloat(info.dtype)) throw new ClipdexError('INVALID_ARGUMENT', `gradient graph: the loss ${request.loss} is not floating-point`);
    if (info.dims?.some((d) => d !== 1)) {
      throw new ClipdexError('INVALID_ARGUMENT', `gradient graph: the loss ${request.loss} is not a scalar; pass it as upstream with a seed`);
    }
    add(request.loss, e.op('Expand', [e.scalar(1, info.dtype), e.shape(request.loss)]));
  }
  for (const name of upstream) {
    const info = facts.info.get(name);
    if (!info || !isFloat(info.dtype)) throw new ClipdexError('INVALID_ARGUMENT', `gradient graph: ${name} is not floating-point`);
    const seed = e.claim(`${prefix}${name}`);
    g.inputs.push({ name: seed, dtype: info.dtype, dims: concreteDims(info.dims, seed) });
    seeds.set(name, seed);
    add(name, seed);
  }

  // Refuse an op without a rule before emitting anything, so the error names it rather than a later symptom.
  const reaching = new Set(contributions.keys());
  for (const node of [...order].reverse()) {
    if (!node.outputs.some((o) => active.has(o) && reaching.has(o))) continue;
    if (!RULES[node.opType]) {
      throw new ClipdexError('MODEL_UNSUPPORTED', `no gradient rule for ONNX op ${node.opType} (node output ${node.outputs[0]}); ops with rules: ${supportedOps().join(', ')}`, {
        details: { op: node.opType, output: node.outputs[0] },
      });
    }
    for (const v of node.inputs) if (active.has(v)) reaching.add(v);
  }

  for (const node of [...order].reverse()) {
    if (!node.outputs.some((o) => active.has(o))) continue;
    const gy = node.outputs.map((o) => (active.has(o) ? total(o) : null));
    if (gy.every((v) => v === null)) continue;
    const rule = RULES[node.opType];
    if (!rule) throw new Error(`${node.opType}: checked above`);
    const needs = (i: number) => {
      const v = node.inputs[i];
      return !!v && active.has(v) && (rule.inputs === 'all' || rule.inputs.includes(i));
    };
    const gx = rule.vjp({ node, gy, needs, e });
    node.inputs.forEach((v, i) => {
      const grad = gx[i];
      if (grad && needs(i)) add(v, grad);
    });
  }

  const gradients = new Map<string, string>();
  for (const name of new Set(request.wrt)) {
    const outName = e.claim(`${prefix}${name}`);
    const grad = total(name);
    // No path from this parameter to the loss: its gradient is zero, said explicitly rather than left out.
    e.op('Identity', [grad ?? e.zerosLike(name)], {}, outName);
    const info = facts.info.get(name);
    const out: IrValue = { name: outName, dtype: info?.dtype ?? 'float', dims: concreteDims(info?.dims ?? null, outName) };
    g.outputs.push(out);
    gradients.set(name, outName);
  }
  return { graph: g, gradients, seeds, parameters };
}
