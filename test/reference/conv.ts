// Float64 reference for conv2d (NCHW, PyTorch semantics) and its backward: plain loops over every output
// element and kernel tap, written for clarity, not speed.

export interface ConvSpec {
  x: [number, number, number, number]; // [N, C, H, W]
  weight: [number, number, number, number]; // [O, C/groups, kH, kW]
  stride?: [number, number];
  padding?: [number, number];
  dilation?: [number, number];
  groups?: number;
}

interface Dims {
  n: number; c: number; h: number; w: number;
  o: number; cg: number; kh: number; kw: number;
  oh: number; ow: number;
  sh: number; sw: number; ph: number; pw: number; dh: number; dw: number;
  og: number;
}

function dims(s: ConvSpec): Dims {
  const [n, c, h, w] = s.x;
  const [o, cg, kh, kw] = s.weight;
  const [sh, sw] = s.stride ?? [1, 1];
  const [ph, pw] = s.padding ?? [0, 0];
  const [dh, dw] = s.dilation ?? [1, 1];
  const groups = s.groups ?? 1;
  const oh = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const ow = Math.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  return { n, c, h, w, o, cg, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, og: o / groups };
}

export function outputShape(s: ConvSpec): [number, number, number, number] {
  const d = dims(s);
  return [d.n, d.o, d.oh, d.ow];
}

/**
 * Calls visit(outIndex, xIndex, wIndex) for every (output element, kernel tap) pair whose input position lies
 * inside the image (padding contributes zeros, so it is skipped). Forward and backward share this walk.
 */
function forEachTap(s: ConvSpec, visit: (outIndex: number, xIndex: number, wIndex: number) => void): void {
  const d = dims(s);
  for (let n = 0; n < d.n; n++) {
    for (let o = 0; o < d.o; o++) {
      const group = Math.floor(o / d.og);
      for (let oy = 0; oy < d.oh; oy++) {
        for (let ox = 0; ox < d.ow; ox++) {
          const outIndex = ((n * d.o + o) * d.oh + oy) * d.ow + ox;
          for (let cl = 0; cl < d.cg; cl++) {
            const c = group * d.cg + cl;
            for (let ky = 0; ky < d.kh; ky++) {
              const iy = oy * d.sh - d.ph + ky * d.dh;
              if (iy < 0 || iy >= d.h) continue;
              for (let kx = 0; kx < d.kw; kx++) {
                const ix = ox * d.sw - d.pw + kx * d.dw;
                if (ix < 0 || ix >= d.w) continue;
                visit(outIndex, ((n * d.c + c) * d.h + iy) * d.w + ix, ((o * d.cg + cl) * d.kh + ky) * d.kw + kx);
              }
            }
          }
        }
      }
    }
  }
}

/** out[n, o, oy, ox] = bias[o] + sum over (cl, ky, kx) of x[n, g*cg + cl, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw] * w[o, cl, ky, kx]. */
export function conv2d(s: ConvSpec, x: Float64Array, weight: Float64Array, bias: Float64Array | null): Float64Array {
  const [n, o, oh, ow] = outputShape(s);
  const out = new Float64Array(n * o * oh * ow);
  if (bias) for (let i = 0; i < out.length; i++) out[i] = bias[Math.floor(i / (oh * ow)) % o];
  forEachTap(s, (oi, xi, wi) => {
    out[oi] += x[xi] * weight[wi];
  });
  return out;
}

/** Gradients of sum(conv2d(x, weight, bias) * gOut) with respect to x, weight and bias. */
export function conv2dBackward(
  s: ConvSpec,
  x: Float64Array,
  weight: Float64Array,
  gOut: Float64Array,
): { x: Float64Array; weight: Float64Array; bias: Float64Array } {
  const [, o, oh, ow] = outputShape(s);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(weight.length);
  const db = new Float64Array(o);
  for (let i = 0; i < gOut.length; i++) db[Math.floor(i / (oh * ow)) % o] += gOut[i];
  forEachTap(s, (oi, xi, wi) => {
    dx[xi] += gOut[oi] * weight[wi];
    dw[wi] += gOut[oi] * x[xi];
  });
  return { x: dx, weight: dw, bias: db };
}

// ---- transposed convolution (torch.nn.functional.conv_transpose2d, groups 1, output_padding 0) ---------------

export interface ConvTransposeSpec {
  x: [number, number, number, number]; // [N, Cin, H, W]
  weight: [number, number, number, number]; // [Cin, Cout, kH, kW]
  stride?: [number, number];
  padding?: [number, number];
  dilation?: [number, number];
}

export function convTransposeOutputShape(s: ConvTransposeSpec): [number, number, number, number] {
  const [n, , h, w] = s.x;
  const [, cout, kh, kw] = s.weight;
  const [sh, sw] = s.stride ?? [1, 1];
  const [ph, pw] = s.padding ?? [0, 0];
  const [dh, dw] = s.dilation ?? [1, 1];
  return [n, cout, (h - 1) * sh - 2 * ph + dh * (kh - 1) + 1, (w - 1) * sw - 2 * pw + dw * (kw - 1) + 1];
}

/**
 * Calls visit(outIndex, xIndex, wIndex) for every (input element, kernel tap) pair that lands inside the output:
 * x[n, ci, y, x] * w[ci, co, ky, kx] is added to out[n, co, y*sh - ph + ky*dh, x*sw - pw + kx*dw] (the scatter form
 * of the definition, written independently of conv2d's walk).
 */
function forEachTransposedTap(s: ConvTransposeSpec, visit: (outIndex: number, xIndex: number, wIndex: number) => void): void {
  const [n, cin, h, w] = s.x;
  const [, cout, kh, kw] = s.weight;
  const [, , oh, ow] = convTransposeOutputShape(s);
  const [sh, sw] = s.stride ?? [1, 1];
  const [ph, pw] = s.padding ?? [0, 0];
  const [dh, dw] = s.dilation ?? [1, 1];
  for (let b = 0; b < n; b++) {
    for (let ci = 0; ci < cin; ci++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const xIndex = ((b * cin + ci) * h + y) * w + x;
          for (let co = 0; co < cout; co++) {
            for (let ky = 0; ky < kh; ky++) {
              const oy = y * sh - ph + ky * dh;
              if (oy < 0 || oy >= oh) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ox = x * sw - pw + kx * dw;
                if (ox < 0 || ox >= ow) continue;
                visit(((b * cout + co) * oh + oy) * ow + ox, xIndex, ((ci * cout + co) * kh + ky) * kw + kx);
              }
            }
          }
        }
      }
    }
  }
}

export function convTranspose2d(s: ConvTransposeSpec, x: Float64Array, weight: Float64Array, bias: Float64Array | null): Float64Array {
  const [n, cout, oh, ow] = convTransposeOutputShape(s);
  const out = new Float64Array(n * cout * oh * ow);
  if (bias) for (let i = 0; i < out.length; i++) out[i] = bias[Math.floor(i / (oh * ow)) % cout];
  forEachTransposedTap(s, (oi, xi, wi) => {
    out[oi] += x[xi] * weight[wi];
  });
  return out;
}

/** Gradients of sum(convTranspose2d(x, weight, bias) * gOut) with respect to x, weight and bias. */
export function convTranspose2dBackward(
  s: ConvTransposeSpec,
  x: Float64Array,
  weight: Float64Array,
  gOut: Float64Array,
): { x: Float64Array; weight: Float64Array; bias: Float64Array } {
  const [, cout, oh, ow] = convTransposeOutputShape(s);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(weight.length);
  const db = new Float64Array(cout);
  for (let i = 0; i < gOut.length; i++) db[Math.floor(i / (oh * ow)) % cout] += gOut[i];
  forEachTransposedTap(s, (oi, xi, wi) => {
    dx[xi] += gOut[oi] * weight[wi];
    dw[wi] += gOut[oi] * x[xi];
  });
  return { x: dx, weight: dw, bias: db };
}
