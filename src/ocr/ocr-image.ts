/**
 * Pixels in and out of the two PaddleOCR models. Both were trained on OpenCV's BGR images, so the planes go
 * in B, G, R order; the detector takes ImageNet's mean/std (applied in that BGR order, as PaddleOCR's
 * NormalizeImage does), the recogniser (x / 255 − 0.5) / 0.5.
 */
import sharp from 'sharp';
import { ClipdexError, errorMessage } from '../errors.js';
import type { DecodedImage, RgbPixels } from '../model/image-decode.js';
import type { Quad } from './db-postprocess.js';

const DET_MEAN = [0.485, 0.456, 0.406];
const DET_STD = [0.229, 0.224, 0.225];

/** PaddleOCR DetResizeForTest (limit_type 'max'): longest side at most `maxResolution`, both sides multiples of 32. */
export function detectionSize(width: number, height: number, maxResolution: number): { width: number; height: number } {
  const ratio = Math.max(width, height) > maxResolution ? maxResolution / Math.max(width, height) : 1;
  return {
    width: Math.max(32, Math.round((width * ratio) / 32) * 32),
    height: Math.max(32, Math.round((height * ratio) / 32) * 32),
  };
}

/** The detector's input, [1, 3, h, w], from an image of any size (resized by libvips, linear). */
export async function detectionInput(image: RgbPixels, maxResolution: number): Promise<{ data: Float32Array; width: number; height: number }> {
  const size = detectionSize(image.width, image.height, maxResolution);
  let rgb: Buffer;
  try {
    rgb = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
      .resize(size.width, size.height, { fit: 'fill', kernel: 'linear' })
      .raw()
      .toBuffer();
  } catch (err) {
    throw new ClipdexError('DECODE_FAILED', `cannot resize the image for text detection: ${errorMessage(err)}`, { cause: err });
  }
  const plane = size.width * size.height;
  const data = new Float32Array(3 * plane);
  for (let i = 0, p = 0; i < plane; i++, p += 3) {
    data[i] = (rgb[p + 2]! / 255 - DET_MEAN[0]!) / DET_STD[0]!;
    data[plane + i] = (rgb[p + 1]! / 255 - DET_MEAN[1]!) / DET_STD[1]!;
    data[2 * plane + i] = (rgb[p]! / 255 - DET_MEAN[2]!) / DET_STD[2]!;
  }
  return { data, ...size };
}

const dist = (a: [number, number], b: [number, number]) => Math.hypot(a[0] - b[0], a[1] - b[1]);

/** The line's size in image pixels and whether it stands upright (PaddleOCR turns a crop 1.5× taller than wide). */
export function lineGeometry(quad: Quad): { width: number; height: number; vertical: boolean } {
  const [tl, tr, br, bl] = quad;
  const width = Math.max(dist(tl, tr), dist(bl, br));
  const height = Math.max(dist(tl, bl), dist(tr, br));
  return { width, height, vertical: height >= 1.5 * width };
}

/** Width of the recogniser input for this line at `targetHeight` (aspect kept, at least 8 px). */
export function lineInputWidth(quad: Quad, targetHeight: number, maxWidth: number): number {
  const g = lineGeometry(quad);
  const [w, h] = g.vertical ? [g.height, g.width] : [g.width, g.height];
  return Math.min(maxWidth, Math.max(8, Math.ceil((targetHeight * w) / Math.max(h, 1))));
}

/**
 * Samples the quad (a rectangle, possibly rotated) out of the image straight into the recogniser's layout:
 * `out` holds [3, targetHeight, stride] and this line fills columns [0, width) (the rest stays as padded).
 * Each output pixel averages up to 4×4 bilinear samples over its footprint, so a large line shrunk to 48 px
 * does not alias. An upright line is read turned a quarter counter-clockwise, as PaddleOCR's np.rot90.
 */
export function sampleLine(image: RgbPixels, quad: Quad, targetHeight: number, width: number, out: Float32Array, stride: number): void {
  const g = lineGeometry(quad);
  const [tl, tr, , bl] = quad;
  // Origin and the two axes of the output in image coordinates.
  let origin = tl;
  let ax: [number, number] = [tr[0] - tl[0], tr[1] - tl[1]];
  let ay: [number, number] = [bl[0] - tl[0], bl[1] - tl[1]];
  if (g.vertical) {
    origin = tr;
    ax = [quad[2][0] - tr[0], quad[2][1] - tr[1]];
    ay = [tl[0] - tr[0], tl[1] - tr[1]];
  }
  const lenX = Math.hypot(ax[0], ax[1]);
  const lenY = Math.hypot(ay[0], ay[1]);
  const k = Math.max(1, Math.min(4, Math.ceil(Math.max(lenX / width, lenY / targetHeight))));
  const { data, width: W, height: H } = image;
  const plane = targetHeight * stride;
  const px = (x: number, y: number, c: number): number => data[(y * W + x) * 3 + c]!;
  for (let v = 0; v < targetHeight; v++) {
    for (let u = 0; u < width; u++) {
      let r = 0, gr = 0, b = 0;
      for (let sy = 0; sy < k; sy++) {
        const fy = (v + (sy + 0.5) / k) / targetHeight;
        for (let sx = 0; sx < k; sx++) {
          const fx = (u + (sx + 0.5) / k) / width;
          const x = Math.min(Math.max(origin[0] + fx * ax[0] + fy * ay[0] - 0.5, 0), W - 1);
          const y = Math.min(Math.max(origin[1] + fx * ax[1] + fy * ay[1] - 0.5, 0), H - 1);
          const x0 = Math.floor(x);
          const y0 = Math.floor(y);
          const x1 = Math.min(x0 + 1, W - 1);
          const y1 = Math.min(y0 + 1, H - 1);
          const wx = x - x0;
          const wy = y - y0;
          for (let c = 0; c < 3; c++) {
            const top = px(x0, y0, c) * (1 - wx) + px(x1, y0, c) * wx;
            const bottom = px(x0, y1, c) * (1 - wx) + px(x1, y1, c) * wx;
            const value = top * (1 - wy) + bottom * wy;
            if (c === 0) r += value;
            else if (c === 1) gr += value;
            else b += value;
          }
        }
      }
      const n = k * k * 255;
      const i = v * stride + u;
      out[i] = ((b / n) - 0.5) / 0.5;
      out[plane + i] = ((gr / n) - 0.5) / 0.5;
      out[2 * plane + i] = ((r / n) - 0.5) / 0.5;
    }
  }
}

/**
 * What the engine reads from a decoded photo: upright RGB with the longest side at most `maxSide` (no
 * enlargement). Twice the detector's 736 leaves the recogniser's 48-px lines sharp for text a tenth of that.
 */
export async function ocrRender(image: DecodedImage, maxSide: number): Promise<RgbPixels> {
  const { width, height } = image.info;
  const scale = Math.min(1, maxSide / Math.max(width, height));
  if (scale === 1) return image.rgb();
  return image.rgb({
    resize: { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)), kernel: 'linear' },
  });
}
