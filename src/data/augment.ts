// CPU-side augmentation and the view grammar shared with teacher-output files.
//
// A sample transform is an optional crop box (integer pixels) resized back to the full H x W with bilinear
// interpolation (PyTorch align_corners=False, i.e. torchvision's resized_crop on upsampling), then an optional
// horizontal flip, then normalisation (x / 255 - mean[c]) / std[c]. The identity box is an exact copy.
//
// Views (fixed transforms whose teacher outputs are precomputed) are described by strings:
//   'identity' | 'hflip' | 'crop(x,y,w,h)' | 'crop(x,y,w,h)+hflip'
// with x, y, w, h fractions of the width and height (rounded to whole pixels at the image's size), so a view means
// the same thing at the teacher's and at the student's resolution.

export interface CropBox {
  /** Left column, top row, width, height, in pixels (integers). */
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface SampleTransform {
  box: CropBox | null;
  hflip: boolean;
}

export interface ViewSpec {
  /** Fractions of width/height. */
  crop: { x: number; y: number; w: number; h: number } | null;
  hflip: boolean;
}

export interface AugmentOptions {
  /** Flip horizontally with probability 1/2. */
  hflip?: boolean;
  /** torchvision RandomResizedCrop parameters (e.g. scale [0.08, 1], ratio [3/4, 4/3]), output size = input size. */
  randomResizedCrop?: { scale: [number, number]; ratio: [number, number] };
}

const VIEW_GRAMMAR = "'identity', 'hflip', 'crop(x,y,w,h)' or 'crop(x,y,w,h)+hflip' (x, y, w, h: fractions in [0, 1])";

/** Parses a view description; throws naming the grammar when it does not parse. */
export function parseView(description: string): ViewSpec {
  const fail = (why: string): never => {
    throw new Error(`view '${description}': ${why}; expected ${VIEW_GRAMMAR}`);
  };
  const spec: ViewSpec = { crop: null, hflip: false };
  if (description === 'identity') return spec;
  for (const part of description.split('+')) {
    if (part === 'hflip') {
      if (spec.hflip) fail('hflip given twice');
      spec.hflip = true;
      continue;
    }
    const m = /^crop\(([^,()]+),([^,()]+),([^,()]+),([^,()]+)\)$/.exec(part);
    if (!m) fail(`unknown part '${part}'`);
    if (spec.crop) fail('crop given twice');
    const [x, y, w, h] = m!.slice(1).map((s) => (/^\s*[0-9.eE+-]+\s*$/.test(s) ? Number(s) : NaN));
    if (![x, y, w, h].every((v) => Number.isFinite(v) && v >= 0 && v <= 1)) fail('crop values must be numbers in [0, 1]');
    if (w <= 0 || h <= 0 || x + w > 1 + 1e-9 || y + h > 1 + 1e-9) fail('the crop box must be non-empty and inside the image');
    spec.crop = { x, y, w, h };
  }
  return spec;
}

export function formatView(spec: ViewSpec): string {
  const parts: string[] = [];
  if (spec.crop) parts.push(`crop(${spec.crop.x},${spec.crop.y},${spec.crop.w},${spec.crop.h})`);
  if (spec.hflip) parts.push('hflip');
  return parts.length === 0 ? 'identity' : parts.join('+');
}

/** The pixel transform a view means for an H x W image. */
export function viewTransform(spec: ViewSpec, height: number, width: number): SampleTransform {
  if (!spec.crop) return { box: null, hflip: spec.hflip };
  const x = Math.min(width - 1, Math.round(spec.crop.x * width));
  const y = Math.min(height - 1, Math.round(spec.crop.y * height));
  const w = Math.max(1, Math.min(width - x, Math.round(spec.crop.w * width)));
  const h = Math.max(1, Math.min(height - y, Math.round(spec.crop.h * height)));
  return { box: { x, y, w, h }, hflip: spec.hflip };
}

/** Python's round(): halves go to the even neighbour (torchvision computes crop sizes with it). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision RandomResizedCrop.get_params with a seeded source of uniform [0, 1) numbers. */
export function randomResizedCropBox(
  random: () => number,
  height: number,
  width: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
): CropBox {
  if (!(scale[0] > 0 && scale[0] <= scale[1] && scale[1] <= 1)) throw new Error(`randomResizedCrop: scale [${scale}] must satisfy 0 < lo <= hi <= 1`);
  if (!(ratio[0] > 0 && ratio[0] <= ratio[1])) throw new Error(`randomResizedCrop: ratio [${ratio}] must satisfy 0 < lo <= hi`);
  const area = height * width;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (scale[0] + (scale[1] - scale[0]) * random());
    const aspect = Math.exp(logLo + (logHi - logLo) * random());
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const y = Math.floor(random() * (height - h + 1));
      const x = Math.floor(random() * (width - w + 1));
      return { x, y, w, h };
    }
  }
  // Fallback: the central crop with the aspect ratio clamped into range.
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = roundHalfEven(w / ratio[0]);
  else if (inRatio > ratio[1]) w = roundHalfEven(h * ratio[1]);
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), w, h };
}

/** Draws a random augmentation: crop first (if enabled), then the flip coin (torchvision's usual order). */
export function randomTransform(random: () => number, height: number, width: number, options: AugmentOptions): SampleTransform {
  const rrc = options.randomResizedCrop;
  const box = rrc ? randomResizedCropBox(random, height, width, rrc.scale, rrc.ratio) : null;
  const hflip = options.hflip ? random() < 0.5 : false;
  return { box, hflip };
}

/** Per-channel affine that maps a uint8 value v to (v / 255 - mean) / std. */
export function normalisation(mean: readonly number[], std: readonly number[]): { scale: Float32Array; shift: Float32Array } {
  if (mean.length !== std.length) throw new Error(`normalisation: ${mean.length} means but ${std.length} stds`);
  return {
    scale: Float32Array.from(std, (s) => 1 / (255 * s)),
    shift: Float32Array.from(mean, (m, c) => -m / std[c]),
  };
}

/** Bilinear source taps along one axis (align_corners=False): out position i reads lo/hi with weight frac. */
function taps(start: number, length: number, outSize: number): { lo: Int32Array; hi: Int32Array; frac: Float32Array } {
  const lo = new Int32Array(outSize);
  const hi = new Int32Array(outSize);
  const frac = new Float32Array(outSize);
  const step = length / outSize;
  for (let i = 0; i < outSize; i++) {
    const source = Math.max(0, (i + 0.5) * step - 0.5);
    const base = Math.min(Math.floor(source), length - 1);
    lo[i] = start + base;
    hi[i] = start + Math.min(base + 1, length - 1);
    frac[i] = source - base;
  }
  return { lo, hi, frac };
}

/**
 * Applies `t` to `src` (uint8 [C, H, W]) and writes normalised floats to out[outOffset ...] (same shape).
 * `scale`/`shift` come from normalisation().
 */
export function transformInto(
  src: Uint8Array,
  channels: number,
  height: number,
  width: number,
  t: SampleTransform,
  scale: Float32Array,
  shift: Float32Array,
  out: Float32Array,
  outOffset: number,
): void {
  const plane = height * width;
  if (src.length !== channels * plane) throw new Error(`transform: image has ${src.length} values, expected ${channels}x${height}x${width}`);
  let o = outOffset;
  if (!t.box) {
    for (let c = 0; c < channels; c++) {
      const a = scale[c];
      const b = shift[c];
      const base = c * plane;
      for (let y = 0; y < height; y++) {
        const row = base + y * width;
        if (t.hflip) for (let x = width - 1; x >= 0; x--) out[o++] = src[row + x] * a + b;
        else for (let x = 0; x < width; x++) out[o++] = src[row + x] * a + b;
      }
    }
    return;
  }
  const { x: bx, y: by, w: bw, h: bh } = t.box;
  if (bx < 0 || by < 0 || bw < 1 || bh < 1 || bx + bw > width || by + bh > height) {
    throw new Error(`transform: crop box ${JSON.stringify(t.box)} outside the ${width}x${height} image`);
  }
  const cols = taps(bx, bw, width);
  const rows = taps(by, bh, height);
  for (let c = 0; c < channels; c++) {
    const a = scale[c];
    const b = shift[c];
    const base = c * plane;
    for (let y = 0; y < height; y++) {
      const top = base + rows.lo[y] * width;
      const bottom = base + rows.hi[y] * width;
      const fy = rows.frac[y];
      for (let xo = 0; xo < width; xo++) {
        const x = t.hflip ? width - 1 - xo : xo;
        const l = cols.lo[x];
        const r = cols.hi[x];
        const fx = cols.frac[x];
        const upper = src[top + l] + (src[top + r] - src[top + l]) * fx;
        const lower = src[bottom + l] + (src[bottom + r] - src[bottom + l]) * fx;
        out[o++] = (upper + (lower - upper) * fy) * a + b;
      }
    }
  }
}
