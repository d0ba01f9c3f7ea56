/**
 * Writes a multilingual model with seeded weights in Immich's export layout, the only ONNX layout these
 * families have (no transformers.js export of M-CLIP or NLLB-CLIP exists):
 * - M-CLIP (`xlmr-clip-tiny`, `mclip-tiny`) as immich-app/XLM-Roberta-Large-Vit-B-16Plus and LABSE-Vit-L-14:
 *   config.json is the image tower's open_clip config (ViT-B-16-plus-240 / ViT-L-14, as Immich's exporter
 *   saves it), visual/model.onnx + preprocess_cfg.json, textual/model.onnx (input_ids + attention_mask) and
 *   the text encoder's own tokenizer files saved by transformers' AutoTokenizer;
 * - NLLB-CLIP (`nllb-siglip-tiny`) as immich-app/nllb-clip-base-siglip__v1: config.json is open_clip's
 *   nllb-clip-base-siglip config, textual/model.onnx takes `text`, textual/ holds NLLB-200's tokenizer files.
 */
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { visionGraph } from './clip-onnx-graph.js';
import { OPENAI_MEAN, OPENAI_STD } from './manifest.js';
import {
  type MultilingualArchitecture,
  type MultilingualPresetName,
  type MultilingualWeights,
  multilingualPresetArchitecture,
  multilingualSeededWeights,
  multilingualTextWeights,
  multilingualVisionWeights,
} from './multilingual-architecture.js';
import { MULTILINGUAL_TEXT_IO, multilingualTextGraph } from './multilingual-onnx-graph.js';
import {
  LABSE_SPECIAL_TOKENS,
  labseTokenizerConfig,
  labseTokenizerJson,
  NLLB_SPECIAL_TOKENS,
  nllbTokenizerConfig,
  nllbTokenizerJson,
  tokenizerVocabSize,
  XLMR_SPECIAL_TOKENS,
  xlmrTokenizerConfig,
  xlmrTokenizerJson,
} from './multilingual-tokenizer-files.js';
import { siglipVisionGraph } from './siglip-onnx-graph.js';

export interface MultilingualBuildOptions {
  out: string;
  preset: MultilingualPresetName;
  seed: number;
}

interface TokenizerFiles {
  json: Record<string, unknown>;
  config: Record<string, unknown>;
  specialTokens: Record<string, unknown>;
  padToken: string;
}

/** The tokenizer files of a preset, and its pad token. */
export function multilingualTokenizerFor(preset: MultilingualPresetName): TokenizerFiles {
  switch (preset) {
    case 'xlmr-clip-tiny':
    case 'xlmr-clip-large-b-16plus':
      return { json: xlmrTokenizerJson(), config: xlmrTokenizerConfig(), specialTokens: XLMR_SPECIAL_TOKENS, padToken: '<pad>' };
    case 'mclip-tiny':
      return { json: labseTokenizerJson(), config: labseTokenizerConfig(), specialTokens: LABSE_SPECIAL_TOKENS, padToken: '[PAD]' };
    case 'nllb-siglip-tiny':
    case 'nllb-siglip-b-16-384':
      return { json: nllbTokenizerJson(), config: nllbTokenizerConfig(), specialTokens: NLLB_SPECIAL_TOKENS, padToken: '<pad>' };
  }
}

function padIdOf(files: TokenizerFiles): number {
  const token = (files.json.added_tokens as { id: number; content: string }[]).find((t) => t.content === files.padToken);
  if (!token) throw new Error(`the ${files.padToken} token is missing from the tokenizer`);
  return token.id;
}

/** The architecture a preset is built with (its vocabulary and pad id come from its tokenizer). */
export function multilingualArchitectureFor(preset: MultilingualPresetName): MultilingualArchitecture {
  const files = multilingualTokenizerFor(preset);
  return multilingualPresetArchitecture(preset, tokenizerVocabSize(files.json), padIdOf(files));
}

/** The weights a build with this preset and seed writes, without writing anything (for the tests). */
export function multilingualBuiltWeights(preset: MultilingualPresetName, seed: number): MultilingualWeights {
  return multilingualSeededWeights(multilingualArchitectureFor(preset), seed);
}

export async function buildMultilingualModel(options: MultilingualBuildOptions): Promise<{ arch: MultilingualArchitecture; vocabSize: number; files: string[] }> {
  const { out, preset, seed } = options;
  const tokenizer = multilingualTokenizerFor(preset);
  // One tower's weights at a time (the same bytes as multilingualBuiltWeights'): XLM-R Large's text tower alone
  // is 1.2 GB, and with the image tower's beside it and the serialised graph the build passed 3 GB.
  const arch = multilingualArchitectureFor(preset);
  const staging = `${out}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  const files: string[] = [];
  const put = async (rel: string, data: Uint8Array | string) => {
    await mkdir(dirname(join(staging, rel)), { recursive: true });
    await writeFile(join(staging, rel), data);
    files.push(rel);
  };
  await put('visual/model.onnx', visionBytes(arch, seed));
  await put(MULTILINGUAL_TEXT_IO.mclip.file, multilingualTextGraph({ arch, text: multilingualTextWeights(arch, seed) }));
  await put('textual/tokenizer.json', JSON.stringify(tokenizer.json));
  await put('textual/tokenizer_config.json', json(tokenizer.config));
  await put('textual/special_tokens_map.json', json(tokenizer.specialTokens));
  const built = { builtBy: 'clipdex models build-tiny', preset, seed, randomWeights: true };
  await put('config.json', json(openClipConfig(arch, built)));
  await put('visual/preprocess_cfg.json', json(preprocessConfig(arch)));
  await rm(out, { recursive: true, force: true });
  await mkdir(dirname(out), { recursive: true });
  await rename(staging, out);
  return { arch, vocabSize: arch.text.vocabSize, files: files.sort() };
}

/** A function of its own so that the weights are garbage once the graph is written (an async frame keeps its locals). */
function visionBytes(arch: MultilingualArchitecture, seed: number): Uint8Array {
  const vision = multilingualVisionWeights(arch, seed);
  return vision.kind === 'clip' ? visionGraph(vision.weights, 'openclip') : siglipVisionGraph(vision.weights, 'openclip');
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/**
 * config.json as Immich ships it. M-CLIP: the image tower's open_clip config, whose text_cfg describes CLIP's
 * text tower (unused: M-CLIP replaces it) and names no tokenizer. NLLB-CLIP: open_clip's own config.
 */
function openClipConfig(arch: MultilingualArchitecture, built: Record<string, unknown>) {
  if (arch.vision.kind === 'siglip') {
    const v = arch.vision.arch;
    return {
      embed_dim: arch.embedDim,
      custom_text: true,
      init_logit_bias: v.logitBiasInit,
      vision_cfg: {
        image_size: v.imageSize,
        timm_model_name: `vit_base_patch16_siglip_${v.imageSize}`,
        timm_model_pretrained: false,
        timm_pool: 'map',
        timm_proj: 'none',
        width: v.vision.width,
        layers: v.vision.layers,
        patch_size: v.patchSize,
      },
      text_cfg: {
        hf_model_name: 'facebook/nllb-200-distilled-600M',
        hf_tokenizer_name: 'facebook/nllb-200-distilled-600M',
        hf_proj_type: 'linear',
        hf_pooler_type: 'cls_pooler',
        width: arch.text.width,
        layers: arch.text.layers,
        heads: arch.text.heads,
      },
      // clipdex's: the trained exp(logit_scale) and logit_bias (untrained here: SigLIP's initial values).
      logit_scale: Math.exp(v.logitScaleInit),
      logit_bias: v.logitBiasInit,
      clipdex: built,
    };
  }
  const v = arch.vision.arch;
  return {
    embed_dim: arch.embedDim,
    vision_cfg: { image_size: v.imageSize, layers: v.vision.layers, width: v.vision.width, patch_size: v.patchSize },
    text_cfg: { context_length: arch.text.contextLength, vocab_size: 49408, width: 512, heads: 8, layers: 12 },
    logit_scale: Math.exp(v.logitScaleInit),
    clipdex: { ...built, textEncoder: { kind: arch.text.kind, width: arch.text.width, layers: arch.text.layers, heads: arch.text.heads } },
  };
}

function preprocessConfig(arch: MultilingualArchitecture) {
  const siglip = arch.vision.kind === 'siglip';
  const size = arch.vision.arch.imageSize;
  return {
    size: [size, size],
    mode: 'RGB',
    mean: siglip ? [0.5, 0.5, 0.5] : [...OPENAI_MEAN],
    std: siglip ? [0.5, 0.5, 0.5] : [...OPENAI_STD],
    interpolation: 'bicubic',
    resize_mode: siglip ? 'squash' : 'shortest',
    fill_color: 0,
  };
}
