/** The int8 formulations `models quantize` can write: names only, so the CLI's definition loads no ONNX protobuf code. */
/**
 * - `matmul-integer`: DynamicQuantizeLinear on the activation (uint8, per tensor) → MatMulInteger with the int8
 *   weight → Cast → × (activation scale · column scales). ONNX standard ops; ORT fuses the chain into its
 *   DynamicQuantizeMatMul kernel.
 * - `dynamic-quantize-matmul`: com.microsoft DynamicQuantizeMatMul directly (the fused kernel without the fusion), the
 *   bias folded in; Q, K and V of each attention block as one node over their weights side by side, then a Split.
 * - `matmul-nbits`: com.microsoft MatMulNBits, bits 8, blocks of `blockSize` along K (scales per block, finer than per
 *   channel); `accuracy_level` 4 lets ORT quantize the activation to int8 too.
 * - `weight-only`: DequantizeLinear (per-axis int8 → float32) feeding the original float32 MatMul: a 4× smaller file,
 *   float32 arithmetic.
 */
export type QuantFormat = 'matmul-integer' | 'dynamic-quantize-matmul' | 'matmul-nbits' | 'weight-only';
export const QUANT_FORMATS: readonly QuantFormat[] = ['matmul-integer', 'dynamic-quantize-matmul', 'matmul-nbits', 'weight-only'];

/** The formulation `models quantize` writes unless told otherwise: see BENCHMARKS.md "int8 models". */
export const QUANT_FORMAT_DEFAULT: QuantFormat = 'dynamic-quantize-matmul';
