/**
 * Every VJP rule of src/train/graph-grad against central finite differences in float64: a tiny graph per op
 * (random weights and inputs), loss = Σ output ⊙ R, the generated gradient graph run by a real ORT session,
 * every element of every parameter and input compared. Whole blocks: test/graph-grad-blocks.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { isClipdexError } from '../src/errors.js';
import { GraphBuilder } from '../src/model/onnx-graph.js';
import { differentiate, supportedOps } from '../src/train/graph-grad/differentiate.js';
import { readGraph, writeGraph } from '../src/train/graph-grad/onnx-ir.js';
import { inferFacts } from '../src/train/graph-grad/shape-infer.js';
import { checkGradients, type Feed, openDoubleSafe, randomArray } from './helpers/graph-grad-check.js';

/** Relative error allowed in float64 (see relativeError in the harness for the floor near zero). */
const TOL = 1e-6;

type Build = (b: GraphBuilder, w: (name: string, dims: number[], scale?: number, offset?: number) => string) => string;

interface OpCase {
  name: string;
  /** Graph inputs: name → dims (float64 random data in [-1, 1] · scale + offset). */
  inputs?: Record<string, { dims: number[]; scale?: number; offset?: number }>;
  /** Extra non-float feeds (indices). */
  extra?: Record<string, Feed>;
  build: Build;
  /** Defaults to every input and every weight made with `w`. */
  wrt?: string[];
}

let seed = 1;
function doubleGraph(c: OpCase): { bytes: Uint8Array; weights: string[]; feeds: Record<string, Feed> } {
  const b = new GraphBuilder(`op_${c.name}`, { float: 'double' });
  const feeds: Record<string, Feed> = { ...c.extra };
  for (const [name, spec] of Object.entries(c.inputs ?? {})) {
    b.input(name, 'double', spec.dims);
    feeds[name] = { data: randomArray(spec.dims.reduce((p, d) => p * d, 1), seed++, spec.scale ?? 1, spec.offset ?? 0), dims: spec.dims };
  }
  for (const [name, f] of Object.entries(c.extra ?? {})) {
    const type = f.data instanceof BigInt64Array ? 'int64' : f.data instanceof Int32Array ? 'int32' : f.data instanceof Float32Array ? 'float' : 'bool';
    b.input(name, type, f.dims);
  }
  const weights: string[] = [];
  const w = (name: string, dims: number[], scale = 1, offset = 0) => {
    weights.push(name);
    return b.weight(name, randomArray(dims.reduce((p, d) => p * d, 1), seed++, scale, offset), dims);
  };
  const out = c.build(b, w);
  b.op('Identity', [out], {}, 'out');
  b.output('out', 'double', []);
  // The output's rank from the project's own inference (GraphBuilder wants dims; the cases don't state them).
  const g = readGraph(b.toBytes());
  const dims = inferFacts(g).info.get('out')?.dims;
  if (!dims) throw new Error(`${c.name}: output rank unknown`);
  g.outputs = [{ name: 'out', dtype: 'double', dims: dims.map((d, i) => d ?? `out_${i}`) }];
  return { bytes: writeGraph(g), weights, feeds };
}

async function expectRule(c: OpCase): Promise<void> {
  const { bytes, weights, feeds } = doubleGraph(c);
  const wrt = c.wrt ?? [...Object.keys(c.inputs ?? {}), ...weights];
  const r = await checkGradients(bytes, { output: 'out', wrt, feeds });
  // A check where every gradient is ~0 would pass whatever the rule did.
  expect(r.maxAbsGradient, c.name).toBeGreaterThan(1e-2);
  expect(r.maxRelative, `${c.name}: ${JSON.stringify(r.perName)}`).toBeLessThan(TOL);
  measured.push({ name: c.name, maxRelative: r.maxRelative, count: r.count });
}

const measured: { name: string; maxRelative: number; count: number }[] = [];
const i64 = (values: number[], dims: number[]): Feed => ({ data: BigInt64Array.from(values, (v) => BigInt(v)), dims });

const CASES: OpCase[] = [
  // MatMul: a linear layer (the batch folded into one GEMM for ∂W), a weight on the left, attention's 4-D
  // products, and batch axes broadcast both ways.
  { name: 'MatMul 2-D', inputs: { x: { dims: [3, 4] } }, build: (b, w) => b.op('MatMul', ['x', w('W', [4, 5])]) },
  { name: 'MatMul 3-D · 2-D weight', inputs: { x: { dims: [2, 3, 4] } }, build: (b, w) => b.op('MatMul', ['x', w('W', [4, 5])]) },
  { name: 'MatMul 2-D weight · 3-D', inputs: { x: { dims: [2, 4, 5] } }, build: (b, w) => b.op('MatMul', [w('W', [3, 4]), 'x']) },
  { name: 'MatMul 4-D · 4-D', inputs: { a: { dims: [2, 3, 4, 5] }, c: { dims: [2, 3, 5, 2] } }, build: (b) => b.op('MatMul', ['a', 'c']) },
  { name: 'MatMul batch broadcast', inputs: { a: { dims: [2, 1, 4, 5] }, c: { dims: [3, 5, 2] } }, build: (b) => b.op('MatMul', ['a', 'c']) },
  ...[0, 1].flatMap((ta) =>
    [0, 1].map(
      (tb): OpCase => ({
        name: `Gemm transA=${ta} transB=${tb} alpha beta, C broadcast`,
        inputs: { a: { dims: ta ? [4, 3] : [3, 4] } },
        build: (b, w) => b.op('Gemm', ['a', w('B', tb ? [5, 4] : [4, 5]), w('C', [5])], { transA: ta, transB: tb, alpha: { float: 0.7 }, beta: { float: 1.3 } }),
      }),
    ),
  ),
  { name: 'Gemm with full C', inputs: { a: { dims: [3, 4] } }, build: (b, w) => b.op('Gemm', ['a', w('B', [4, 2]), w('C', [3, 2])]) },
  // Elementwise with broadcasting: trailing vector, a [3,1] column, both sides broadcast, a scalar.
  ...(['Add', 'Sub', 'Mul', 'Div'] as const).flatMap((op): OpCase[] => [
    { name: `${op} [2,3,4] with [4]`, inputs: { a: { dims: [2, 3, 4] } }, build: (b, w) => b.op(op, ['a', w('v', [4], 1, op === 'Div' ? 2 : 0)]) },
    { name: `${op} [2,1,4] with [3,1]`, inputs: { a: { dims: [2, 1, 4] } }, build: (b, w) => b.op(op, ['a', w('v', [3, 1], 1, op === 'Div' ? 2 : 0)]) },
    { name: `${op} [3,4] with a scalar`, inputs: { a: { dims: [3, 4] }, s: { dims: [], offset: 2 } }, build: (b) => b.op(op, ['a', 's']) },
  ]),
  // Broadcasting only known at run time: 'm' is 1 here, so ∂y must be summed over axis 0.
  {
    name: 'Add with symbolic sizes, broadcast decided at run time',
    inputs: {},
    extra: {},
    build: (b) => {
      b.input('p', 'double', ['n', 4]);
      b.input('q', 'double', ['m', 4]);
      return b.op('Mul', [b.op('Add', ['p', 'q']), 'q']);
    },
  },
  { name: 'Neg', inputs: { x: { dims: [2, 3] } }, build: (b) => b.op('Neg', ['x']) },
  { name: 'Relu', inputs: { x: { dims: [3, 4], offset: 0.2 } }, build: (b) => b.op('Relu', ['x']) },
  { name: 'Sigmoid', inputs: { x: { dims: [2, 3], scale: 3 } }, build: (b) => b.op('Sigmoid', ['x']) },
  {
    name: 'QuickGELU x·σ(1.702x)',
    inputs: { x: { dims: [2, 5], scale: 3 } },
    build: (b) => b.op('Mul', ['x', b.op('Sigmoid', [b.op('Mul', ['x', b.scalar(1.702)])])]),
  },
  { name: 'Tanh', inputs: { x: { dims: [2, 3], scale: 2 } }, build: (b) => b.op('Tanh', ['x']) },
  { name: 'Exp', inputs: { x: { dims: [2, 3] } }, build: (b) => b.op('Exp', ['x']) },
  { name: 'Log', inputs: { x: { dims: [2, 3], scale: 0.5, offset: 1.5 } }, build: (b) => b.op('Log', ['x']) },
  { name: 'Sqrt', inputs: { x: { dims: [2, 3], scale: 0.5, offset: 1.5 } }, build: (b) => b.op('Sqrt', ['x']) },
  { name: 'Reciprocal', inputs: { x: { dims: [2, 3], scale: 0.5, offset: 1.5 } }, build: (b) => b.op('Reciprocal', ['x']) },
  {
    name: 'tanh-GELU (SigLIP): Tanh, Pow',
    inputs: { x: { dims: [2, 5], scale: 3 } },
    build: (b) => {
      const inner = b.op('Mul', [b.scalar(Math.sqrt(2 / Math.PI)), b.op('Add', ['x', b.op('Mul', [b.scalar(0.044715), b.op('Pow', ['x', b.scalar(3)])])])]);
      return b.op('Mul', [b.op('Mul', [b.scalar(0.5), 'x']), b.op('Add', [b.scalar(1), b.op('Tanh', [inner])])]);
    },
  },
  { name: 'Pow with a constant exponent', inputs: { x: { dims: [2, 3], scale: 0.5, offset: 1.5 } }, build: (b) => b.op('Pow', ['x', b.scalar(2.5)]) },
  { name: 'Pow with a learned exponent', inputs: { x: { dims: [2, 3], scale: 0.5, offset: 1.5 } }, build: (b, w) => b.op('Pow', ['x', w('p', [], 0.5, 1.5)]) },
  { name: 'Identity', inputs: { x: { dims: [4] } }, build: (b) => b.op('Mul', [b.op('Identity', ['x']), 'x']) },
  { name: 'Softmax axis -1', inputs: { x: { dims: [2, 3, 4], scale: 2 } }, build: (b) => b.op('Softmax', ['x'], { axis: -1 }) },
  { name: 'Softmax axis 1', inputs: { x: { dims: [2, 3, 4], scale: 2 } }, build: (b) => b.op('Softmax', ['x'], { axis: 1 }) },
  { name: 'LogSoftmax axis 0', inputs: { x: { dims: [3, 4], scale: 2 } }, build: (b) => b.op('LogSoftmax', ['x'], { axis: 0 }) },
  {
    name: 'LayerNormalization axis -1',
    inputs: { x: { dims: [2, 3, 5], scale: 2, offset: 0.3 } },
    build: (b, w) => b.op('LayerNormalization', ['x', w('scale', [5], 0.5, 1), w('bias', [5])], { axis: -1, epsilon: { float: 1e-5 } }),
  },
  {
    name: 'LayerNormalization axis -2 (two normalised axes)',
    inputs: { x: { dims: [2, 3, 4], scale: 2 } },
    build: (b, w) => b.op('LayerNormalization', ['x', w('scale', [3, 4], 0.5, 1), w('bias', [3, 4])], { axis: -2, epsilon: { float: 1e-5 } }),
  },
  {
    name: 'Reshape (0 and -1) and Flatten',
    inputs: { x: { dims: [2, 3, 4] } },
    build: (b, w) => b.op('Mul', [b.op('Flatten', [b.op('Reshape', ['x', b.int64([0, -1, 2])])], { axis: 1 }), w('m', [12])]),
  },
  { name: 'Transpose', inputs: { x: { dims: [2, 3, 4] } }, build: (b, w) => b.op('Mul', [b.op('Transpose', ['x'], { perm: [2, 0, 1] }), w('m', [4, 2, 3])]) },
  {
    name: 'Slice: negative bounds, step 2, two axes',
    inputs: { x: { dims: [4, 7] } },
    build: (b) => b.op('Slice', ['x', b.int64([-3, 1]), b.int64([100, -1]), b.int64([0, 1]), b.int64([1, 2])]),
  },
  {
    name: 'Slice with bounds known at run time (positions cut to the length)',
    inputs: { x: { dims: [2, 3, 4] } },
    build: (b, w) => {
      const len = b.op('Slice', [b.op('Shape', ['x']), b.int64([1]), b.int64([2])]);
      const pos = b.op('Slice', [w('positions', [6, 4]), b.int64([0]), len, b.int64([0])]);
      return b.op('Add', ['x', pos]);
    },
  },
  {
    name: 'Concat of three (one constant)',
    inputs: { a: { dims: [2, 1, 3] }, c: { dims: [2, 2, 3] } },
    build: (b, w) => b.op('Concat', ['a', b.weight('fixed', randomArray(6, 77), [2, 1, 3]), 'c', w('tail', [2, 3, 3])], { axis: 1 }),
    wrt: ['a', 'c', 'tail'],
  },
  {
    name: 'Gather axis 0: embedding lookup with repeated and negative ids',
    extra: { ids: i64([1, 4, 1, -1, 0, 4], [2, 3]) },
    build: (b, w) => b.op('Gather', [w('table', [5, 3]), 'ids'], { axis: 0 }),
  },
  {
    name: 'Gather axis 1, scalar index (the ViT class token)',
    inputs: { x: { dims: [2, 4, 3] } },
    build: (b) => b.op('Gather', ['x', b.int64([0])], { axis: 1 }),
  },
  {
    name: 'Gather axis 1 with 2-D indices',
    inputs: { x: { dims: [2, 4, 3] } },
    extra: { idx: i64([3, 0, 3, 1], [2, 2]) },
    build: (b) => b.op('Gather', ['x', 'idx'], { axis: 1 }),
  },
  {
    name: 'GatherElements at ArgMax (text pooling; Shape, Cast to int, ArgMax cut)',
    inputs: { x: { dims: [2, 5, 3] } },
    extra: { ids: i64([3, 9, 2, 1, 0, 4, 1, 7, 2, 0], [2, 5]) },
    build: (b) => {
      const end = b.op('Unsqueeze', [b.op('ArgMax', [b.op('Cast', ['ids'], { to: 6 })], { axis: -1, keepdims: 1 }), b.int64([2])]);
      const lead = b.op('Slice', [b.op('Shape', ['x']), b.int64([0]), b.int64([1])]);
      const idx = b.op('Expand', [end, b.op('Concat', [lead, b.int64([1, 3])], { axis: 0 })]);
      return b.op('Reshape', [b.op('GatherElements', ['x', idx], { axis: 1 }), b.int64([-1, 3])]);
    },
  },
  {
    name: 'Unsqueeze and Squeeze',
    inputs: { x: { dims: [3, 4] } },
    build: (b, w) => b.op('Squeeze', [b.op('Mul', [b.op('Unsqueeze', ['x', b.int64([0, 2])]), w('m', [1, 3, 1, 4])]), b.int64([0])]),
  },
  { name: 'Expand', inputs: { x: { dims: [3, 1] } }, build: (b) => b.op('Expand', ['x', b.int64([2, 3, 4])]) },
  ...[0, 1].flatMap((keep): OpCase[] => [
    { name: `ReduceSum axis 1 keepdims=${keep}`, inputs: { x: { dims: [2, 3, 4] } }, build: (b) => b.op('ReduceSum', ['x', b.int64([1])], { keepdims: keep }) },
    { name: `ReduceSum all keepdims=${keep}`, inputs: { x: { dims: [2, 3] } }, build: (b) => b.op('Mul', [b.op('ReduceSum', ['x'], { keepdims: keep }), 'x']) },
    { name: `ReduceMean axes [0,2] keepdims=${keep}`, inputs: { x: { dims: [2, 3, 4] } }, build: (b) => b.op('ReduceMean', ['x'], { axes: [0, 2], keepdims: keep }) },
    { name: `ReduceSumSquare axis -1 keepdims=${keep}`, inputs: { x: { dims: [2, 3] } }, build: (b) => b.op('ReduceSumSquare', ['x'], { axes: [-1], keepdims: keep }) },
    { name: `ReduceL2 axis -1 keepdims=${keep}`, inputs: { x: { dims: [2, 3] } }, build: (b) => b.op('ReduceL2', ['x'], { axes: [-1], keepdims: keep }) },
  ]),
  {
    name: 'ReduceMean over a symbolic axis (divisor at run time)',
    build: (b) => b.op('ReduceMean', [b.input('x', 'double', ['n', 3])], { axes: [0], keepdims: 0 }),
  },
  {
    name: 'Where with a constant mask',
    inputs: { a: { dims: [3, 4] }, c: { dims: [4] } },
    build: (b) => {
      const mask = b.initializer('mask', 'bool', [3, 4], Uint8Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? 1 : 0)));
      return b.op('Where', [mask, 'a', 'c']);
    },
  },
  {
    name: 'Cast float32 → float64 (the gradient goes back as float32)',
    extra: { x: { data: Float32Array.from(randomArray(6, 5)), dims: [2, 3] } },
    build: (b, w) => b.op('Mul', [b.op('Cast', ['x'], { to: 11 }), w('m', [3])]),
    wrt: ['x', 'm'],
  },
  {
    name: 'Split',
    inputs: { x: { dims: [2, 5] } },
    build: (b, w) => {
      b.op('Split', ['x', b.int64([2, 3])], { axis: 1 }, ['left', 'right']);
      return b.op('Mul', ['right', w('m', [3])]);
    },
  },
  { name: 'Sum (variadic) and a value used three times', inputs: { x: { dims: [3] } }, build: (b) => b.op('Sum', ['x', b.op('Mul', ['x', 'x']), b.op('Sigmoid', ['x'])]) },
];

describe('gradient rules against float64 central differences', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      if (c.name.startsWith('Add with symbolic')) {
        const { bytes } = doubleGraph(c);
        const r = await checkGradients(bytes, {
          output: 'out',
          wrt: ['p', 'q'],
          feeds: { p: { data: randomArray(12, 3), dims: [3, 4] }, q: { data: randomArray(4, 4), dims: [1, 4] } },
        });
        expect(r.maxRelative).toBeLessThan(TOL);
        expect(r.analytic.get('q')).toHaveLength(4);
        measured.push({ name: c.name, maxRelative: r.maxRelative, count: r.count });
        return;
      }
      if (c.name.startsWith('ReduceMean over a symbolic')) {
        const { bytes } = doubleGraph(c);
        const r = await checkGradients(bytes, { output: 'out', wrt: ['x'], feeds: { x: { data: randomArray(12, 8), dims: [4, 3] } } });
        expect(r.maxRelative).toBeLessThan(TOL);
        measured.push({ name: c.name, maxRelative: r.maxRelative, count: r.count });
        return;
      }
      await expectRule(c);
    });
  }

  it('Erf, in float32: ORT 1.30 has no float64 Erf kernel', async () => {
    // Checked in float32 with h = 1e-3: the loss (six O(1) terms) rounds at ~1e-7, so the difference quotient
    // carries ~1e-7/2e-3 = 5e-5 of rounding, and the truncation error h²/6·|erf‴| is ~4e-7; gradients here are
    // O(1), so 2e-3 leaves a margin over both while still catching a wrong factor or sign.
    const b = new GraphBuilder('erf');
    b.input('x', 'float', [2, 3]);
    b.op('Erf', ['x'], {}, 'out');
    b.output('out', 'float', [2, 3]);
    const x = Float32Array.from(randomArray(6, 21, 1.5));
    const r = await checkGradients(b.toBytes(), { output: 'out', wrt: ['x'], feeds: { x: { data: x, dims: [2, 3] } }, h: 1e-3 });
    expect(r.maxAbsGradient).toBeGreaterThan(0.1);
    expect(r.maxRelative).toBeLessThan(2e-3);
    measured.push({ name: 'Erf (float32, h = 1e-3; bound 2e-3)', maxRelative: r.maxRelative, count: r.count });
  });

  it('cuts the causal mask: an additive -1e9 constant gets no gradient and masked scores get exactly zero', async () => {
    const b = new GraphBuilder('mask', { float: 'double' });
    b.input('s', 'double', [3, 3]);
    const mask = b.weight('mask', Float64Array.from([0, -1e9, -1e9, 0, 0, -1e9, 0, 0, 0]), [3, 3]);
    b.op('Softmax', [b.op('Add', ['s', mask])], { axis: -1 }, 'out');
    b.output('out', 'double', [3, 3]);
    const r = await checkGradients(b.toBytes(), { output: 'out', wrt: ['s'], feeds: { s: { data: randomArray(9, 12), dims: [3, 3] } } });
    expect(r.maxRelative).toBeLessThan(TOL);
    const gs = r.analytic.get('s') as Float64Array;
    for (const masked of [1, 2, 5]) expect(gs[masked]).toBe(0);
    expect(Math.abs(gs[3] as number)).toBeGreaterThan(1e-3);
    // The mask is a constant: no gradient output was asked for it, and none is computed.
    expect([...r.gradient.gradients.keys()]).toEqual(['s']);
  });

  it('gives an explicit zero gradient to a parameter with no path to the loss', async () => {
    const b = new GraphBuilder('unused', { float: 'double' });
    b.input('x', 'double', [2]);
    b.weight('unused', Float64Array.from([1, 2, 3]), [3]);
    b.op('Mul', ['x', 'x'], {}, 'loss_in');
    b.op('ReduceSum', ['loss_in'], { keepdims: 0 }, 'loss');
    b.output('loss', 'double', []);
    const grad = differentiate(readGraph(b.toBytes()), { loss: 'loss', wrt: ['x', 'unused'] });
    const session = await openDoubleSafe(writeGraph(grad.graph));
    const { Tensor } = await import('onnxruntime-node');
    const out = await session.run({ x: new Tensor('float64', Float64Array.from([3, -2]), [2]), unused: new Tensor('float64', Float64Array.from([1, 2, 3]), [3]) });
    expect(Array.from(out['grad.x']!.data as Float64Array)).toEqual([6, -4]);
    expect(Array.from(out['grad.unused']!.data as Float64Array)).toEqual([0, 0, 0]);
    await session.release();
  });

  it('refuses an op without a rule on the path, naming it, and ignores one off the path', () => {
    const b = new GraphBuilder('cos', { float: 'double' });
    b.input('x', 'double', [2]);
    b.op('Cos', ['x'], {}, 'bad');
    b.op('ReduceSum', ['bad'], { keepdims: 0 }, 'loss');
    b.op('Cos', [b.weight('other', Float64Array.from([1, 2]), [2])], {}, 'side');
    b.op('ReduceSum', [b.op('Mul', ['x', 'x'])], { keepdims: 0 }, 'fine');
    b.output('loss', 'double', []);
    b.output('fine', 'double', []);
    b.output('side', 'double', [2]);
    const g = readGraph(b.toBytes());
    let caught: unknown;
    try {
      differentiate(g, { loss: 'loss', wrt: ['x'] });
    } catch (err) {
      caught = err;
    }
    expect(isClipdexError(caught, 'MODEL_UNSUPPORTED')).toBe(true);
    expect((caught as Error).message).toMatch(/no gradient rule for ONNX op Cos \(node output bad\)/);
    expect(() => differentiate(g, { loss: 'fine', wrt: ['x'] })).not.toThrow();
    expect(supportedOps()).not.toContain('Cos');
  });

  it('refuses a request that does not fit the graph with INVALID_ARGUMENT', () => {
    const b = new GraphBuilder('bad', { float: 'double' });
    b.input('x', 'double', [2]);
    b.op('Mul', ['x', 'x'], {}, 'y');
    b.output('y', 'double', [2]);
    const g = readGraph(b.toBytes());
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return isClipdexError(err) ? `${err.code}: ${err.message}` : String(err);
      }
      return 'no error';
    };
    expect(code(() => differentiate(g, { loss: 'y', wrt: ['x'] }))).toMatch(/^INVALID_ARGUMENT: .*y is not a scalar/);
    expect(code(() => differentiate(g, { upstream: ['y'], wrt: ['nope'] }))).toMatch(/^INVALID_ARGUMENT: .*nope is neither/);
    expect(code(() => differentiate(g, { upstream: ['z'], wrt: ['x'] }))).toMatch(/^INVALID_ARGUMENT: .*z is not an output/);
    b.input('ids', 'int64', [2]);
    expect(code(() => differentiate(readGraph(b.toBytes()), { upstream: ['y'], wrt: ['ids'] }))).toMatch(/^INVALID_ARGUMENT: input ids is int64/);
  });

  it('reports the measured errors', () => {
    // Printed for the record (the per-op figures quoted in the report); each case asserted its own bound.
    const worst = measured.filter((c) => !c.name.includes('float32')).reduce((m, c) => Math.max(m, c.maxRelative), 0);
    console.log(measured.map((c) => `${c.maxRelative.toExponential(1)}  ${c.name} (${c.count})`).join('\n'));
    expect(measured.length).toBeGreaterThanOrEqual(CASES.length + 1);
    expect(worst).toBeLessThan(TOL);
  });
});
