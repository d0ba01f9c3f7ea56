/**
 * The one module that talks to ONNX Runtime. Every session in clipdex — the CLIP towers read from files and
 * the small graphs built in memory (top-k, adapter projection, the training step) — is created here, with the
 * providers, thread counts and session options decided here. The rest imports ORT's types from this file and
 * never `onnxruntime-node` itself, so a change of runtime, provider or threading policy is one file's change.
 *
 * Which thread runs inference (onnxruntime-node 1.30: lib/backend.ts in the package; the native binding's
 * js/node/src/inference_session_wrap.h marks LoadModel and Run "[sync]"): `session.run()` returns a promise
 * at once, but one `setImmediate` later the binding runs the whole graph synchronously ON THE JS THREAD THAT
 * CALLED IT and resolves when it is done. ORT spreads each operator over its intra-op pool (intraOpNumThreads
 * threads in all), yet the calling thread sits inside the call until the last op ends: its event loop stalls
 * for the whole run (measured here: a 240 ms MatMul delayed a 0 ms timer by 240 ms). Creating a session
 * (parsing and optimising the graph) blocks the calling thread the same way, and so does a CUDA session while
 * it waits for the GPU. Hence: the ingest image encoder runs on its own worker thread (ingest/encoder-thread.ts);
 * query encoding, the exact top-k and the trainer's kernels run on whichever thread calls them — in
 * `clipdex serve` the main thread, which answers no request meanwhile.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ClipdexError, errorMessage } from '../errors.js';
import { OptimizedGraphCache } from './optimized-cache.js';

/** ORT's own types, for the modules that hold a session or its tensors (they must not import the runtime). */
export type InferenceSession = ort.InferenceSession;
export type Tensor = ort.Tensor;
export type SessionOutputs = ort.InferenceSession.OnnxValueMapType;

/** Execution providers we know how to ask for, in the order a user would prefer them. */
export type ProviderName = 'cuda' | 'webgpu' | 'cpu';

export interface SessionOptions {
  /** Tried in order; the first that creates a session wins. Default: cuda (when installed), then cpu. */
  providers?: ProviderName[];
  /** Intra-op threads for the CPU provider; default: all cores. */
  threads?: number;
  /**
   * Where optimized graphs are kept (optimized-cache.ts), normally the model cache dir: a model file opened
   * on the CPU is then optimized once and opened from its saved graph afterwards. None: optimized at each
   * open. `CLIPDEX_ORT_CACHE=off` turns it off everywhere.
   */
  cacheDir?: string;
}

/** What became of the optimized-graph cache at an open. */
export type GraphCacheOutcome =
  /** No cache asked for, turned off, or not the CPU provider. */
  | { state: 'off' }
  /** Opened from the saved graph, optimizations off. */
  | { state: 'hit'; dir: string }
  /** Optimized from the model file and saved; `discarded` says why an entry that was there was not used. */
  | { state: 'written'; dir: string; discarded?: string }
  /** Optimized from the model file, but the graph could not be saved (read-only or full cache dir): works, slower next time. */
  | { state: 'unsaved'; reason: string; discarded?: string };

export interface ProviderFallback {
  provider: ProviderName;
  reason: string;
}

export interface OpenedSession {
  session: InferenceSession;
  provider: ProviderName;
  /** Providers tried before the one used, and why each was passed over. */
  fallbacks: ProviderFallback[];
  graphCache: GraphCacheOutcome;
}

export const DEFAULT_PROVIDERS: readonly ProviderName[] = ['cuda', 'cpu'];
const KNOWN_PROVIDERS: readonly ProviderName[] = ['cuda', 'webgpu', 'cpu'];

/** The runtime's version, for diagnostics. */
export function onnxRuntimeVersion(): string {
  return ort.env.versions.common;
}

/**
 * `CLIPDEX_PROVIDERS=webgpu,cpu` opts into WebGPU (bundled with onnxruntime-node, needs a Vulkan GPU);
 * `CLIPDEX_THREADS=n` sets the CPU threads. Read here so every entry point (CLI, server, library) honours them.
 */
export function sessionOptionsFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): SessionOptions {
  const options: SessionOptions = {};
  const providers = env.CLIPDEX_PROVIDERS?.trim();
  if (providers) {
    const list = providers.split(',').map((p) => p.trim().toLowerCase());
    const unknown = list.filter((p) => !KNOWN_PROVIDERS.includes(p as ProviderName));
    if (unknown.length > 0) {
      throw new ClipdexError('INVALID_ARGUMENT', `CLIPDEX_PROVIDERS: unknown provider ${unknown.join(', ')} (known: ${KNOWN_PROVIDERS.join(', ')})`);
    }
    options.providers = list as ProviderName[];
  }
  const threads = env.CLIPDEX_THREADS?.trim();
  if (threads) options.threads = Number(threads);
  return options;
}

const require = createRequire(import.meta.url);

/** Where onnxruntime-node keeps its native libraries; the CUDA provider is an optional download into it. */
function ortBinaryDir(): string {
  const pkg = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

/**
 * Why a provider cannot run here, or null when it is worth trying.
 * Checking first turns ORT's opaque load failure into advice a user can act on.
 */
export function providerUnavailableReason(provider: ProviderName): string | null {
  const backends = ort.listSupportedBackends?.() ?? [];
  const known = backends.find((b) => b.name === provider);
  if (provider === 'cpu') return null;
  if (!known) return `onnxruntime-node ${ort.env.versions.common} on ${process.platform}/${process.arch} has no ${provider} backend`;
  if (provider === 'cuda') {
    if (!existsSync(join(ortBinaryDir(), 'libonnxruntime_providers_cuda.so'))) {
      return 'the CUDA provider libraries are not installed; on a machine with an NVIDIA GPU run `npm rebuild clipdex` or `node node_modules/onnxruntime-node/script/install.js --onnxruntime-node-install=cuda12`';
    }
    if (!existsSync('/proc/driver/nvidia/version') && !process.env.CUDA_VISIBLE_DEVICES) {
      return 'no NVIDIA driver found (/proc/driver/nvidia/version is missing)';
    }
  }
  return null;
}

/**
 * ORT's intra-op workers spin while they wait for work, by default. clipdex never runs a session alone — sharp
 * decodes beside the image tower, the text tower has a thread of its own, the server answers requests — and the
 * spinning took CPU from that work: measured with spinning off, 40 % less CPU per text query and 15–25 % less per
 * image, text p50 no slower (BENCHMARKS.md, "ORT's spinning workers"). `CLIPDEX_ORT_SPIN=1` turns it back on.
 */
function allowSpinning(): '0' | '1' {
  const v = process.env.CLIPDEX_ORT_SPIN?.trim();
  if (!v || v === '0') return '0';
  if (v === '1') return '1';
  throw new ClipdexError('INVALID_ARGUMENT', `CLIPDEX_ORT_SPIN must be 0 or 1, got ${v}`);
}

/**
 * The options every session gets. One operator at a time (sequential, ORT's default), so the inter-op pool
 * would have nothing to do and is kept to the calling thread; all parallelism is within an operator.
 */
function ortSessionOptions(provider: ProviderName, threads: number, spin: '0' | '1'): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [provider],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: spin } } },
  };
}

/** Opens an ONNX model file with the first provider that works, recording why the others were skipped. */
export async function openSession(modelPath: string, options: SessionOptions = {}): Promise<OpenedSession> {
  if (!existsSync(modelPath)) {
    throw new ClipdexError('MODEL_NOT_FOUND', `model file not found: ${modelPath}`);
  }
  const fromEnv = sessionOptionsFromEnv();
  const providers = options.providers ?? fromEnv.providers ?? [...DEFAULT_PROVIDERS];
  if (providers.length === 0) throw new ClipdexError('INVALID_ARGUMENT', 'no execution provider requested');
  const threads = options.threads ?? fromEnv.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) {
    throw new ClipdexError('INVALID_ARGUMENT', `thread count must be a positive integer, got ${threads}`);
  }
  // Read before any session is tried: a bad value is the user's setting, not the model's or a provider's fault.
  const spin = allowSpinning();
  const cacheOn = options.cacheDir !== undefined && graphCacheOn();
  const fallbacks: ProviderFallback[] = [];
  for (const provider of providers) {
    const unavailable = providerUnavailableReason(provider);
    if (unavailable) {
      fallbacks.push({ provider, reason: unavailable });
      continue;
    }
    try {
      const base = ortSessionOptions(provider, threads, spin);
      const cache = provider === 'cpu' && cacheOn && options.cacheDir ? await OptimizedGraphCache.for(options.cacheDir, modelPath, graphSettings(provider, base)) : null;
      if (!cache) return { session: await ort.InferenceSession.create(modelPath, base), provider, fallbacks, graphCache: { state: 'off' } };
      return { ...(await openThroughCache(modelPath, cache, base)), provider, fallbacks };
    } catch (err) {
      const reason = errorMessage(err);
      // A corrupt file fails the same way on every provider: say so instead of blaming the provider.
      if (provider === 'cpu' || /protobuf|parse|invalid model|load model/i.test(reason)) {
        throw new ClipdexError('MODEL_INVALID', `cannot load ONNX model ${modelPath}: ${reason}`, { cause: err });
      }
      fallbacks.push({ provider, reason });
    }
  }
  throw new ClipdexError(
    'EXECUTION_PROVIDER_UNAVAILABLE',
    `no execution provider could run ${modelPath}: ${fallbacks.map((f) => `${f.provider}: ${f.reason}`).join('; ')}`,
    { details: { fallbacks } },
  );
}

function graphCacheOn(): boolean {
  const v = process.env.CLIPDEX_ORT_CACHE?.trim().toLowerCase();
  if (!v || v === 'on' || v === '1') return true;
  if (v === 'off' || v === '0') return false;
  throw new ClipdexError('INVALID_ARGUMENT', `CLIPDEX_ORT_CACHE must be on or off, got ${v}`);
}

function graphSettings(provider: ProviderName, options: ort.InferenceSession.SessionOptions) {
  return { runtimeVersion: ort.env.versions.common, provider, optimizationLevel: String(options.graphOptimizationLevel) };
}

/**
 * The saved graph when there is a sound one, else the model optimized as always and its graph saved on the
 * way (weights as external data, so that the next open maps them instead of copying them). A cache that
 * cannot be read or written costs only the time it would have saved.
 */
async function openThroughCache(modelPath: string, cache: OptimizedGraphCache, options: ort.InferenceSession.SessionOptions): Promise<{ session: InferenceSession; graphCache: GraphCacheOutcome }> {
  const found = await cache.lookup();
  let discarded: string | undefined;
  if (found && 'graph' in found) {
    try {
      // Optimized already: the level is what the graph was saved at, and running the passes again finds nothing.
      return { session: await ort.InferenceSession.create(found.graph, { ...options, graphOptimizationLevel: 'disabled' }), graphCache: { state: 'hit', dir: found.dir } };
    } catch (err) {
      await cache.remove();
      discarded = `the optimized graph cached in ${found.dir} was discarded: ONNX Runtime could not open it (${errorMessage(err)})`;
    }
  } else if (found) discarded = found.damaged;
  const withDiscarded = discarded ? { discarded } : {};
  const pending = await cache.begin().catch((err: unknown) => errorMessage(err));
  if (typeof pending === 'string') return { session: await ort.InferenceSession.create(modelPath, options), graphCache: { state: 'unsaved', reason: pending, ...withDiscarded } };
  let session: InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelPath, {
      ...options,
      optimizedModelFilePath: pending.graph,
      // ORT warns that a graph saved at level 'all' may hold layouts for this CPU: the cache key has the CPU in it.
      logSeverityLevel: 3,
      extra: {
        ...options.extra,
        session: {
          ...(options.extra as { session?: Record<string, unknown> } | undefined)?.session,
          optimized_model_external_initializers_file_name: pending.weightsName,
          optimized_model_external_initializers_min_size_in_bytes: '1024',
        },
      },
    });
  } catch (err) {
    await pending.discard();
    throw err;
  }
  try {
    await pending.commit();
    return { session, graphCache: { state: 'written', dir: cache.dir, ...withDiscarded } };
  } catch (err) {
    return { session, graphCache: { state: 'unsaved', reason: errorMessage(err), ...withDiscarded } };
  }
}

/**
 * Opens a graph built in memory (the kernels' GEMMs, top-k, the training step) on the CPU provider.
 * The CPU only: these run beside the towers, on data already in host memory, and must give the same numbers
 * everywhere. CLIPDEX_THREADS is not read here; `threads` defaults to all cores.
 * A failure is INFERENCE_FAILED "cannot create `what`: …".
 */
export async function openGraph(graph: Uint8Array, what: string, options: { threads?: number } = {}): Promise<InferenceSession> {
  const spin = allowSpinning();
  try {
    return await ort.InferenceSession.create(graph, ortSessionOptions('cpu', options.threads ?? availableParallelism(), spin));
  } catch (err) {
    throw new ClipdexError('INFERENCE_FAILED', `cannot create ${what}: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * A graph session opened on first use and shared after; a failed open is forgotten, so the next call tries
 * again instead of returning the same rejection for the life of the process.
 */
export function lazyGraph(build: () => Uint8Array, what: string): () => Promise<InferenceSession> {
  let session: Promise<InferenceSession> | null = null;
  return () => {
    session ??= openGraph(build(), what).catch((err: unknown) => {
      session = null;
      throw err;
    });
    return session;
  };
}

/**
 * Runs a session, turning a failure into INFERENCE_FAILED "`what`: …". The feeds are built inside, so a
 * tensor whose data does not fit its shape fails the same way as the run itself.
 */
export async function runSession(session: InferenceSession, what: string, feeds: () => Record<string, Tensor>): Promise<SessionOutputs> {
  try {
    return await session.run(feeds());
  } catch (err) {
    throw new ClipdexError('INFERENCE_FAILED', `${what}: ${errorMessage(err)}`, { cause: err });
  }
}

export function tensor(type: 'float32', data: Float32Array, dims: readonly number[]): Tensor;
export function tensor(type: 'int64' | 'int32', data: BigInt64Array | Int32Array, dims: readonly number[]): Tensor;
/** A tensor over `data` (not copied), for a session's feeds. */
export function tensor(type: 'float32' | 'int64' | 'int32', data: Float32Array | BigInt64Array | Int32Array, dims: readonly number[]): Tensor {
  return new ort.Tensor(type, data, dims);
}
