/**
 * PaddleOCR's DB (differentiable binarisation) post-processing: the detector's text-probability map → one
 * rotated rectangle per text region. The steps are PaddleOCR's DBPostProcess (ppocr/postprocess/
 * db_postprocess.py): binarise at `binarizeThreshold`, take each region's minimum-area rectangle, score it by
 * the mean probability inside it, drop weak or tiny ones, then grow it by the "unclip" distance
 * area × ratio / perimeter, since the detector was trained to mark a shrunken core of each text line.
 *
 * Two simplifications, both exact for what the detector emits: a region is a connected component of the
 * bitmap (8-connected) rather than a traced contour, and unclip grows the rectangle itself (PaddleOCR offsets
 * the polygon with pyclipper and takes the rectangle of the result again, which for a rectangle is the same
 * rectangle, grown by the distance on every side).
 */

export type Point = [number, number];
/** Corners clockwise from the top-left as seen on screen: tl, tr, br, bl. */
export type Quad = [Point, Point, Point, Point];

export interface DbOptions {
  /** A map value above this is text (PaddleOCR det_db_thresh: 0.3). */
  binarizeThreshold: number;
  /** Keep a box whose mean probability reaches this (Immich's detection score: 0.5). */
  boxThreshold: number;
  /** Growth of the shrunken core (PaddleOCR det_db_unclip_ratio: 1.5). */
  unclipRatio: number;
  /** Regions looked at, largest first (PaddleOCR max_candidates: 1000); a map with more is bounded here. */
  maxCandidates: number;
  /** Shorter side below this (map pixels) is noise (PaddleOCR min_size: 3). */
  minSize: number;
}

export const DEFAULT_DB_OPTIONS: DbOptions = { binarizeThreshold: 0.3, boxThreshold: 0.5, unclipRatio: 1.5, maxCandidates: 1000, minSize: 3 };

export interface DetectedBox {
  /** In map coordinates (the detector's input size). */
  box: Quad;
  /** Mean probability inside the rectangle before unclip. */
  score: number;
}

export interface DbResult {
  boxes: DetectedBox[];
  /** Connected regions found in the bitmap, before any was dropped or the candidate cap applied. */
  regions: number;
}

/** Rows of a region: for each y, the leftmost and rightmost x (all the convex hull needs). */
interface Region {
  size: number;
  rows: Map<number, [number, number]>;
}

/** 8-connected components of `prob > threshold`, each as its rows' extents. */
export function findRegions(prob: Float32Array, width: number, height: number, threshold: number): Region[] {
  const label = new Int32Array(width * height).fill(-1);
  const regions: Region[] = [];
  const stack: number[] = [];
  for (let start = 0; start < prob.length; start++) {
    if (label[start] !== -1 || !(prob[start]! > threshold)) continue;
    const id = regions.length;
    const region: Region = { size: 0, rows: new Map() };
    regions.push(region);
    label[start] = id;
    stack.push(start);
    while (stack.length > 0) {
      const p = stack.pop()!;
      const x = p % width;
      const y = (p - x) / width;
      region.size++;
      const row = region.rows.get(y);
      if (!row) region.rows.set(y, [x, x]);
      else {
        if (x < row[0]) row[0] = x;
        if (x > row[1]) row[1] = x;
      }
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          if (nx < 0 || nx >= width || (dx === 0 && dy === 0)) continue;
          const q = ny * width + nx;
          if (label[q] === -1 && prob[q]! > threshold) {
            label[q] = id;
            stack.push(q);
          }
        }
      }
    }
  }
  return regions;
}

const cross = (o: Point, a: Point, b: Point): number => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);

/** Andrew's monotone chain; counter-clockwise in y-up terms, without repeated points. */
export function convexHull(points: Point[]): Point[] {
  const pts = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (pts.length < 3) return pts;
  const lower: Point[] = [];
  for (const p of pts) {
    while (lower.length >= 2 && cross(lower[lower.length - 2]!, lower[lower.length - 1]!, p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper: Point[] = [];
  for (let i = pts.length - 1; i >= 0; i--) {
    const p = pts[i]!;
    while (upper.length >= 2 && cross(upper[upper.length - 2]!, upper[upper.length - 1]!, p) <= 0) upper.pop();
    upper.push(p);
  }
  return [...lower.slice(0, -1), ...upper.slice(0, -1)];
}

export interface RotatedRect {
  center: Point;
  /** Unit vector of the first side, and its length; the second side is perpendicular. */
  axis: Point;
  width: number;
  height: number;
}

/** The minimum-area rectangle around the points (rotating calipers over the hull's edges). */
export function minAreaRect(points: Point[]): RotatedRect {
  const hull = convexHull(points);
  if (hull.length === 0) return { center: [0, 0], axis: [1, 0], width: 0, height: 0 };
  if (hull.length === 1) return { center: [...hull[0]!], axis: [1, 0], width: 0, height: 0 };
  let best: RotatedRect | null = null;
  let bestArea = Infinity;
  for (let i = 0; i < hull.length; i++) {
    const a = hull[i]!;
    const b = hull[(i + 1) % hull.length]!;
    const len = Math.hypot(b[0] - a[0], b[1] - a[1]);
    if (len === 0) continue;
    const ux = (b[0] - a[0]) / len;
    const uy = (b[1] - a[1]) / len;
    let minU = Infinity, maxU = -Infinity, minV = Infinity, maxV = -Infinity;
    for (const p of hull) {
      const u = p[0] * ux + p[1] * uy;
      const v = -p[0] * uy + p[1] * ux;
      if (u < minU) minU = u;
      if (u > maxU) maxU = u;
      if (v < minV) minV = v;
      if (v > maxV) maxV = v;
    }
    const area = (maxU - minU) * (maxV - minV);
    if (area < bestArea) {
      bestArea = area;
      const cu = (minU + maxU) / 2;
      const cv = (minV + maxV) / 2;
      best = { center: [cu * ux - cv * uy, cu * uy + cv * ux], axis: [ux, uy], width: maxU - minU, height: maxV - minV };
    }
  }
  return best!;
}

/** The rectangle's corners as tl, tr, br, bl: the two leftmost are tl/bl, the two rightmost tr/br (PaddleOCR get_mini_boxes). */
export function rectCorners(r: RotatedRect): Quad {
  const [ux, uy] = r.axis;
  const hw = r.width / 2;
  const hh = r.height / 2;
  const [cx, cy] = r.center;
  const pts: Point[] = [
    [cx - ux * hw + uy * hh, cy - uy * hw - ux * hh],
    [cx + ux * hw + uy * hh, cy + uy * hw - ux * hh],
    [cx + ux * hw - uy * hh, cy + uy * hw + ux * hh],
    [cx - ux * hw - uy * hh, cy - uy * hw + ux * hh],
  ];
  pts.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const [l1, l2, r1, r2] = pts as [Point, Point, Point, Point];
  const [tl, bl] = l1[1] <= l2[1] ? [l1, l2] : [l2, l1];
  const [tr, br] = r1[1] <= r2[1] ? [r1, r2] : [r2, r1];
  return [tl, tr, br, bl];
}

/** Mean of the map over the pixels whose centre lies inside the quad (PaddleOCR box_score_fast, on the rectangle). */
export function meanInside(prob: Float32Array, width: number, height: number, quad: Quad): number {
  const xs = quad.map((p) => p[0]);
  const ys = quad.map((p) => p[1]);
  const x0 = Math.max(0, Math.floor(Math.min(...xs)));
  const x1 = Math.min(width - 1, Math.ceil(Math.max(...xs)));
  const y0 = Math.max(0, Math.floor(Math.min(...ys)));
  const y1 = Math.min(height - 1, Math.ceil(Math.max(...ys)));
  let sum = 0;
  let n = 0;
  // The corners go clockwise on screen (y down): a point inside is on the same side of every edge.
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const p: Point = [x, y];
      let inside = true;
      for (let i = 0; i < 4 && inside; i++) inside = cross(quad[i]!, quad[(i + 1) % 4]!, p) >= -1e-6;
      if (inside) {
        sum += prob[y * width + x]!;
        n++;
      }
    }
  }
  return n === 0 ? 0 : sum / n;
}

/** The detector's map → boxes in map coordinates, strongest region first is not promised: callers order them. */
export function dbPostprocess(prob: Float32Array, width: number, height: number, options: DbOptions = DEFAULT_DB_OPTIONS): DbResult {
  const regions = findRegions(prob, width, height, options.binarizeThreshold);
  const candidates = regions.length > options.maxCandidates ? [...regions].sort((a, b) => b.size - a.size).slice(0, options.maxCandidates) : regions;
  const boxes: DetectedBox[] = [];
  for (const region of candidates) {
    const points: Point[] = [];
    for (const [y, [x0, x1]] of region.rows) {
      points.push([x0, y]);
      if (x1 !== x0) points.push([x1, y]);
    }
    const rect = minAreaRect(points);
    if (Math.min(rect.width, rect.height) < options.minSize) continue;
    const score = meanInside(prob, width, height, rectCorners(rect));
    if (score < options.boxThreshold) continue;
    const distance = (rect.width * rect.height * options.unclipRatio) / (2 * (rect.width + rect.height));
    const grown: RotatedRect = { ...rect, width: rect.width + 2 * distance, height: rect.height + 2 * distance };
    if (Math.min(grown.width, grown.height) < options.minSize + 2) continue;
    const corners = rectCorners(grown).map(([x, y]): Point => [Math.min(Math.max(x, 0), width), Math.min(Math.max(y, 0), height)]) as Quad;
    boxes.push({ box: corners, score });
  }
  return { boxes, regions: regions.length };
}
