// Relational family: pairwise euclidean distances (torch.cdist, p = 2), the relational-KD structures of Park et
// al. 2019 (distance-wise psi and angle-wise a) and L2 normalisation (F.normalize). Forward and backward side
// by side; kernels in shaders/relational.wgsl.
//
// Zero distances (the diagonal, identical rows, duplicated samples) never produce NaN: such a pair contributes
// exactly 0 to every gradient (see the shader header).
import type { Device } from '../gpu/device.js';
import { record } from '../autograd/tape.js';
import { Tensor, shapeStr } from '../tensor.js';
import { gemm } from './matmul.js';

const CDIST_BLOCK = 4; // cdist kernels: outputs per invocation (neighbours in a row)
const WG = 256; // 1-D elementwise kernels
const ROW_WG = 64; // kernels with one invocation per pair

/**
 * Guard of the RKD structures. rkdDistance divides by max(mu, eps) (mu = 0 when every row is equal or B = 1:
 * psi is then 0); rkdAngle normalises e_j - e_i by max(||e_j - e_i||, eps) (u = 0 for coincident samples).
 */
export const RKD_EPS = 1e-12;

function requireEmbeddings(op: string, name: string, t: Tensor): [number, number] {
  if (t.ndim !== 2) throw new Error(`${op}: ${name} must be 2-D [rows, features], got ${shapeStr(t.shape)}`);
  if (t.dtype !== 'f32') throw new Error(`${op}: ${name} must be f32, got ${t.dtype}`);
  const [rows, features] = t.shape;
  if (rows === 0 || features === 0) throw new Error(`${op}: ${name} ${shapeStr(t.shape)} is empty`);
  return [rows, features];
}

/** Records out = cdist(a, b) for a [m, d], b [n, d]. */
function distances(a: Tensor, b: Tensor, out: Tensor, m: number, n: number, d: number): void {
  a.device.dispatch('relational', 'cdist_forward', {
    bindings: { a, b, out },
    params: { m, n, d },
    workgroups: Math.ceil((m * Math.ceil(n / CDIST_BLOCK)) / ROW_WG),
  });
}

/**
 * Records out[r, :] = sum_j w(r, j) (x[r, :] - y[j, :]) with w(r, j) = grad[o] / dist[o] (0 where dist is 0),
 * o = r * wRow + j * wCol. out and x are [rows, cols], y is [inner, cols].
 */
function distanceGradient(
  dev: Device,
  grad: Tensor,
  dist: Tensor,
  x: Tensor,
  y: Tensor,
  shape: { rows: number; inner: number; cols: number; wRow: number; wCol: number },
): Tensor {
  const out = Tensor.empty([shape.rows, shape.cols], { device: dev });
  dev.dispatch('relational', 'cdist_backward', {
    bindings: { grad, dist, x, y, out },
    params: { rows: shape.rows, cols: shape.cols, inner: shape.inner, w_row: shape.wRow, w_col: shape.wCol },
    workgroups: Math.ceil((shape.rows * Math.ceil(shape.cols / CDIST_BLOCK)) / ROW_WG),
  });
  return out;
}

/**
 * Pairwise euclidean distances, like torch.cdist(a, b, p=2): a [M, D], b [N, D] -> [M, N].
 * Computed from the differences (never ||a||^2 + ||b||^2 - 2ab), so identical rows give exactly 0.
 * Backward: dA_i = sum_j g_ij (a_i - b_j) / d_ij, dB_j = sum_i g_ij (b_j - a_i) / d_ij, with 0 where d_ij = 0
 * (the value PyTorch uses at the kink).
 */
export function cdist(a: Tensor, b: Tensor): Tensor {
  const [m, d] = requireEmbeddings('cdist', 'a', a);
  const [n, db] = requireEmbeddings('cdist', 'b', b);
  if (d !== db) throw new Error(`cdist: a ${shapeStr(a.shape)} and b ${shapeStr(b.shape)} differ in the feature size`);
  const dev = a.device;
  const out = Tensor.empty([m, n], { device: dev });
  distances(a, b, out, m, n, d);
  return record(out, 'cdist', [a, b], (g) => [
    a.requiresGrad ? distanceGradient(dev, g, out, a, b, { rows: m, inner: n, cols: d, wRow: n, wCol: 1 }) : null,
    b.requiresGrad ? distanceGradient(dev, g, out, b, a, { rows: n, inner: m, cols: d, wRow: 1, wCol: n }) : null,
  ]);
}

/**
 * RKD distance-wise structure: psi [B, B] with psi_ij = d_ij / mu, d = cdist(e, e), mu = the mean of d_ij over
 * i != j (the diagonal is 0, so mu = sum(d) / (B (B - 1))). The gradient flows through mu too.
 * Guard: psi = d / max(mu, eps) with eps = RKD_EPS, so B = 1 or a batch of equal rows (mu = 0) gives psi = 0
 * and a zero gradient, never NaN.
 *
 * `pdistClamp` (the RKD authors' code, 1e-12 there): off the diagonal, squared distances are clamped at that value
 * before the square root (d_ij = max(d_ij, sqrt(pdistClamp)), no gradient where the clamp is active), and mu is
 * the mean over d_ij > 0. With the clamp every off-diagonal d_ij is > 0, so that mean is again the mean over
 * i != j: the two definitions agree even for duplicated rows, which then count at distance 1e-6 instead of 0
 * (smooth-L1 distance losses 0.14224739 vs 0.14224740 on test/recipe.test.ts's batch of 8 with 3 duplicated rows).
 * They differ only for an unclamped pdist, where duplicated rows drop out of a mean over d > 0 (0.10684141 there).
 */
export function rkdDistance(e: Tensor, options: { eps?: number; pdistClamp?: number } = {}): Tensor {
  const [batch, features] = requireEmbeddings('rkdDistance', 'e', e);
  const eps = options.eps ?? RKD_EPS;
  const clamp = options.pdistClamp;
  if (clamp !== undefined && !(clamp > 0 && Number.isFinite(clamp))) throw new Error(`rkdDistance: pdistClamp must be a finite number > 0, got ${clamp}`);
  const dev = e.device;
  const count = batch * batch;
  const pairs = Math.max(batch * (batch - 1), 1);
  const dist = Tensor.empty([batch, batch], { device: dev });
  distances(e, e, dist, batch, batch, features);
  const clampParams = { count, b: batch, floor: Math.sqrt(clamp ?? 0) };
  if (clamp !== undefined) {
    dev.dispatch('relational', 'pdist_clamp', { bindings: { out: dist }, params: clampParams, workgroups: Math.ceil(count / WG) });
  }
  const total = Tensor.empty([1], { device: dev });
  dev.dispatch('relational', 'sum_all', { bindings: { x: dist, out: total }, params: { count }, workgroups: 1 });
  const psi = Tensor.empty([batch, batch], { device: dev });
  const params = { count, b: batch, pairs, eps };
  dev.dispatch('relational', 'rkd_distance_forward', {
    bindings: { dist, total, out: psi },
    params,
    workgroups: Math.ceil(count / WG),
  });
  record(psi, 'rkd_distance', [e], (g) => {
    const dots = Tensor.empty([1], { device: dev });
    dev.dispatch('relational', 'sum_products', { bindings: { x: g, y: dist, out: dots }, params: { count }, workgroups: 1 });
    const gradDist = Tensor.empty([batch, batch], { device: dev }); // symmetrised: gd + gd^T
    dev.dispatch('relational', 'rkd_distance_backward', {
      bindings: { grad: g, total, dots, out: gradDist },
      params,
      workgroups: Math.ceil(count / WG),
    });
    if (clamp !== undefined) {
      dev.dispatch('relational', 'pdist_clamp_backward', { bindings: { dist, out: gradDist }, params: clampParams, workgroups: Math.ceil(count / WG) });
    }
    const ge = distanceGradient(dev, gradDist, dist, e, e, { rows: batch, inner: batch, cols: features, wRow: batch, wCol: 1 });
    for (const t of [dots, gradDist, dist, total]) t.dispose();
    return [ge];
  }, [dist, total]);
  if (!psi.requiresGrad) {
    dist.dispose();
    total.dispose();
  }
  return psi;
}

/**
 * RKD angle-wise structure, [B, B, B], in the layout of the RKD authors' PyTorch code (the vertex is the FIRST
 * index):  angle[i][j][k] = < u(e_j - e_i), u(e_k - e_i) >,  u(v) = v / max(||v||, eps)  (u = 0 when v = 0).
 * kd-formulas.md writes a_ijk = <u_ij, u_kj> with the vertex in the middle, i.e. angle[i][j][k] = a_jik; the RKD
 * loss (smooth-L1 mean over all B^3 entries against a teacher tensor built the same way) is the same either way.
 *
 * Forward: the unit differences U [B, B, D] (one kernel), then angle[i] = U[i] U[i]^T (a batched GEMM).
 * Backward, O(B^3 D): GU[i] = (G[i] + G[i]^T) U[i] (GEMM), dV_ij = (GU_ij - U_ij <U_ij, GU_ij>) / ||v_ij||
 * (0 for pairs with ||v_ij|| < eps: degenerate pairs carry no gradient, never NaN), then a gather over pairs.
 */
export function rkdAngle(e: Tensor, options: { eps?: number } = {}): Tensor {
  const [batch, features] = requireEmbeddings('rkdAngle', 'e', e);
  const eps = options.eps ?? RKD_EPS;
  const dev = e.device;
  const pairParams = { b: batch, d: features, eps };
  const units = Tensor.empty([batch, batch, features], { device: dev });
  const norms = Tensor.empty([batch, batch], { device: dev });
  dev.dispatch('relational', 'angle_unit_diffs', {
    bindings: { e, out: units, norms_out: norms },
    params: pairParams,
    workgroups: Math.ceil((batch * batch) / ROW_WG),
  });
  const angle = Tensor.empty([batch, batch, batch], { device: dev });
  const perVertex = batch * features; // elements of U[i]
  gemm(dev, {
    a: units,
    b: units,
    out: angle,
    batch,
    m: batch,
    n: batch,
    k: features,
    aStrides: [perVertex, features, 1],
    bStrides: [perVertex, 1, features], // U[i]^T
  });
  record(angle, 'rkd_angle', [e], (g) => {
    const gradSym = Tensor.empty([batch, batch, batch], { device: dev });
    dev.dispatch('relational', 'angle_symmetrize', {
      bindings: { grad: g, out: gradSym },
      params: { b: batch },
      workgroups: Math.ceil(batch ** 3 / WG),
    });
    const gradUnits = Tensor.empty([batch, batch, features], { device: dev });
    gemm(dev, {
      a: gradSym,
      b: units,
      out: gradUnits,
      batch,
      m: batch,
      n: features,
      k: batch,
      aStrides: [batch * batch, batch, 1],
      bStrides: [perVertex, features, 1],
    });
    gradSym.dispose();
    // In place: the gradient w.r.t. u becomes the gradient w.r.t. v = e_j - e_i.
    dev.dispatch('relational', 'angle_pair_backward', {
      bindings: { u: units, norms, gu: gradUnits },
      params: pairParams,
      workgroups: Math.ceil((batch * batch) / ROW_WG),
    });
    const ge = Tensor.empty([batch, features], { device: dev });
    dev.dispatch('relational', 'angle_gather', {
      bindings: { dv: gradUnits, out: ge },
      params: pairParams,
      workgroups: Math.ceil((batch * features) / WG),
    });
    for (const t of [gradUnits, units, norms]) t.dispose();
    return [ge];
  }, [units, norms]);
  if (!angle.requiresGrad) {
    units.dispose();
    norms.dispose();
  }
  return angle;
}

/**
 * F.normalize(x, p=2, dim, eps): x / max(||x||_2 along dim, eps), any rank (dim defaults to 1, negative dims
 * count from the end). The backward is PyTorch's: where the clamp is active (||x|| < eps) the gradient is g / eps.
 */
export function l2Normalize(x: Tensor, options: { dim?: number; eps?: number } = {}): Tensor {
  const eps = options.eps ?? 1e-12;
  const rank = x.ndim;
  const dimArg = options.dim ?? 1;
  const dim = dimArg < 0 ? dimArg + rank : dimArg;
  if (!Number.isInteger(dim) || dim < 0 || dim >= rank) {
    throw new Error(`l2Normalize: dim ${dimArg} out of range for shape ${shapeStr(x.shape)}`);
  }
  if (x.dtype !== 'f32') throw new Error(`l2Normalize: x must be f32, got ${x.dtype}`);
  const dev = x.device;
  const out = Tensor.empty(x.shape, { device: dev });
  if (x.numel === 0) return out;
  const n = x.shape[dim];
  const inner = x.shape.slice(dim + 1).reduce((p, s) => p * s, 1);
  const rows = x.numel / n;
  const params = { rows, n, inner, eps };
  dev.dispatch('relational', 'l2norm_forward', { bindings: { x, out }, params, workgroups: rows });
  return record(out, 'l2_normalize', [x], (g) => {
    const gx = Tensor.empty(x.shape, { device: dev });
    dev.dispatch('relational', 'l2norm_backward', { bindings: { x, grad: g, out: gx }, params, workgroups: rows });
    return [gx];
  });
}
