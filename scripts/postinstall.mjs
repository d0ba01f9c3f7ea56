// Fetches onnxruntime-node's CUDA provider only where an NVIDIA GPU is present, and never fails the install:
// onnxruntime-node's own postinstall downloads CUDA binaries unconditionally, which breaks offline installs,
// so it never runs (allowScripts denies it in the repository; the packed tarball bundles onnxruntime-node
// without it: scripts/bundle-onnxruntime.mjs) and this script runs it only when it can help.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

function hasNvidiaGpu() {
  if (process.platform !== 'linux' && process.platform !== 'win32') return false;
  if (existsSync('/proc/driver/nvidia/version')) return true;
  return spawnSync('nvidia-smi', ['-L'], { stdio: 'ignore', timeout: 5000 }).status === 0;
}

function main() {
  if (process.env.CLIPDEX_SKIP_CUDA === '1') return;
  if (!hasNvidiaGpu()) return;
  let ortDir;
  try {
    ortDir = dirname(require.resolve('onnxruntime-node/package.json'));
  } catch {
    return;
  }
  const binDir = join(ortDir, 'bin', 'napi-v6', process.platform, process.arch);
  if (existsSync(join(binDir, process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so'))) return;
  console.error('clipdex: NVIDIA GPU found; fetching the ONNX Runtime CUDA provider…');
  const result = spawnSync(process.execPath, [join(ortDir, 'script', 'install.js')], {
    stdio: 'inherit',
    timeout: 10 * 60 * 1000,
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'cuda12' },
  });
  if (result.status !== 0) {
    console.error(
      'clipdex: warning: could not fetch the CUDA provider (offline?). clipdex will run on the CPU.\n' +
        '  To enable the GPU later, run: node node_modules/onnxruntime-node/script/install.js --onnxruntime-node-install=cuda12\n' +
        '  (`clipdex doctor` shows which execution provider is used).',
    );
  }
}

try {
  main();
} catch (err) {
  console.error(`clipdex: warning: postinstall step skipped: ${err instanceof Error ? err.message : err}`);
}
