/**
 * npm run bench:grad — what one step of fine-tuning a text block costs (issue 17): forward + backward of one
 * ViT-B/32-shaped text block (width 512, 8 heads, context 77) for a batch of 64 captions, float32, on the CPU,
 * through the graph src/train/graph-grad generates, against the forward alone.
 *
 * Two backward variants: the weights only (the lowest trained block: nothing below it learns) and weights +
 * input (a block with another trained block below it, which needs ∂x). The loss is outside the block, so its
 * gradient comes in as the upstream seed, as it will when the blocks are chained to the contrastive head.
 *
 * BENCH_BATCH, BENCH_RUNS and CLIPDEX_THREADS (default: all cores) change the run.
 */
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { openGraph } from '../src/inference/onnx-runtime.js';
import type { BlockWeights, LinearWeights } from '../src/model/clip-architecture.js';
import { transformerBlockGraph } from '../src/model/clip-onnx-graph.js';
import { differentiate } from '../src/train/graph-grad/differentiate.js';
import { readGraph, writeGraph } from '../src/train/graph-grad/onnx-ir.js';
import { seededRandom } from '../src/util/seeded-random.js';

const WIDTH = 512;
const HEADS = 8;
const CONTEXT = 77;
const BATCH = Number(process.env.BENCH_BATCH ?? 64);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const THREADS = Number(process.env.CLIPDEX_THREADS ?? availableParallelism());

const rand = seededRandom(17);
const fill = (n: number, std: number) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * std * Math.sqrt(3));
const linear = (inDim: number, outDim: number, std: number): LinearWeights => ({ w: fill(inDim * outDim, std), b: fill(outDim, 0.01), inDim, outDim });
const ln = () => ({ gamma: Float32Array.from({ length: WIDTH }, () => 1 + 0.1 * (rand() - 0.5)), beta: fill(WIDTH, 0.01) });

// CLIP's initialisation scales (clip-architecture.ts), uniform instead of Gaussian: timing does not care.
const attnStd = WIDTH ** -0.5;
const block: BlockWeights = {
  ln1: ln(),
  q: linear(WIDTH, WIDTH, attnStd),
  k: linear(WIDTH, WIDTH, attnStd),
  v: linear(WIDTH, WIDTH, attnStd),
  out: linear(WIDTH, WIDTH, attnStd / Math.sqrt(24)),
  ln2: ln(),
  fc1: linear(WIDTH, 4 * WIDTH, (2 * WIDTH) ** -0.5),
  fc2: linear(4 * WIDTH, WIDTH, attnStd / Math.sqrt(24)),
};

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function time(what: string, bytes: Uint8Array, feeds: () => Record<string, ort.Tensor>): Promise<number> {
  const t0 = performance.now();
  const session = await openGraph(bytes, what, { threads: THREADS });
  const open = performance.now() - t0;
  await session.run(feeds()); // warm-up: first-run allocations
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await session.run(feeds());
    times.push(performance.now() - t);
  }
  await session.release();
  const m = median(times);
  console.log(
    `${what.padEnd(34)} median ${(m / 1000).toFixed(3)} s  (min ${(Math.min(...times) / 1000).toFixed(3)}, max ${(Math.max(...times) / 1000).toFixed(3)}; session ${(open / 1000).toFixed(2)} s)`,
  );
  return m;
}

const forward = transformerBlockGraph(block, { heads: HEADS, width: WIDTH, contextLength: CONTEXT });
const ir = readGraph(forward);
const weights = [...ir.initializers.values()].filter((t) => t.name.startsWith('block.')).map((t) => t.name);
const dims = [BATCH, CONTEXT, WIDTH];
const x = fill(BATCH * CONTEXT * WIDTH, 1);
const seed = fill(BATCH * CONTEXT * WIDTH, 1e-3);

console.log(`one text block, width ${WIDTH}, ${HEADS} heads, context ${CONTEXT}, batch ${BATCH}, float32, ${THREADS} threads, ${RUNS} runs after a warm-up`);
const fwd = await time('forward', forward, () => ({ x: new ort.Tensor('float32', x, dims) }));
for (const withInput of [false, true]) {
  const grad = differentiate(ir, { upstream: ['y'], wrt: withInput ? [...weights, 'x'] : weights });
  const params = Object.fromEntries(grad.parameters.map((p) => [p.name, p]));
  const feeds = () => {
    const f: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, dims), [grad.seeds.get('y') as string]: new ort.Tensor('float32', seed, dims) };
    for (const [name, p] of Object.entries(params)) f[name] = new ort.Tensor('float32', p.data as Float32Array, p.dims);
    return f;
  };
  const nodes = grad.graph.nodes.length - ir.nodes.length;
  const both = await time(`forward + backward (${withInput ? 'weights + x' : 'weights'})`, writeGraph(grad.graph), feeds);
  console.log(`  ${nodes} backward nodes; backward ≈ ${((both - fwd) / 1000).toFixed(3)} s = ${((both - fwd) / fwd).toFixed(2)}× the forward`);
}
const flops = 2 * BATCH * CONTEXT * (12 * WIDTH * WIDTH + 2 * CONTEXT * WIDTH);
console.log(`forward matrix products: ${(flops / 1e9).toFixed(1)} GFLOP (the backward does about twice that)`);
console.log(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
