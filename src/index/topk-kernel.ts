/**
 * Exact top-k by inner product as a two-node ONNX graph (Gemm + TopK) on ONNX Runtime's CPU provider.
 * Measured here (2 cores, 512-d): 100k rows 10–20 ms per query against 45–75 ms for an unrolled TS loop,
 * and still ~5× faster at 500 rows; batches of queries amortise further. The scan runs on the calling
 * thread (see inference/onnx-runtime.ts), so in `clipdex serve` it holds the event loop for those
 * milliseconds — a fraction of what the TS loop held it for.
 */
import onnxProto from 'onnx-proto';
import { ClipdexError } from '../errors.js';
import { lazyGraph, runSession, tensor } from '../inference/onnx-runtime.js';

const { onnx } = onnxProto;

export interface TopK {
  /** Row numbers into the matrix, best first. */
  rows: Int32Array;
  scores: Float32Array;
}

const kernel = lazyGraph(graphBytes, 'the exact-search kernel');

/** Scores `queries` (b × dim) against `matrix` (n × dim, row-major) and keeps the k best rows per query. */
export async function topKInnerProduct(matrix: Float32Array, n: number, dim: number, queries: Float32Array, k: number): Promise<TopK[]> {
  const b = queries.length / dim;
  if (!Number.isInteger(b)) throw new ClipdexError('INVALID_ARGUMENT', `query length ${queries.length} is not a multiple of ${dim}`);
  const kk = Math.min(k, n);
  if (b === 0) return [];
  if (kk <= 0) return Array.from({ length: b }, () => ({ rows: new Int32Array(0), scores: new Float32Array(0) }));
  const out = await runSession(await kernel(), 'exact top-k failed', () => ({
    q: tensor('float32', queries, [b, dim]),
    v: tensor('float32', matrix.subarray(0, n * dim), [n, dim]),
    k: tensor('int64', BigInt64Array.of(BigInt(kk)), [1]),
  }));
  const values = out.values!.data as Float32Array;
  const indices = out.indices!.data as BigInt64Array;
  const result: TopK[] = [];
  for (let i = 0; i < b; i++) {
    const rows = new Int32Array(kk);
    for (let j = 0; j < kk; j++) rows[j] = Number(indices[i * kk + j]);
    result.push({ rows, scores: values.slice(i * kk, (i + 1) * kk) });
  }
  return result;
}

/** scores = q · vᵀ (Gemm transB), then TopK along the last axis (largest, sorted). Shapes stay symbolic. */
function graphBytes(): Uint8Array {
  const FLOAT = 1;
  const INT64 = 7;
  const tensor = (name: string, elemType: number, dims: (number | string)[]) =>
    onnx.ValueInfoProto.create({
      name,
      type: onnx.TypeProto.create({
        tensorType: onnx.TypeProto.Tensor.create({
          elemType,
          shape: onnx.TensorShapeProto.create({
            dim: dims.map((d) =>
              typeof d === 'number' ? onnx.TensorShapeProto.Dimension.create({ dimValue: d }) : onnx.TensorShapeProto.Dimension.create({ dimParam: d }),
            ),
          }),
        }),
      }),
    });
  const graph = onnx.GraphProto.create({
    name: 'clipdex_exact_topk',
    node: [
      onnx.NodeProto.create({
        opType: 'Gemm',
        input: ['q', 'v'],
        output: ['scores'],
        name: 'gemm',
        attribute: [onnx.AttributeProto.create({ name: 'transB', type: onnx.AttributeProto.AttributeType.INT, i: 1 })],
      }),
      onnx.NodeProto.create({ opType: 'TopK', input: ['scores', 'k'], output: ['values', 'indices'], name: 'topk' }),
    ],
    input: [tensor('q', FLOAT, ['b', 'd']), tensor('v', FLOAT, ['n', 'd']), tensor('k', INT64, [1])],
    output: [tensor('values', FLOAT, ['b', 'k']), tensor('indices', INT64, ['b', 'k'])],
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'clipdex',
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: 17 })],
    graph,
  });
  return onnx.ModelProto.encode(model).finish();
}
