// Apart from the builders, which load the ONNX graph writer (protobufjs): `clipdex models build-tiny --help`
// lists the presets, and every CLI start defines that option.
import type { PresetName } from './clip-architecture.js';
import type { MultilingualPresetName } from './multilingual-architecture.js';
import type { SiglipPresetName } from './siglip-architecture.js';

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

export const DEFAULT_SEED = 1234;
