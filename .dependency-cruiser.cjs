// The layer rules of ARCHITECTURE.md, checked by `npm run lint:deps` (part of `npm test`, so CI fails on a
// break). A module may import its own folder and the layers below it, never a layer above; cycles are
// refused everywhere, type-only imports included (a type is a dependency of the design too).

/** Bottom to top. Folders on one line are peers: neither may import the other. */
const LAYERS = [
  ['errors.ts'],
  ['util'],
  ['inference'],
  ['model'],
  // ocr/ reads text in photos with inference/ and model/'s decode; store/ keeps what it read without importing it.
  ['store', 'ocr'],
  ['index'],
  ['adapter'],
  ['library'],
  ['validation'],
  ['ingest', 'search'],
  ['train'],
  ['server'],
  ['cli'],
];

const pathOf = (name) => (name.endsWith('.ts') ? `^src/${name.replace('.', '\\.')}$` : `^src/${name}/`);

const layerRules = LAYERS.flatMap((layer, rank) =>
  layer.flatMap((name) => {
    const above = LAYERS.slice(rank + 1).flat();
    const peers = layer.filter((other) => other !== name);
    if (above.length + peers.length === 0) return [];
    return {
      name: `layer-${name.replace('.ts', '')}`,
      comment: `${name} (layer ${rank}) may import only the layers below it (see ARCHITECTURE.md)`,
      severity: 'error',
      from: { path: pathOf(name) },
      to: { path: [...above, ...peers].map(pathOf) },
    };
  }),
);

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'no-circular',
      comment: 'An import cycle means two modules are one concern in two files, or a layer is wrong',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'public-api-only-from-entry',
      comment: 'src/index.ts is the library entry: nothing inside src imports it',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/index\\.ts$' },
    },
    {
      name: 'onnxruntime-only-in-backend',
      comment: 'One module owns ONNX Runtime sessions, providers and threads; the rest asks it',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/inference/' },
      to: { path: 'node_modules/onnxruntime-(node|common)/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'tokenizers-only-in-hf-tokenizer',
      comment: "Hugging Face's native tokenizer is loaded in one module, lazily, so CLIP runs where its binary is missing and that module names the missing platform package",
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/model/hf-tokenizer\\.ts$' },
      to: { path: 'node_modules/tokenizers/' },
    },
    {
      name: 'pg-only-in-store-pg',
      comment: 'The Postgres driver is used by the Postgres side of the store alone; everything else holds a SqlHandle',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/store/pg/' },
      to: { path: 'node_modules/(pg|pg-[a-z-]+)/' },
    },
    {
      name: 'sqlite-only-in-store',
      comment:
        'Every SQL statement lives in a store/ repository (issue 14: a second backend implements them); the rest hands the connection on (store/database.ts SqliteHandle), type-only imports included',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/store/' },
      to: { path: 'node_modules/(@types/)?better-sqlite3/' },
    },
    {
      name: 'http-only-in-server',
      comment: 'Express and its middleware are the server edge',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/server/' },
      to: { path: 'node_modules/(express|multer|helmet)/' },
    },
    {
      name: 'not-to-dev-dependency',
      comment: 'What src imports must be installed for users too (a dependency, not a devDependency)',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
