import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ClipdexError, errorMessage } from '../errors.js';
import { LAYOUT_IO } from './clip-onnx-graph.js';
import {
  OPENAI_MEAN,
  OPENAI_STD,
  type Interpolation,
  type ModelFamily,
  type ModelLayout,
  type ModelManifest,
  type PreprocessConfig,
  type ScoreCalibration,
  type TowerSpec,
} from './manifest.js';
import { SIGLIP_LAYOUT_IO } from './siglip-onnx-graph.js';
import type { TextCleaning } from './text-clean.js';

/**
 * `clip`: OpenAI's BPE (tokenizer.ts) from whichever vocabulary file the directory has.
 * `hf`: the directory's tokenizer.json run by Hugging Face's library (hf-tokenizer.ts), after `cleaning`.
 */
export type TokenizerSpec =
  | { kind: 'clip' }
  | {
      kind: 'hf';
      cleaning: TextCleaning;
      /** NLLB-CLIP: a FLORES-200 language code token before the text (nllb-tokenizer.ts). */
      languageCodes?: 'flores-200';
    };

/** Everything needed to open a model that lies in a directory, read from the files themselves. */
export interface ModelSpec {
  /** Manifest id, or `dir:<absolute path>` for a directory given directly. */
  id: string;
  dir: string;
  layout: ModelLayout;
  vision: TowerSpec;
  text: TowerSpec;
  preprocess: PreprocessConfig;
  contextLength: number;
  /** From config.json when present; the encoders confirm it from the graph. */
  embeddingDim: number | null;
  logitScale: number;
  /** A directory or file that `ClipTokenizer.fromFile` accepts; for `hf` tokenizers, the folder of tokenizer.json. */
  tokenizerPath: string;
  tokenizer: TokenizerSpec;
  /** Sigmoid-loss models (SigLIP): how a cosine becomes a calibrated probability. null for CLIP. */
  scoreCalibration: ScoreCalibration | null;
  /** Which family of Immich's zoo the folder is, as far as its files tell. */
  family?: ModelFamily;
  /** Set for a folder written by `models quantize` (its QUANTIZATION_FILE): int8 weights, and what they came from. */
  quantization?: ModelQuantization;
}

/** The file `models quantize` writes beside the towers; its presence is what makes a folder int8 to clipdex. */
export const QUANTIZATION_FILE = 'clipdex-quantization.json';

export interface ModelQuantization {
  precision: 'int8';
  /** The ONNX formulation of the int8 MatMuls (quantize-graph.ts `QuantFormat`). */
  formulation: string;
  /** The fp32 model's key (library/model-key.ts) and the reference it was given by. */
  sourceKey: string;
  sourceRef: string;
}

/** Preferred file variants when a directory holds several (transformers.js ships fp32, fp16 and quantized). */
const HF_VARIANTS = ['', '_fp16', '_quantized'];

/**
 * Reads a model directory in either export layout. Values in the directory's own config files
 * win over the manifest's, because they describe the weights actually there.
 */
export async function readModelDir(dirArg: string, manifest?: ModelManifest): Promise<ModelSpec> {
  const dir = resolve(dirArg);
  if (!existsSync(dir)) throw new ClipdexError('MODEL_NOT_FOUND', `model directory not found: ${dir}`);
  const layout = detectLayout(dir, manifest);
  const spec = layout === 'hf' ? await readHfDir(dir, manifest) : await readOpenClipDir(dir, manifest);
  const quantization = await readQuantization(dir);
  return quantization ? { ...spec, quantization } : spec;
}

async function readQuantization(dir: string): Promise<ModelQuantization | null> {
  const file = join(dir, QUANTIZATION_FILE);
  const q = await readJson(file, false);
  if (!q) return null;
  if (q.precision !== 'int8' || typeof q.formulation !== 'string' || typeof q.sourceKey !== 'string' || typeof q.sourceRef !== 'string') {
    throw new ClipdexError('MODEL_INVALID', `${file}: expected precision "int8", formulation, sourceKey and sourceRef`);
  }
  return { precision: 'int8', formulation: q.formulation, sourceKey: q.sourceKey, sourceRef: q.sourceRef };
}

/** The export layout of the files in `dir`; a manifest whose tower files are there decides for them. */
export function detectLayout(dir: string, manifest?: ModelManifest): ModelLayout {
  if (manifest && existsSync(join(dir, manifest.vision.file)) && existsSync(join(dir, manifest.text.file))) {
    return manifest.layout;
  }
  if (hfVariant(dir, 'vision_model') && hfVariant(dir, 'text_model')) return 'hf';
  if (existsSync(join(dir, LAYOUT_IO.openclip.vision.file)) && existsSync(join(dir, LAYOUT_IO.openclip.text.file))) {
    return 'openclip';
  }
  throw new ClipdexError(
    'MODEL_INVALID',
    `${dir} is not a CLIP model directory: expected onnx/vision_model.onnx + onnx/text_model.onnx (Hugging Face export) ` +
      `or visual/model.onnx + textual/model.onnx (OpenCLIP/Immich export)`,
  );
}

function hfVariant(dir: string, tower: 'vision_model' | 'text_model'): string | null {
  for (const suffix of HF_VARIANTS) {
    const file = `onnx/${tower}${suffix}.onnx`;
    if (existsSync(join(dir, file))) return file;
  }
  return null;
}

async function readJson(path: string, required: boolean): Promise<Record<string, unknown> | null> {
  if (!existsSync(path)) {
    if (required) throw new ClipdexError('MODEL_INVALID', `missing ${path}`);
    return null;
  }
  try {
    const value: unknown = JSON.parse(await readFile(path, 'utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw new ClipdexError('MODEL_INVALID', `cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function obj(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function triple(value: unknown, fallback: readonly [number, number, number], what: string): readonly [number, number, number] {
  if (value === undefined) return fallback;
  if (Array.isArray(value) && value.length === 3 && value.every((v) => typeof v === 'number')) {
    return [value[0] as number, value[1] as number, value[2] as number] as const;
  }
  if (typeof value === 'number') return [value, value, value] as const;
  throw new ClipdexError('MODEL_INVALID', `${what} must be three numbers, got ${JSON.stringify(value)}`);
}

/** PIL resample codes as transformers writes them in preprocessor_config.json. */
function pilResample(code: unknown, file: string): Interpolation {
  switch (code) {
    case undefined:
    case 3:
      return 'bicubic';
    case 2:
      return 'bilinear';
    case 0:
      return 'nearest';
    default:
      throw new ClipdexError('MODEL_UNSUPPORTED', `${file}: resample ${JSON.stringify(code)} is not supported (bicubic, bilinear, nearest are)`);
  }
}

async function readHfDir(dir: string, manifest?: ModelManifest): Promise<ModelSpec> {
  const config = obj(await readJson(join(dir, 'config.json'), false));
  const prepFile = join(dir, 'preprocessor_config.json');
  const prep = await readJson(prepFile, !manifest);
  const textConfig = obj(config.text_config);

  let preprocess: PreprocessConfig;
  if (prep) {
    const sizeField = prep.size;
    const shortest = num(obj(sizeField).shortest_edge) ?? num(sizeField);
    const squashSize = num(obj(sizeField).height);
    const crop = num(obj(prep.crop_size).height) ?? num(prep.crop_size) ?? shortest ?? squashSize;
    // CLIPImageProcessor crops unless told not to; SiglipImageProcessor has no crop (its config no crop_size).
    const centreCrop = typeof prep.do_center_crop === 'boolean' ? prep.do_center_crop : prep.crop_size !== undefined;
    const size = centreCrop ? crop : (squashSize ?? shortest);
    if (size === undefined) throw new ClipdexError('MODEL_INVALID', `${prepFile}: no image size (size.shortest_edge or crop_size)`);
    if (centreCrop && shortest !== undefined && shortest !== size) {
      throw new ClipdexError('MODEL_UNSUPPORTED', `${prepFile}: resize to ${shortest} then crop to ${size} is not supported; only crop = resize size`);
    }
    preprocess = {
      size,
      resizeMode: centreCrop ? 'shortest' : 'squash',
      interpolation: pilResample(prep.resample, prepFile),
      mean: triple(prep.image_mean, OPENAI_MEAN, `${prepFile} image_mean`),
      std: triple(prep.image_std, OPENAI_STD, `${prepFile} image_std`),
    };
  } else {
    preprocess = manifest!.preprocess;
  }

  const visionFile = manifest?.layout === 'hf' && existsSync(join(dir, manifest.vision.file)) ? manifest.vision.file : hfVariant(dir, 'vision_model');
  const textFile = manifest?.layout === 'hf' && existsSync(join(dir, manifest.text.file)) ? manifest.text.file : hfVariant(dir, 'text_model');
  const siglip = config.model_type === 'siglip';
  const io = siglip ? SIGLIP_LAYOUT_IO.hf : LAYOUT_IO.hf;
  const tokenizerConfig = obj(await readJson(join(dir, 'tokenizer_config.json'), false));
  return {
    id: manifest?.id ?? `dir:${dir}`,
    dir,
    layout: 'hf',
    vision: { file: visionFile!, input: io.vision.input, output: io.vision.output, normalized: false },
    text: { file: textFile!, input: io.text.input, output: io.text.output, normalized: false },
    preprocess,
    contextLength: num(textConfig.max_position_embeddings) ?? manifest?.contextLength ?? 77,
    embeddingDim: siglip
      ? (num(textConfig.projection_size) ?? num(textConfig.hidden_size) ?? manifest?.embeddingDim ?? null)
      : (num(config.projection_dim) ?? manifest?.embeddingDim ?? null),
    logitScale: logitScale(config, manifest),
    tokenizerPath: dir,
    // transformers' SiglipTokenizer canonicalises every text (punctuation out, whitespace collapsed, lower-cased
    // with do_lower_case) before SentencePiece; a tokenizer.json converted from it is fed the same. Other
    // tokenizer.json files (SigLIP2's Gemma) get the text as typed, as transformers.js gives it.
    tokenizer: siglip ? { kind: 'hf', cleaning: tokenizerConfig.tokenizer_class === 'SiglipTokenizer' ? 'canonicalize' : 'none' } : { kind: 'clip' },
    scoreCalibration: siglip ? calibration(config, manifest) : null,
    family: siglip ? (tokenizerConfig.tokenizer_class === 'GemmaTokenizer' ? 'siglip2' : 'siglip') : 'clip',
  };
}

async function readOpenClipDir(dir: string, manifest?: ModelManifest): Promise<ModelSpec> {
  const config = obj(await readJson(join(dir, 'config.json'), false));
  const cfgFile = join(dir, 'visual', 'preprocess_cfg.json');
  const cfg = await readJson(cfgFile, !manifest);
  let preprocess: PreprocessConfig;
  if (cfg) {
    const sizeField = cfg.size;
    const size = Array.isArray(sizeField) ? num(sizeField[0]) : num(sizeField);
    if (size === undefined) throw new ClipdexError('MODEL_INVALID', `${cfgFile}: no size`);
    if (Array.isArray(sizeField) && sizeField[0] !== sizeField[1]) {
      throw new ClipdexError('MODEL_UNSUPPORTED', `${cfgFile}: non-square input ${JSON.stringify(sizeField)} is not supported`);
    }
    const resizeMode = cfg.resize_mode ?? 'shortest';
    if (resizeMode !== 'shortest' && resizeMode !== 'squash') {
      throw new ClipdexError('MODEL_UNSUPPORTED', `${cfgFile}: resize_mode ${JSON.stringify(resizeMode)} is not supported (shortest, squash are)`);
    }
    const interpolation = cfg.interpolation ?? 'bicubic';
    if (interpolation !== 'bicubic' && interpolation !== 'bilinear' && interpolation !== 'nearest') {
      throw new ClipdexError('MODEL_UNSUPPORTED', `${cfgFile}: interpolation ${JSON.stringify(interpolation)} is not supported`);
    }
    preprocess = {
      size,
      resizeMode,
      interpolation,
      mean: triple(cfg.mean, OPENAI_MEAN, `${cfgFile} mean`),
      std: triple(cfg.std, OPENAI_STD, `${cfgFile} std`),
    };
  } else {
    preprocess = manifest!.preprocess;
  }
  const io = LAYOUT_IO.openclip;
  const textCfg = obj(config.text_cfg);
  // open_clip runs a Hugging Face tokenizer exactly when the config names one; its `clean` defaults to whitespace.
  const clean = obj(textCfg.tokenizer_kwargs).clean;
  const cleaning: TextCleaning = clean === 'canonicalize' || clean === 'lower' || clean === 'none' ? clean : 'whitespace';
  const text = await multilingualText(dir, textCfg, cleaning);
  // A sigmoid head (SigLIP): open_clip's config sets its initial bias; a CLIP config has none.
  const sigmoid = config.init_logit_bias !== undefined || config.logit_bias !== undefined || manifest?.logitBias !== undefined;
  return {
    id: manifest?.id ?? `dir:${dir}`,
    dir,
    layout: 'openclip',
    vision: { file: io.vision.file, input: io.vision.input, output: io.vision.output, normalized: true },
    text: { file: io.text.file, input: text?.input ?? io.text.input, output: io.text.output, normalized: true },
    preprocess,
    contextLength: num(textCfg.context_length) ?? manifest?.contextLength ?? 77,
    embeddingDim: num(config.embed_dim) ?? manifest?.embeddingDim ?? null,
    logitScale: logitScale(config, manifest),
    tokenizerPath: join(dir, 'textual'),
    tokenizer: text?.tokenizer ?? (typeof textCfg.hf_tokenizer_name === 'string' ? { kind: 'hf', cleaning } : { kind: 'clip' }),
    scoreCalibration: sigmoid ? calibration(config, manifest) : null,
    family: text?.family ?? openClipFamily(textCfg),
  };
}

function openClipFamily(textCfg: Record<string, unknown>): ModelFamily {
  const name = typeof textCfg.hf_tokenizer_name === 'string' ? textCfg.hf_tokenizer_name : '';
  if (/siglip2/i.test(name)) return 'siglip2';
  if (/siglip/i.test(name)) return 'siglip';
  return 'clip';
}

/**
 * The multilingual text towers of Immich's zoo, told apart by their files:
 * - NLLB-CLIP: open_clip's config names NLLB-200's tokenizer (or textual/tokenizer_config.json is NLLB's);
 *   input `text`, a FLORES-200 language code before the text.
 * - open_clip's XLM-RoBERTa CLIP (laion's XLM-Roberta-*-ViT-*): the config names an XLM-R tokenizer; input
 *   `text`, the mask computed inside the graph.
 * - M-CLIP (XLM-Roberta-Large-Vit-B-16Plus, LABSE-Vit-L-14…): Immich ships the image tower's open_clip config,
 *   whose text_cfg is CLIP's and names no tokenizer, while textual/ holds M-CLIP's own XLM-R or BERT tokenizer
 *   (tokenizer_config.json not CLIPTokenizer); inputs `input_ids` + `attention_mask`, text as typed (M-CLIP's
 *   own code tokenises the raw text).
 * null for every other folder.
 */
async function multilingualText(
  dir: string,
  textCfg: Record<string, unknown>,
  cleaning: TextCleaning,
): Promise<{ family: ModelFamily; input?: string; tokenizer: TokenizerSpec } | null> {
  const named = [textCfg.hf_tokenizer_name, textCfg.hf_model_name].filter((v): v is string => typeof v === 'string').join(' ');
  const tokenizerConfig = obj(await readJson(join(dir, 'textual', 'tokenizer_config.json'), false));
  const tokenizerClass = typeof tokenizerConfig.tokenizer_class === 'string' ? tokenizerConfig.tokenizer_class : '';
  if (/nllb/i.test(named) || /^Nllb/.test(tokenizerClass)) {
    return { family: 'nllb-clip', tokenizer: { kind: 'hf', cleaning, languageCodes: 'flores-200' } };
  }
  if (/xlm-roberta/i.test(named)) return { family: 'xlm-roberta-clip', tokenizer: { kind: 'hf', cleaning } };
  if (named === '' && tokenizerClass !== '' && !/^CLIPTokenizer/.test(tokenizerClass) && existsSync(join(dir, 'textual', 'tokenizer.json'))) {
    return { family: 'm-clip', input: 'input_ids', tokenizer: { kind: 'hf', cleaning: 'none' } };
  }
  return null;
}

/**
 * The trained logit scale and bias of a sigmoid-loss model, when they are known: a clipdex-written
 * `logit_scale`/`logit_bias` in config.json (the models it builds or exports), else the manifest's. Exports
 * don't carry them (they live in the full model's weights), and open_clip's `init_logit_bias` is the value
 * before training: calibrating with it (sigmoid(10·cos − 10)) would call every photo a non-match, so then
 * there is no calibration and the cut-off stays relative.
 */
function calibration(config: Record<string, unknown>, manifest: ModelManifest | undefined): ScoreCalibration | null {
  const bias = num(config.logit_bias) ?? manifest?.logitBias;
  const scale = num(config.logit_scale) ?? manifest?.logitScale;
  return bias === undefined || scale === undefined ? null : { logitScale: scale, logitBias: bias };
}

/**
 * exp(logit_scale) of the trained model. Exports don't carry it (config.json's logit_scale_init_value is
 * the value before training), so a clipdex-written `logit_scale` wins, then the manifest, then CLIP's 100.
 */
function logitScale(config: Record<string, unknown>, manifest?: ModelManifest): number {
  return num(config.logit_scale) ?? manifest?.logitScale ?? 100;
}
