/**
 * Models are data: one manifest per supported model says where its files come from,
 * which export layout they follow and how to feed its two towers.
 */

/** `hf`: Hugging Face / transformers.js split export (onnx/vision_model.onnx, onnx/text_model.onnx).
 *  `openclip`: Immich / OpenCLIP export (visual/model.onnx, textual/model.onnx). */
export type ModelLayout = 'hf' | 'openclip';

/** `shortest`: resize the shortest side to `size`, then centre-crop. `squash`: resize both sides to `size`. */
export type ResizeMode = 'shortest' | 'squash';
export type Interpolation = 'bicubic' | 'bilinear' | 'nearest';

export interface PreprocessConfig {
  /** Side of the square input, e.g. 224. */
  size: number;
  resizeMode: ResizeMode;
  interpolation: Interpolation;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

export interface RemoteFile {
  /** Path inside the hub repository, '/'-separated. */
  path: string;
  sha256?: string;
  size?: number;
}

export interface ModelSource {
  /** Hub repository, e.g. `Xenova/clip-vit-base-patch32`. */
  repo: string;
  revision: string;
  files: RemoteFile[];
}

export interface TowerSpec {
  /** ONNX file, relative to the model directory. */
  file: string;
  /** Preferred input name; the graph's declared names win when they differ. */
  input: string;
  output: string;
  /** True when the graph already L2-normalises its output (OpenCLIP export). */
  normalized: boolean;
}

/**
 * The families of Immich's model zoo: OpenAI/OpenCLIP CLIP, SigLIP, SigLIP2, open_clip's XLM-RoBERTa CLIP
 * (laion), M-CLIP (an XLM-R or LaBSE text encoder distilled onto a CLIP image tower) and NLLB-CLIP (NLLB-200's
 * encoder with SigLIP's image tower; the text carries a FLORES-200 language code).
 */
export type ModelFamily = 'clip' | 'siglip' | 'siglip2' | 'xlm-roberta-clip' | 'm-clip' | 'nllb-clip';
export const MODEL_FAMILIES: readonly ModelFamily[] = ['clip', 'siglip', 'siglip2', 'xlm-roberta-clip', 'm-clip', 'nllb-clip'];

/**
 * Immich's Crossmodal-3600 figure for a model: zero-shot image retrieval, the mean of recall@1, @5 and @10, in
 * percent, per language (English names as Immich's table heads them), and where it was read.
 */
export interface Crossmodal3600 {
  recall: Readonly<Record<string, number>>;
  source: string;
}

export interface ModelManifest {
  id: string;
  description: string;
  /** Which family it is; absent in older manifests (then `clip`). */
  family?: ModelFamily;
  /**
   * The languages its text tower was trained for: `["en"]`, or `"multilingual"` with a note of how many
   * (ISO 639-1 codes where the list is short).
   */
  languages?: readonly string[];
  /** Immich's published figure; absent where its table has no row for the model. */
  crossmodal3600?: Crossmodal3600;
  /** Where the manifest's other facts (files, dimension, context, calibration) come from, and what is unverified. */
  notes?: string;
  /** False for entries listed for visibility whose tokenizer or preprocessing is not implemented yet. */
  supported: boolean;
  unsupportedReason?: string;
  layout: ModelLayout;
  source?: ModelSource;
  embeddingDim: number;
  contextLength: number;
  /** exp(logit_scale) of the trained model; 100 for OpenAI CLIP. */
  logitScale: number;
  /**
   * The trained logit_bias of a sigmoid-loss model (SigLIP, SigLIP2): with `logitScale` it makes
   * sigmoid(scale · cos + bias) a calibrated probability. Absent for softmax (CLIP) models. Exports
   * don't carry the trained value in the tower files, so the manifest does.
   */
  logitBias?: number;
  preprocess: PreprocessConfig;
  vision: TowerSpec;
  text: TowerSpec;
}

/** What turns a cosine into a calibrated probability: sigmoid(logitScale · cos + logitBias). */
export interface ScoreCalibration {
  /** exp(logit_scale) of the trained model. */
  logitScale: number;
  logitBias: number;
}

/** The probability a sigmoid-loss model gives that a text matches an image, from their cosine. */
export function calibratedProbability(cosine: number, calibration: ScoreCalibration): number {
  return 1 / (1 + Math.exp(-(calibration.logitScale * cosine + calibration.logitBias)));
}

export const OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const OPENAI_STD = [0.26862954, 0.26130258, 0.27577711] as const;
