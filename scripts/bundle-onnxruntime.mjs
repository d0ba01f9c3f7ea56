// `npm pack` ships onnxruntime-node inside clipdex's tarball (bundleDependencies) with its postinstall
// removed. Why: that postinstall downloads ONNX Runtime's CUDA provider from NuGet on every Linux x64
// install, GPU or not, and dies offline (ENOTFOUND) — and nothing in clipdex's own package.json or .npmrc
// can switch it off for someone installing the package (npm reads neither from a dependency). Bundled
// without the hook, the CPU runtime that ships inside onnxruntime-node is all that installs; clipdex's own
// postinstall (scripts/postinstall.mjs) then fetches CUDA only where an NVIDIA GPU is present, and only
// warns when it cannot.
//
// The bundling is declared only while packing: in the repository, npm's allowScripts denial is what keeps
// the hook off, and npm does not apply allowScripts to bundled dependencies. `strip` runs at prepack,
// `restore` at postpack (and at the next strip, if a pack died in between).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ownManifest = join(root, 'package.json');
const ortManifest = join(root, 'node_modules', 'onnxruntime-node', 'package.json');
// Kept outside the bundled folder, so the backups are not packed.
const backupDir = join(root, 'node_modules', '.cache', 'clipdex');
const backups = [
  [ownManifest, join(backupDir, 'clipdex.package.json')],
  [ortManifest, join(backupDir, 'onnxruntime-node.package.json')],
];

const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));
const writeJson = (path, value) => writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);

function strip() {
  if (!existsSync(ortManifest)) throw new Error(`${ortManifest} is missing: run \`npm ci\` before packing`);
  restore();
  mkdirSync(backupDir, { recursive: true });
  for (const [file, backup] of backups) writeFileSync(backup, readFileSync(file));
  const own = readJson(ownManifest);
  own.bundleDependencies = ['onnxruntime-node'];
  writeJson(ownManifest, own);
  const ort = readJson(ortManifest);
  for (const hook of ['preinstall', 'install', 'postinstall']) delete ort.scripts?.[hook];
  writeJson(ortManifest, ort);
  console.error('clipdex: bundling onnxruntime-node without its CUDA-download postinstall');
}

function restore() {
  for (const [file, backup] of backups) if (existsSync(backup)) renameSync(backup, file);
}

const step = process.argv[2];
if (step === 'strip') strip();
else if (step === 'restore') restore();
else {
  console.error('usage: bundle-onnxruntime.mjs strip|restore');
  process.exit(2);
}
