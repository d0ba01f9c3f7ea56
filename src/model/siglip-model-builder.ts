/**
 * Writes a SigLIP model with seeded weights in a real export layout, with the files a real download has:
 * `hf` as Xenova/siglip-base-patch16-224 and onnx-community's SigLIP2 exports (onnx/*.onnx, config.json with
 * model_type siglip, preprocessor_config.json, tokenizer.json + tokenizer_config.json + special_tokens_map.json);
 * `openclip` as Immich's ViT-B-16-SigLIP__webli / ViT-B-16-SigLIP2__webli (visual/ and textual/ model.onnx,
 * config.json holding open_clip's model config, visual/preprocess_cfg.json, the tokenizer files in textual/).
 */
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ModelLayout } from './manifest.js';
import { type SiglipArchitecture, type SiglipPresetName, type SiglipWeights, SIGLIP_LN_EPSILON, siglipPresetArchitecture, siglipSeededWeights } from './siglip-architecture.js';
import { SIGLIP_LAYOUT_IO, siglipTextGraph, siglipVisionGraph } from './siglip-onnx-graph.js';
import {
  GEMMA_SPECIAL_TOKENS,
  gemmaTokenizerConfig,
  gemmaTokenizerJson,
  SIGLIP_SPECIAL_TOKENS,
  siglipTokenizerConfig,
  siglipTokenizerJson,
} from './siglip-tokenizer-files.js';

export interface SiglipBuildOptions {
  out: string;
  preset: SiglipPresetName;
  layout: ModelLayout;
  seed: number;
}

/** The tokenizer.json of a preset and its vocabulary size (ids the token embedding needs rows for). */
export function siglipTokenizerFor(preset: SiglipPresetName): { json: Record<string, unknown>; vocabSize: number } {
  const json = siglipPresetArchitecture(preset, 0).tokenizer === 'gemma' ? gemmaTokenizerJson() : siglipTokenizerJson();
  const model = json.model as { vocab: Record<string, number> | [string, number][] };
  const vocabSize = Array.isArray(model.vocab) ? model.vocab.length : Math.max(...Object.values(model.vocab)) + 1;
  return { json, vocabSize };
}

export function siglipBuiltWeights(preset: SiglipPresetName, seed: number): SiglipWeights {
  return siglipSeededWeights(siglipPresetArchitecture(preset, siglipTokenizerFor(preset).vocabSize), seed);
}

export async function buildSiglipModel(options: SiglipBuildOptions): Promise<{ arch: SiglipArchitecture; vocabSize: number; files: string[] }> {
  const { out, preset, layout, seed } = options;
  const { json: tokenizerJson, vocabSize } = siglipTokenizerFor(preset);
  const weights = siglipSeededWeights(siglipPresetArchitecture(preset, vocabSize), seed);
  const { arch } = weights;
  const staging = `${out}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  const files: string[] = [];
  const put = async (rel: string, data: Uint8Array | string) => {
    await mkdir(dirname(join(staging, rel)), { recursive: true });
    await writeFile(join(staging, rel), data);
    files.push(rel);
  };
  const io = SIGLIP_LAYOUT_IO[layout];
  await put(io.vision.file, siglipVisionGraph(weights, layout));
  await put(io.text.file, siglipTextGraph(weights, layout));
  const tokDir = layout === 'hf' ? '' : 'textual';
  const gemma = arch.tokenizer === 'gemma';
  await put(join(tokDir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
  await put(join(tokDir, 'tokenizer_config.json'), json(gemma ? gemmaTokenizerConfig(arch.text.contextLength) : siglipTokenizerConfig(arch.text.contextLength)));
  await put(join(tokDir, 'special_tokens_map.json'), json(gemma ? GEMMA_SPECIAL_TOKENS : SIGLIP_SPECIAL_TOKENS));
  const built = { builtBy: 'clipdex models build-tiny', preset, seed, randomWeights: true };
  if (layout === 'hf') {
    await put('config.json', json(hfConfig(arch, built)));
    await put('preprocessor_config.json', json(hfPreprocessorConfig(arch)));
  } else {
    await put('config.json', json(openClipConfig(arch, preset, built)));
    await put('visual/preprocess_cfg.json', json(openClipPreprocessConfig(arch)));
  }
  await rm(out, { recursive: true, force: true });
  await mkdir(dirname(out), { recursive: true });
  await rename(staging, out);
  return { arch, vocabSize, files: files.sort() };
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

function hfConfig(arch: SiglipArchitecture, built: Record<string, unknown>) {
  return {
    model_type: 'siglip',
    architectures: ['SiglipModel'],
    initializer_factor: 1.0,
    text_config: {
      model_type: 'siglip_text_model',
      hidden_size: arch.text.width,
      intermediate_size: 4 * arch.text.width,
      num_hidden_layers: arch.text.layers,
      num_attention_heads: arch.text.heads,
      max_position_embeddings: arch.text.contextLength,
      vocab_size: arch.text.vocabSize,
      projection_size: arch.embedDim,
      hidden_act: 'gelu_pytorch_tanh',
      layer_norm_eps: SIGLIP_LN_EPSILON,
      pad_token_id: arch.tokenizer === 'gemma' ? 0 : 1,
      eos_token_id: 1,
    },
    vision_config: {
      model_type: 'siglip_vision_model',
      hidden_size: arch.vision.width,
      intermediate_size: 4 * arch.vision.width,
      num_hidden_layers: arch.vision.layers,
      num_attention_heads: arch.vision.heads,
      image_size: arch.imageSize,
      patch_size: arch.patchSize,
      hidden_act: 'gelu_pytorch_tanh',
      layer_norm_eps: SIGLIP_LN_EPSILON,
    },
    // Not in real exports (the trained values live only in the full model's weights): exp(logit_scale) and
    // logit_bias, untrained here, so SigLIP's initial 10 and -10.
    logit_scale: Math.exp(arch.logitScaleInit),
    logit_bias: arch.logitBiasInit,
    clipdex: built,
  };
}

/** SiglipImageProcessor: squash to size × size (no crop), bicubic, /255, mean and std 0.5. */
function hfPreprocessorConfig(arch: SiglipArchitecture) {
  return {
    do_convert_rgb: null,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.5, 0.5, 0.5],
    image_processor_type: 'SiglipImageProcessor',
    image_std: [0.5, 0.5, 0.5],
    processor_class: 'SiglipProcessor',
    resample: 3,
    rescale_factor: 1 / 255,
    size: { height: arch.imageSize, width: arch.imageSize },
  };
}

/** open_clip's model config as Immich ships it in config.json (timm image tower, HF tokenizer, last-token pooling). */
function openClipConfig(arch: SiglipArchitecture, preset: SiglipPresetName, built: Record<string, unknown>) {
  const gemma = arch.tokenizer === 'gemma';
  return {
    embed_dim: arch.embedDim,
    init_logit_bias: arch.logitBiasInit,
    custom_text: true,
    vision_cfg: {
      image_size: arch.imageSize,
      timm_model_name: gemma ? `vit_base_patch16_siglip_${arch.imageSize}.v2_webli` : `vit_base_patch16_siglip_${arch.imageSize}`,
      timm_model_pretrained: false,
      timm_pool: 'map',
      timm_proj: 'none',
      width: arch.vision.width,
      layers: arch.vision.layers,
      patch_size: arch.patchSize,
    },
    text_cfg: {
      context_length: arch.text.contextLength,
      vocab_size: arch.text.vocabSize,
      hf_tokenizer_name: gemma ? 'timm/ViT-B-16-SigLIP2' : 'timm/ViT-B-16-SigLIP',
      tokenizer_kwargs: { clean: 'canonicalize' },
      width: arch.text.width,
      heads: arch.text.heads,
      layers: arch.text.layers,
      no_causal_mask: true,
      proj_bias: true,
      pool_type: 'last',
      norm_kwargs: { eps: SIGLIP_LN_EPSILON },
      act_kwargs: { approximate: 'tanh' },
    },
    // clipdex's: the trained exp(logit_scale) and logit_bias (untrained here: SigLIP's initial values).
    logit_scale: Math.exp(arch.logitScaleInit),
    logit_bias: arch.logitBiasInit,
    clipdex: { ...built, preset },
  };
}

function openClipPreprocessConfig(arch: SiglipArchitecture) {
  return {
    size: [arch.imageSize, arch.imageSize],
    mode: 'RGB',
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    interpolation: 'bicubic',
    resize_mode: 'squash',
    fill_color: 0,
  };
}
