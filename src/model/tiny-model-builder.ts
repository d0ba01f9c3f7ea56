import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ClipdexError } from '../errors.js';
import { presetArchitecture, seededWeights, type ClipArchitecture, type ClipWeights, type PresetName } from './clip-architecture.js';
import { LAYOUT_IO, textGraph, visionGraph } from './clip-onnx-graph.js';
import { OPENAI_MEAN, OPENAI_STD, type ModelLayout } from './manifest.js';
import { isMultilingualPreset, type MultilingualArchitecture, type MultilingualPresetName } from './multilingual-architecture.js';
import { buildMultilingualModel } from './multilingual-model-builder.js';
import { isSiglipPreset, type SiglipArchitecture, type SiglipPresetName } from './siglip-architecture.js';
import { buildSiglipModel } from './siglip-model-builder.js';
import { byteLevelVocabulary, readVocabulary, writeTokenizerFiles } from './tokenizer.js';

/** Every preset `models build-tiny` knows: CLIP's, SigLIP's and the multilingual families'. */
export type AnyPresetName = PresetName | SiglipPresetName | MultilingualPresetName;
export const PRESET_NAMES: readonly AnyPresetName[] = [
  'tiny',
  'vit-b-32',
  'siglip-tiny',
  'siglip2-tiny',
  'siglip-b-16',
  'siglip2-b-16-256',
  'xlmr-clip-tiny',
  'xlmr-clip-large-b-16plus',
  'mclip-tiny',
  'nllb-siglip-tiny',
  'nllb-siglip-b-16-384',
];

export interface BuildOptions {
  out: string;
  preset?: AnyPresetName;
  layout?: ModelLayout;
  seed?: number;
  /** A CLIP vocabulary (bpe gz, tokenizer.json, vocab.json or a directory); without it a byte-level one. */
  vocab?: string;
  /** Replace a non-empty output directory. */
  force?: boolean;
}

export interface BuiltModel {
  dir: string;
  arch: ClipArchitecture | SiglipArchitecture | MultilingualArchitecture;
  layout: ModelLayout;
  vocabSize: number;
  files: string[];
}

export const DEFAULT_SEED = 1234;

/**
 * Writes a CLIP-architecture ONNX pair with seeded weights in a real export layout,
 * with the config, preprocessing and tokenizer files a real download has. The same seed writes the same bytes.
 */
export async function buildTinyModel(options: BuildOptions): Promise<BuiltModel> {
  const out = resolve(options.out);
  const preset = options.preset ?? 'tiny';
  const layout = options.layout ?? (isMultilingualPreset(preset) ? 'openclip' : 'hf');
  if (existsSync(out) && (await readdir(out)).length > 0) {
    if (!options.force) throw new ClipdexError('INVALID_ARGUMENT', `${out} is not empty (use --force to replace it)`);
  }
  if (isSiglipPreset(preset)) {
    if (options.vocab) throw new ClipdexError('INVALID_ARGUMENT', `--vocab is a CLIP vocabulary; the ${preset} preset ships its own SentencePiece tokenizer`);
    const built = await buildSiglipModel({ out, preset, layout, seed: options.seed ?? DEFAULT_SEED });
    return { dir: out, layout, ...built };
  }
  if (isMultilingualPreset(preset)) {
    if (options.vocab) throw new ClipdexError('INVALID_ARGUMENT', `--vocab is a CLIP vocabulary; the ${preset} preset ships its own tokenizer`);
    // M-CLIP and NLLB-CLIP exist as ONNX only in Immich's export; there is no transformers.js layout to copy.
    if (layout !== 'openclip') {
      throw new ClipdexError('INVALID_ARGUMENT', `the ${preset} preset exists only in the Immich layout (--layout openclip): its family has no transformers.js export`);
    }
    const built = await buildMultilingualModel({ out, preset, seed: options.seed ?? DEFAULT_SEED });
    return { dir: out, layout, ...built };
  }
  if (preset !== 'tiny' && preset !== 'vit-b-32') {
    throw new ClipdexError('INVALID_ARGUMENT', `unknown preset ${JSON.stringify(preset)} (known: ${PRESET_NAMES.join(', ')})`);
  }
  const { vocab, merges } = options.vocab ? await readVocabulary(options.vocab) : byteLevelVocabulary();
  const vocabSize = Object.keys(vocab).length;
  const arch = presetArchitecture(preset, vocabSize);
  const weights = seededWeights(arch, options.seed ?? DEFAULT_SEED);

  // Built beside the target and renamed, so an interrupted build never leaves a half model that loads.
  const staging = `${out}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  const files: string[] = [];
  const put = async (rel: string, data: Uint8Array | string) => {
    await mkdir(dirname(join(staging, rel)), { recursive: true });
    await writeFile(join(staging, rel), data);
    files.push(rel);
  };
  const io = LAYOUT_IO[layout];
  await put(io.vision.file, visionGraph(weights, layout));
  await put(io.text.file, textGraph(weights, layout));
  const tokenizerDir = layout === 'hf' ? '' : 'textual';
  for (const f of await writeTokenizerFiles(join(staging, tokenizerDir), vocab, merges)) files.push(join(tokenizerDir, f));
  // Real exports carry these too; transformers.js' AutoTokenizer will not load without them.
  await put(join(tokenizerDir, 'tokenizer_config.json'), json(tokenizerConfig(arch)));
  await put(join(tokenizerDir, 'special_tokens_map.json'), json(SPECIAL_TOKENS));
  if (layout === 'hf') {
    await put('config.json', json(hfConfig(weights, preset, options.seed ?? DEFAULT_SEED)));
    await put('preprocessor_config.json', json(hfPreprocessorConfig(arch)));
  } else {
    await put('config.json', json(openClipConfig(weights, preset, options.seed ?? DEFAULT_SEED)));
    await put('visual/preprocess_cfg.json', json(openClipPreprocessConfig(arch)));
  }
  await rm(out, { recursive: true, force: true });
  await mkdir(dirname(out), { recursive: true });
  await rename(staging, out);
  return { dir: out, arch, layout, vocabSize, files: files.sort() };
}

const SPECIAL_TOKENS = {
  bos_token: '<|startoftext|>',
  eos_token: '<|endoftext|>',
  unk_token: '<|endoftext|>',
  pad_token: '<|endoftext|>',
};

function tokenizerConfig(arch: ClipArchitecture) {
  return { tokenizer_class: 'CLIPTokenizer', model_max_length: arch.text.contextLength, do_lower_case: true, ...SPECIAL_TOKENS };
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

function hfConfig(w: ClipWeights, preset: PresetName, seed: number) {
  const { arch } = w;
  return {
    model_type: 'clip',
    architectures: ['CLIPModel'],
    projection_dim: arch.embedDim,
    logit_scale_init_value: arch.logitScaleInit,
    // Not in real exports: the trained exp(logit_scale). Untrained here, so CLIP's initial value.
    logit_scale: Math.exp(arch.logitScaleInit),
    text_config: {
      hidden_size: arch.text.width,
      intermediate_size: 4 * arch.text.width,
      num_hidden_layers: arch.text.layers,
      num_attention_heads: arch.text.heads,
      max_position_embeddings: arch.text.contextLength,
      vocab_size: arch.text.vocabSize,
      hidden_act: 'quick_gelu',
      layer_norm_eps: 1e-5,
    },
    vision_config: {
      hidden_size: arch.vision.width,
      intermediate_size: 4 * arch.vision.width,
      num_hidden_layers: arch.vision.layers,
      num_attention_heads: arch.vision.heads,
      image_size: arch.imageSize,
      patch_size: arch.patchSize,
      hidden_act: 'quick_gelu',
      layer_norm_eps: 1e-5,
    },
    clipdex: { builtBy: 'clipdex models build-tiny', preset, seed, randomWeights: true },
  };
}

function hfPreprocessorConfig(arch: ClipArchitecture) {
  return {
    do_resize: true,
    size: { shortest_edge: arch.imageSize },
    resample: 3,
    do_center_crop: true,
    crop_size: { height: arch.imageSize, width: arch.imageSize },
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: [...OPENAI_MEAN],
    image_std: [...OPENAI_STD],
    do_convert_rgb: true,
    feature_extractor_type: 'CLIPFeatureExtractor',
    image_processor_type: 'CLIPImageProcessor',
  };
}

function openClipConfig(w: ClipWeights, preset: PresetName, seed: number) {
  const { arch } = w;
  return {
    embed_dim: arch.embedDim,
    vision_cfg: { image_size: arch.imageSize, layers: arch.vision.layers, width: arch.vision.width, patch_size: arch.patchSize },
    text_cfg: {
      context_length: arch.text.contextLength,
      vocab_size: arch.text.vocabSize,
      width: arch.text.width,
      heads: arch.text.heads,
      layers: arch.text.layers,
    },
    logit_scale: Math.exp(arch.logitScaleInit),
    clipdex: { builtBy: 'clipdex models build-tiny', preset, seed, randomWeights: true },
  };
}

function openClipPreprocessConfig(arch: ClipArchitecture) {
  return {
    size: [arch.imageSize, arch.imageSize],
    mode: 'RGB',
    mean: [...OPENAI_MEAN],
    std: [...OPENAI_STD],
    interpolation: 'bicubic',
    resize_mode: 'shortest',
    fill_color: 0,
  };
}

/** The weights a build with these options writes, without writing anything (for tests and the trainer's checks). */
export async function builtWeights(options: Pick<BuildOptions, 'seed' | 'vocab'> & { preset?: PresetName }): Promise<ClipWeights> {
  const { vocab } = options.vocab ? await readVocabulary(options.vocab) : byteLevelVocabulary();
  return seededWeights(presetArchitecture(options.preset ?? 'tiny', Object.keys(vocab).length), options.seed ?? DEFAULT_SEED);
}
