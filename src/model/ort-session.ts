import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ClipdexError, errorMessage } from '../errors.js';

/** Execution providers we know how to ask for, in the order a user would prefer them. */
export type ProviderName = 'cuda' | 'webgpu' | 'cpu';

export interface SessionOptions {
  /** Tried in order; the first that creates a session wins. Default: cuda (when installed), then cpu. */
  providers?: ProviderName[];
  /** Intra-op threads for the CPU provider; default: all cores. */
  threads?: number;
}

export interface ProviderFallback {
  provider: ProviderName;
  reason: string;
}

export interface OpenedSession {
  session: ort.InferenceSession;
  provider: ProviderName;
  /** Providers tried before the one used, and why each was passed over. */
  fallbacks: ProviderFallback[];
}

export const DEFAULT_PROVIDERS: readonly ProviderName[] = ['cuda', 'cpu'];
const KNOWN_PROVIDERS: readonly ProviderName[] = ['cuda', 'webgpu', 'cpu'];

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

/** Opens an ONNX model with the first provider that works, recording why the others were skipped. */
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
  const fallbacks: ProviderFallback[] = [];
  for (const provider of providers) {
    const unavailable = providerUnavailableReason(provider);
    if (unavailable) {
      fallbacks.push({ provider, reason: unavailable });
      continue;
    }
    try {
      const session = await ort.InferenceSession.create(modelPath, {
        executionProviders: [provider],
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
      });
      return { session, provider, fallbacks };
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
