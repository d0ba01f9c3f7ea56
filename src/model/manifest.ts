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

export interface ModelManifest {
  id: string;
  description: string;
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
