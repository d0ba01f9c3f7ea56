/**
 * The real-shape presets `npm run bench:families` measures: their architecture numbers are the published
 * configs' (quoted in the presets' comments), so the benchmark's speed is the real model's. Building them
 * takes minutes and gigabytes, so this checks the architecture objects; bench:families builds and loads them.
 */
import { describe, expect, it } from 'vitest';
import { multilingualArchitectureFor } from '../src/model/multilingual-model-builder.js';
import { siglipPresetArchitecture } from '../src/model/siglip-architecture.js';
import { siglipTokenizerFor } from '../src/model/siglip-model-builder.js';
import { PRESET_NAMES } from '../src/model/tiny-model-builder.js';

/** Parameters of BERT-style encoder layers (4 projections with bias, MLP 4×, two LayerNorms), from the shapes. */
function encoderLayerParams(width: number, layers: number): number {
  return layers * (4 * (width * width + width) + 2 * (width * 4 * width) + 4 * width + width + 4 * width);
}

describe('real-shape family presets', () => {
  it('are presets `models build-tiny` offers', () => {
    expect(PRESET_NAMES).toEqual(expect.arrayContaining(['siglip2-b-16-256', 'xlmr-clip-large-b-16plus', 'nllb-siglip-b-16-384']));
  });

  it('siglip2-b-16-256 has google/siglip2-base-patch16-256 shapes, with the tiny Gemma tokenizer', () => {
    const arch = siglipPresetArchitecture('siglip2-b-16-256', siglipTokenizerFor('siglip2-b-16-256').vocabSize);
    expect(arch.tokenizer).toBe('gemma');
    expect({ imageSize: arch.imageSize, patchSize: arch.patchSize, patches: (arch.imageSize / arch.patchSize) ** 2 }).toEqual({ imageSize: 256, patchSize: 16, patches: 256 });
    expect(arch.vision).toEqual({ width: 768, layers: 12, heads: 12 });
    expect(arch.text).toMatchObject({ width: 768, layers: 12, heads: 12, contextLength: 64 });
    expect(arch.embedDim).toBe(768);
    // The small vocabulary the doc comment owns up to: the tiny tokenizer's, far below Gemma's 256,000.
    expect(arch.text.vocabSize).toBeLessThan(10_000);
  });

  it('xlmr-clip-large-b-16plus has XLM-R Large (24 × 1024, 16 heads) → 640 and ViT-B-16-plus-240 (12 × 896, 14 heads, 225 patches)', () => {
    const arch = multilingualArchitectureFor('xlmr-clip-large-b-16plus');
    expect(arch.text).toMatchObject({ kind: 'xlm-roberta', width: 1024, layers: 24, heads: 16, contextLength: 77, layerNormEps: 1e-5 });
    expect(arch.embedDim).toBe(640);
    expect(arch.vision.kind).toBe('clip');
    const v = arch.vision.arch;
    expect({ imageSize: v.imageSize, patchSize: v.patchSize, patches: (v.imageSize / v.patchSize) ** 2, embedDim: v.embedDim }).toEqual({
      imageSize: 240,
      patchSize: 16,
      patches: 225,
      embedDim: 640,
    });
    expect(v.vision).toEqual({ width: 896, layers: 12, heads: 14 });
    // With XLM-R's real 250,002-row vocabulary and 514 positions the encoder is xlm-roberta-large's published 560 M.
    const D = arch.text.width;
    const real = encoderLayerParams(D, arch.text.layers) + (250_002 + 514 + 1) * D + 2 * D;
    expect(real / 1e6).toBeCloseTo(560, -1);
    expect(arch.text.vocabSize).toBeLessThan(10_000);
  });

  it('nllb-siglip-b-16-384 has NLLB-200-distilled-600M’s encoder (12 × 1024, 16 heads) → 768 and SigLIP B/16 at 384 px (576 patches)', () => {
    const arch = multilingualArchitectureFor('nllb-siglip-b-16-384');
    expect(arch.text).toMatchObject({ kind: 'nllb', width: 1024, layers: 12, heads: 16, contextLength: 77 });
    expect(arch.embedDim).toBe(768);
    expect(arch.vision.kind).toBe('siglip');
    const v = arch.vision.arch;
    expect({ imageSize: v.imageSize, patchSize: v.patchSize, patches: (v.imageSize / v.patchSize) ** 2, embedDim: v.embedDim }).toEqual({
      imageSize: 384,
      patchSize: 16,
      patches: 576,
      embedDim: 768,
    });
    expect(v.vision).toEqual({ width: 768, layers: 12, heads: 12 });
    expect(arch.text.vocabSize).toBeLessThan(10_000);
  });
});
