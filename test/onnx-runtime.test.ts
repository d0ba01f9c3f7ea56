import { describe, expect, it } from 'vitest';
import { lazyGraph, openGraph, runSession, tensor } from '../src/inference/onnx-runtime.js';
import { GraphBuilder } from '../src/model/onnx-graph.js';

/** y = a·b for float matrices of any size. */
function matMulGraph(): Uint8Array {
  const g = new GraphBuilder('test_matmul');
  const a = g.input('a', 'float', ['n', 'k']);
  const b = g.input('b', 'float', ['k', 'm']);
  g.op('MatMul', [a, b], {}, 'y');
  g.output('y', 'float', ['n', 'm']);
  return g.toBytes();
}

const notAGraph = () => new TextEncoder().encode('not an onnx graph');

describe('the ONNX Runtime backend', () => {
  it('opens an in-memory graph on the CPU and runs it', async () => {
    const session = await openGraph(matMulGraph(), 'the test kernel', { threads: 1 });
    const out = await runSession(session, 'multiplying failed', () => ({
      a: tensor('float32', Float32Array.of(1, 2, 3, 4), [2, 2]),
      b: tensor('float32', Float32Array.of(1, 0, 0, 1), [2, 2]),
    }));
    expect(Array.from(out.y!.data as Float32Array)).toEqual([1, 2, 3, 4]);
    await session.release();
  });

  it('refuses a CLIPDEX_ORT_SPIN that is not 0 or 1 as the setting it is, and opens with either', async () => {
    const before = process.env.CLIPDEX_ORT_SPIN;
    try {
      process.env.CLIPDEX_ORT_SPIN = 'yes';
      await expect(openGraph(matMulGraph(), 'the test kernel', { threads: 1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/CLIPDEX_ORT_SPIN must be 0 or 1, got yes/) });
      for (const spin of ['0', '1']) {
        process.env.CLIPDEX_ORT_SPIN = spin;
        const session = await openGraph(matMulGraph(), 'the test kernel', { threads: 2 });
        await session.release();
      }
    } finally {
      if (before === undefined) delete process.env.CLIPDEX_ORT_SPIN;
      else process.env.CLIPDEX_ORT_SPIN = before;
    }
  });

  it('names the kernel when a graph cannot be loaded', async () => {
    await expect(openGraph(notAGraph(), 'the test kernel')).rejects.toMatchObject({
      code: 'INFERENCE_FAILED',
      message: expect.stringMatching(/^cannot create the test kernel: /),
    });
  });

  it('wraps a failed run, tensors built for the wrong shape included, as INFERENCE_FAILED', async () => {
    const session = await openGraph(matMulGraph(), 'the test kernel', { threads: 1 });
    await expect(
      runSession(session, 'multiplying failed', () => ({ a: tensor('float32', Float32Array.of(1, 2, 3), [2, 2]), b: tensor('float32', Float32Array.of(1), [1, 1]) })),
    ).rejects.toMatchObject({ code: 'INFERENCE_FAILED', message: expect.stringMatching(/^multiplying failed: /) });
    await expect(
      runSession(session, 'multiplying failed', () => ({ a: tensor('float32', new Float32Array(6), [2, 3]), b: tensor('float32', new Float32Array(4), [2, 2]) })),
    ).rejects.toMatchObject({ code: 'INFERENCE_FAILED', message: expect.stringMatching(/^multiplying failed: /) });
    await session.release();
  });

  it('opens a lazy graph once, and tries again after a failed open instead of keeping the rejection', async () => {
    let builds = 0;
    const kernel = lazyGraph(() => (++builds === 1 ? notAGraph() : matMulGraph()), 'the test kernel');
    await expect(kernel()).rejects.toMatchObject({ code: 'INFERENCE_FAILED' });
    const first = await kernel();
    expect(await kernel()).toBe(first);
    expect(builds).toBe(2);
    await first.release();
  });

  // The header of src/inference/onnx-runtime.ts says a run occupies the JS thread that calls it. If this fails,
  // onnxruntime-node has started running sessions off the calling thread: update that header (and the comments
  // that point to it) rather than this test.
  it('runs a session on the calling thread: the next callback waits for the whole run', async () => {
    const session = await openGraph(matMulGraph(), 'the test kernel', { threads: 1 });
    // Long enough (milliseconds) that a run handed to another thread could not be back by the next callback.
    const n = 256;
    let finished = false;
    const run = runSession(session, 'multiplying failed', () => ({
      a: tensor('float32', new Float32Array(n * n).fill(1), [n, n]),
      b: tensor('float32', new Float32Array(n * n).fill(1), [n, n]),
    })).then(() => (finished = true));
    // Queued after the binding's own setImmediate: it runs once the native call has returned on this thread.
    const seenByNextCallback = await new Promise<boolean>((resolve) => setImmediate(() => resolve(finished)));
    await run;
    expect(seenByNextCallback).toBe(true);
    await session.release();
  });
});
