/**
 * The float64 gradient harness: a forward graph gets loss = Σ output ⊙ R (R fixed random weights shaped like
 * the output), the generated gradient graph runs in a real ORT session, and every element of every requested
 * parameter and input is compared with central finite differences of the same loss computed by a second,
 * forward-only session.
 */
import * as ort from 'onnxruntime-node';
import type { DTypeName } from '../../src/model/onnx-graph.js';
import { differentiate, type GradientGraph } from '../../src/train/graph-grad/differentiate.js';
import { cloneGraph, type IrGraph, readGraph, writeGraph } from '../../src/train/graph-grad/onnx-ir.js';
import { seededRandom } from '../../src/util/seeded-random.js';

export type Feed = { data: Float64Array | Float32Array | BigInt64Array | Int32Array | Uint8Array; dims: number[] };

export interface CheckResult {
  /** Largest relative error over all elements (see `relativeError`). */
  maxRelative: number;
  perName: Record<string, number>;
  /** Elements compared. */
  count: number;
  /** Largest |analytic| seen: a check where every gradient is ~0 would prove nothing. */
  maxAbsGradient: number;
  gradient: GradientGraph;
  /** The generated gradients, by wrt name. */
  analytic: Map<string, Float64Array>;
}

/**
 * A CPU session at ORT's 'basic' optimisation level. Not openGraph's 'all': ORT 1.30 fuses x·σ(x) into its
 * contrib QuickGelu, which has only a float32 kernel, and then refuses the double graph ("QuickGelu …
 * implemented only for tensor(float)"). 'basic' keeps constant folding and drops only such fusions.
 */
export function openDoubleSafe(graph: Uint8Array): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(graph, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'basic',
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
}

function ortTensor(f: Feed): ort.Tensor {
  const d = f.data;
  const type = d instanceof Float64Array ? 'float64' : d instanceof Float32Array ? 'float32' : d instanceof BigInt64Array ? 'int64' : d instanceof Int32Array ? 'int32' : 'bool';
  return new ort.Tensor(type, type === 'bool' ? Uint8Array.from(d as Uint8Array) : d, f.dims);
}

export function randomArray(n: number, seed: number, scale = 1, offset = 0): Float64Array {
  const r = seededRandom(seed);
  return Float64Array.from({ length: n }, () => offset + scale * (r() * 2 - 1));
}

/**
 * |a − n| / max(|a|, |n|, floor): relative where the gradient is of ordinary size. `floor` = 1e-3 · the
 * largest gradient in the check, because an element that is ~0 (a masked attention weight, a key bias, whose
 * gradient is exactly zero since softmax ignores a shift) has a central difference made only of rounding,
 * ~ε·|L|/h ≈ 1e-10·|L|, whose ratio to the analytic 1e-17 is meaningless.
 */
export function relativeError(a: number, n: number, floor: number): number {
  return Math.abs(a - n) / Math.max(Math.abs(a), Math.abs(n), floor, 1e-300);
}

/** Appends check.loss = ReduceSum(output ⊙ weights), as the graph's first output. */
export function withWeightedSumLoss(g: IrGraph, output: string, dims: number[], dtype: DTypeName, seed: number): IrGraph {
  const out = cloneGraph(g);
  const n = dims.reduce((a, b) => a * b, 1);
  const w = randomArray(n, seed);
  out.initializers.set('check.weights', { name: 'check.weights', dtype, dims, data: dtype === 'double' ? w : Float32Array.from(w) });
  out.nodes.push({ opType: 'Mul', inputs: [output, 'check.weights'], outputs: ['check.terms'], attrs: {} });
  out.nodes.push({ opType: 'ReduceSum', inputs: ['check.terms'], outputs: ['check.loss'], attrs: { keepdims: 0 } });
  out.outputs = [{ name: 'check.loss', dtype, dims: [] }, ...out.outputs];
  return out;
}

/**
 * The same graph in float64: float initializers, inputs and outputs widened, Casts to float retargeted. Lets a
 * float32 model (a whole tower as clip-onnx-graph writes it) be checked at float64 precision unchanged.
 */
export function asDouble(g: IrGraph): IrGraph {
  const out = cloneGraph(g);
  for (const [name, t] of out.initializers) {
    if (t.dtype === 'float') out.initializers.set(name, { ...t, dtype: 'double', data: Float64Array.from(t.data as Float32Array) });
  }
  for (const v of [...out.inputs, ...out.outputs]) if (v.dtype === 'float') v.dtype = 'double';
  for (const n of out.nodes) if (n.opType === 'Cast' && n.attrs.to === 1) n.attrs.to = 11;
  // ORT's CPU Conv has no float64 kernel: it runs in float32 between two Casts. It only ever sees the pixels
  // and the patch kernel, which nothing here differentiates, so its rounding is a fixed input to the rest.
  out.nodes = out.nodes.flatMap((n) => {
    if (n.opType !== 'Conv') return [n];
    const narrowed = n.inputs.map((v) => `${v}.f32`);
    const wide = n.outputs[0] as string;
    return [
      ...n.inputs.map((v, i) => ({ opType: 'Cast', inputs: [v], outputs: [narrowed[i] as string], attrs: { to: 1 } })),
      { ...n, inputs: narrowed, outputs: [`${wide}.f32`] },
      { opType: 'Cast', inputs: [`${wide}.f32`], outputs: [wide], attrs: { to: 11 } },
    ];
  });
  return out;
}

/**
 * Every float64 Erf node (ORT 1.30 has no float64 Erf kernel) replaced by erf in float64 ops, through the
 * series with positive terms only (Abramowitz & Stegun 7.1.6):
 *   erf(x) = 2/√π · e^(−x²) · Σₙ tₙ,   t₀ = x,   tₙ = tₙ₋₁ · 2x² / (2n + 1)
 * No cancellation, so each value is exact to a few ulps; `terms` = 200 leaves a tail below 1e-17 of the sum
 * for |x| < 8 (the terms fall by half once n > 2x²). A float32 Erf is left as it is.
 */
export function erfInDouble(g: IrGraph, terms = 200): IrGraph {
  const out = cloneGraph(g);
  const put = (name: string, v: number) => out.initializers.set(name, { name, dtype: 'double', dims: [], data: Float64Array.of(v) });
  put('erf64.two_over_sqrt_pi', 2 / Math.sqrt(Math.PI));
  for (let n = 1; n < terms; n++) put(`erf64.ratio_${n}`, 2 / (2 * n + 1));
  const floats = new Set([...out.inputs.filter((v) => v.dtype === 'float').map((v) => v.name), ...[...out.initializers.values()].filter((t) => t.dtype === 'float').map((t) => t.name)]);
  let k = 0;
  out.nodes = out.nodes.flatMap((node) => {
    if (node.opType !== 'Erf' || floats.has(node.inputs[0]!)) return [node];
    const x = node.inputs[0]!;
    const v = (what: string) => `erf64_${k}.${what}`;
    const nodes: typeof out.nodes = [
      { opType: 'Mul', inputs: [x, x], outputs: [v('x2')], attrs: {} },
      { opType: 'Neg', inputs: [v('x2')], outputs: [v('neg_x2')], attrs: {} },
      { opType: 'Exp', inputs: [v('neg_x2')], outputs: [v('gauss')], attrs: {} },
    ];
    let term = x;
    let sum = x;
    for (let n = 1; n < terms; n++) {
      const scaled = v(`t${n}_x2`);
      nodes.push({ opType: 'Mul', inputs: [term, v('x2')], outputs: [scaled], attrs: {} });
      nodes.push({ opType: 'Mul', inputs: [scaled, `erf64.ratio_${n}`], outputs: [v(`t${n}`)], attrs: {} });
      nodes.push({ opType: 'Add', inputs: [sum, v(`t${n}`)], outputs: [v(`s${n}`)], attrs: {} });
      term = v(`t${n}`);
      sum = v(`s${n}`);
    }
    nodes.push({ opType: 'Mul', inputs: [sum, v('gauss')], outputs: [v('scaled_sum')], attrs: {} });
    nodes.push({ opType: 'Mul', inputs: [v('scaled_sum'), 'erf64.two_over_sqrt_pi'], outputs: node.outputs, attrs: {} });
    k++;
    return nodes;
  });
  return out;
}

export async function checkGradients(
  forward: Uint8Array | IrGraph,
  options: {
    output: string;
    wrt: string[];
    feeds: Record<string, Feed>;
    h?: number;
    seed?: number;
    /** Check at most this many elements per tensor (a seeded sample); default all. */
    sample?: number;
    /**
     * Rewrites every graph that runs (the probe, the generated gradient graph, the finite-difference graph)
     * after differentiation, for an op ORT has no float64 kernel for (`erfInDouble`): the gradient is still
     * the one generated from the op's own rule.
     */
    lower?: (g: IrGraph) => IrGraph;
  },
): Promise<CheckResult> {
  const h = options.h ?? 1e-6;
  const lower = options.lower ?? ((g: IrGraph) => g);
  const base = forward instanceof Uint8Array ? readGraph(forward) : forward;
  const feeds = Object.fromEntries(Object.entries(options.feeds).map(([k, v]) => [k, ortTensor(v)]));

  // The output's shape, from one forward run, sizes the loss weights.
  const probe = await openDoubleSafe(writeGraph(lower(base)));
  const probed = await probe.run(feeds);
  await probe.release();
  const outTensor = probed[options.output];
  if (!outTensor) throw new Error(`no output ${options.output}`);
  const outDtype: DTypeName = outTensor.type === 'float64' ? 'double' : 'float';
  const lossGraph = withWeightedSumLoss(base, options.output, [...outTensor.dims], outDtype, options.seed ?? 99);

  const gradient = differentiate(lossGraph, { loss: 'check.loss', wrt: options.wrt });
  const values: Record<string, Feed> = { ...options.feeds };
  for (const p of gradient.parameters) values[p.name] = { data: p.data.slice(), dims: p.dims };

  // The forward-only graph with the same parameters as inputs, for the finite differences.
  const fdGraph = cloneGraph(lossGraph);
  for (const p of gradient.parameters) {
    fdGraph.initializers.delete(p.name);
    fdGraph.inputs.push({ name: p.name, dtype: p.dtype, dims: p.dims });
  }
  fdGraph.outputs = fdGraph.outputs.filter((o) => o.name === 'check.loss');

  const gradSession = await openDoubleSafe(writeGraph(lower(gradient.graph)));
  const fdSession = await openDoubleSafe(writeGraph(lower(fdGraph)));
  const tensors = () => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, ortTensor(v)]));
  try {
    const analytic = await gradSession.run(tensors());
    const lossAt = async () => Number((await fdSession.run(tensors()))['check.loss']!.data[0]);
    const perName: Record<string, number> = {};
    let maxRelative = 0;
    let maxAbsGradient = 0;
    let count = 0;
    const pairs: { name: string; all: Float64Array; analytic: Float64Array; numeric: Float64Array }[] = [];
    for (const name of options.wrt) {
      const a = analytic[gradient.gradients.get(name) as string]!.data as Float64Array | Float32Array;
      const v = values[name]!.data as Float64Array | Float32Array;
      const numeric = new Float64Array(v.length);
      const pick = seededRandom(v.length);
      const chosen = options.sample && options.sample < v.length ? Array.from({ length: options.sample }, () => Math.floor(pick() * v.length)) : v.keys();
      const analyticChosen: number[] = [];
      const numericChosen: number[] = [];
      for (const i of chosen) {
        const keep = v[i]!;
        v[i] = keep + h;
        const up = v[i]!;
        const lp = await lossAt();
        v[i] = keep - h;
        const down = v[i]!;
        const lm = await lossAt();
        v[i] = keep;
        // The step actually taken: a float32 value rounds keep ± h.
        numeric[i] = (lp - lm) / (up - down);
        analyticChosen.push(a[i]!);
        numericChosen.push(numeric[i]!);
        maxAbsGradient = Math.max(maxAbsGradient, Math.abs(a[i]!), Math.abs(numeric[i]!));
      }
      pairs.push({ name, all: Float64Array.from(a), analytic: Float64Array.from(analyticChosen), numeric: Float64Array.from(numericChosen) });
      count += analyticChosen.length;
    }
    for (const { name, analytic: a, numeric } of pairs) {
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, relativeError(a[i]!, numeric[i]!, 1e-3 * maxAbsGradient));
      perName[name] = worst;
      maxRelative = Math.max(maxRelative, worst);
    }
    return { maxRelative, perName, count, maxAbsGradient, gradient, analytic: new Map(pairs.map((p) => [p.name, p.all])) };
  } finally {
    await gradSession.release();
    await fdSession.release();
  }
}
