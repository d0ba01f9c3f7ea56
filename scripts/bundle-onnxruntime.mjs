// `npm pack` ships onnxruntime-node inside clipdex's tarball (bundleDependencies) with its postinstall
// removed. Why: that postinstall downloads ONNX Runtime's CUDA provider from NuGet on every Linux x64
// install, GPU or not, and dies offline (ENOTFOUND) — and nothing in clipdex's own package.json or .npmrc
// can switch it off for someone installing the package (npm reads neither from a dependency). Bundled
// without the hook, the CPU runtime that ships inside onnxruntime-node is all that installs; clipdex's own
// postinstall (scripts/postinstall.mjs) then fetches CUDA only where an NVIDIA GPU is present, and only
// warns when it cannot. `strip` runs at prepack, `restore` at postpack, so the repository's copy is
// changed only while the tarball is written.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const manifest = join(root, 'node_modules', 'onnxruntime-node', 'package.json');
// Kept outside the bundled folder, so the backup is not packed with it.
const backup = join(root, 'node_modules', '.cache', 'clipdex', 'onnxruntime-node.package.json');

function strip() {
  if (!existsSync(manifest)) throw new Error(`${manifest} is missing: run \`npm ci\` before packing`);
  if (existsSync(backup)) restore(); // a pack that died before postpack left the copy stripped
  const text = readFileSync(manifest, 'utf8');
  const pkg = JSON.parse(text);
  mkdirSync(dirname(backup), { recursive: true });
  writeFileSync(backup, text);
  for (const hook of ['preinstall', 'install', 'postinstall']) delete pkg.scripts?.[hook];
  writeFileSync(manifest, `${JSON.stringify(pkg, null, 2)}\n`);
  console.error('clipdex: bundling onnxruntime-node without its CUDA-download postinstall');
}

function restore() {
  if (existsSync(backup)) renameSync(backup, manifest);
}

const step = process.argv[2];
if (step === 'strip') strip();
else if (step === 'restore') restore();
else {
  console.error('usage: bundle-onnxruntime.mjs strip|restore');
  process.exit(2);
}
