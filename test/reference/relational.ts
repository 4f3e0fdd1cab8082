// Float64 references for the relational family, written from the formulas (kd-formulas.md, "Relational KD"
// and "Distance-metric KD") with plain loops. Row-major [rows, features] embeddings.
//
// Conventions shared with the GPU ops: a pair at distance 0 contributes 0 to every gradient; u(0) = 0.

function dist(x: Float64Array, i: number, y: Float64Array, j: number, d: number): number {
  let s = 0;
  for (let t = 0; t < d; t++) s += (x[i * d + t] - y[j * d + t]) ** 2;
  return Math.sqrt(s);
}

/** torch.cdist(a, b, p=2): a [m, d], b [n, d] -> [m, n]. */
export function cdist(a: Float64Array, b: Float64Array, m: number, n: number, d: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[i * n + j] = dist(a, i, b, j, d);
  return out;
}

/** Gradients of sum(cdist(a, b) * g): dA_i = sum_j g_ij (a_i - b_j) / d_ij, dB_j = -sum_i g_ij (a_i - b_j) / d_ij. */
export function cdistBackward(a: Float64Array, b: Float64Array, m: number, n: number, d: number, g: Float64Array): { a: Float64Array; b: Float64Array } {
  const ga = new Float64Array(m * d);
  const gb = new Float64Array(n * d);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const dij = dist(a, i, b, j, d);
      if (dij === 0) continue; // the kink: PyTorch's gradient there is 0
      const w = g[i * n + j] / dij;
      for (let t = 0; t < d; t++) {
        const diff = a[i * d + t] - b[j * d + t];
        ga[i * d + t] += w * diff;
        gb[j * d + t] -= w * diff;
      }
    }
  }
  return { a: ga, b: gb };
}

/** Mean of d_ij over i != j (0 when B = 1). */
function meanOffDiagonal(dists: Float64Array, batch: number): number {
  let s = 0;
  for (let i = 0; i < batch; i++) for (let j = 0; j < batch; j++) if (i !== j) s += dists[i * batch + j];
  return batch > 1 ? s / (batch * (batch - 1)) : 0;
}

/** RKD distance-wise: psi_ij = d_ij / max(mu, eps), mu = mean of d_ij over i != j. */
export function rkdDistance(e: Float64Array, batch: number, d: number, eps = 1e-12): Float64Array {
  const dists = cdist(e, e, batch, batch, d);
  const den = Math.max(meanOffDiagonal(dists, batch), eps);
  return dists.map((v) => v / den);
}

/**
 * Gradient of sum(psi * g) w.r.t. e. With S = sum_kl g_kl d_kl and P = B (B - 1):
 * dL/dd_ij = g_ij / mu - S / (mu^2 P) for i != j (the second term through mu; absent while the eps clamp
 * holds), then the chain rule through d_ij = ||e_i - e_j||.
 */
export function rkdDistanceBackward(e: Float64Array, batch: number, d: number, g: Float64Array, eps = 1e-12): Float64Array {
  const dists = cdist(e, e, batch, batch, d);
  const mu = meanOffDiagonal(dists, batch);
  const den = Math.max(mu, eps);
  let s = 0;
  for (let k = 0; k < dists.length; k++) s += g[k] * dists[k];
  const throughMu = mu >= eps ? s / (den * den * batch * (batch - 1)) : 0;
  const gradDist = new Float64Array(batch * batch);
  for (let i = 0; i < batch; i++) {
    for (let j = 0; j < batch; j++) if (i !== j) gradDist[i * batch + j] = g[i * batch + j] / den - throughMu;
  }
  const { a, b } = cdistBackward(e, e, batch, batch, d, gradDist);
  return a.map((v, k) => v + b[k]);
}

/**
 * u_ij = (e_i - e_j) / ||e_i - e_j|| as in kd-formulas.md (0 when the norm is below eps), for every pair:
 * units[(i * B + j) * D + t], norms[i * B + j].
 */
function unitDifferences(e: Float64Array, batch: number, d: number, eps: number): { units: Float64Array; norms: Float64Array } {
  const units = new Float64Array(batch * batch * d);
  const norms = new Float64Array(batch * batch);
  for (let i = 0; i < batch; i++) {
    for (let j = 0; j < batch; j++) {
      const p = i * batch + j;
      norms[p] = dist(e, i, e, j, d);
      for (let t = 0; t < d; t++) units[p * d + t] = norms[p] >= eps ? (e[i * d + t] - e[j * d + t]) / norms[p] : 0;
    }
  }
  return { units, norms };
}

/**
 * RKD angle-wise, from the formula a_ijk = <u_ij, u_kj> (vertex j in the middle), returned in the layout of
 * the GPU op (the RKD authors' layout, vertex first): out[v][p][q] = a_{p v q} = <u_pv, u_qv>.
 */
export function rkdAngle(e: Float64Array, batch: number, d: number, eps = 1e-12): Float64Array {
  const { units } = unitDifferences(e, batch, d, eps);
  const out = new Float64Array(batch ** 3);
  for (let i = 0; i < batch; i++) {
    for (let j = 0; j < batch; j++) {
      for (let k = 0; k < batch; k++) {
        const ij = (i * batch + j) * d;
        const kj = (k * batch + j) * d;
        let a = 0;
        for (let t = 0; t < d; t++) a += units[ij + t] * units[kj + t];
        out[(j * batch + i) * batch + k] = a; // a_ijk lands at [vertex j][i][k]
      }
    }
  }
  return out;
}

/**
 * Gradient of sum(angle * g) w.r.t. e, for the layout above. For a_ijk = <u_ij, u_kj> with g_ijk = g[j][i][k]:
 * dL/du_ij += g_ijk u_kj, dL/du_kj += g_ijk u_ij; then du = (I - u u^T) dv / ||v|| for v_ij = e_i - e_j
 * (0 where ||v|| < eps), and v_ij feeds e_i with + and e_j with -.
 */
export function rkdAngleBackward(e: Float64Array, batch: number, d: number, g: Float64Array, eps = 1e-12): Float64Array {
  const { units, norms } = unitDifferences(e, batch, d, eps);
  const gu = new Float64Array(units.length);
  for (let i = 0; i < batch; i++) {
    for (let j = 0; j < batch; j++) {
      for (let k = 0; k < batch; k++) {
        const gijk = g[(j * batch + i) * batch + k];
        const ij = (i * batch + j) * d;
        const kj = (k * batch + j) * d;
        for (let t = 0; t < d; t++) {
          gu[ij + t] += gijk * units[kj + t];
          gu[kj + t] += gijk * units[ij + t];
        }
      }
    }
  }
  const ge = new Float64Array(batch * d);
  for (let i = 0; i < batch; i++) {
    for (let j = 0; j < batch; j++) {
      const p = i * batch + j;
      if (norms[p] < eps) continue;
      let c = 0;
      for (let t = 0; t < d; t++) c += units[p * d + t] * gu[p * d + t];
      for (let t = 0; t < d; t++) {
        const dv = (gu[p * d + t] - units[p * d + t] * c) / norms[p];
        ge[i * d + t] += dv;
        ge[j * d + t] -= dv;
      }
    }
  }
  return ge;
}

/** Shape [outer, n, inner] view of a tensor normalised along dim. */
function around(shape: readonly number[], dim: number): { outer: number; n: number; inner: number } {
  const outer = shape.slice(0, dim).reduce((p, s) => p * s, 1);
  const inner = shape.slice(dim + 1).reduce((p, s) => p * s, 1);
  return { outer, n: shape[dim], inner };
}

/** F.normalize(x, p=2, dim, eps) = x / max(||x||, eps) along dim. */
export function l2Normalize(x: Float64Array, shape: readonly number[], dim: number, eps = 1e-12): Float64Array {
  const { outer, n, inner } = around(shape, dim);
  const out = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let q = 0; q < inner; q++) {
      const at = (t: number) => (o * n + t) * inner + q;
      let s = 0;
      for (let t = 0; t < n; t++) s += x[at(t)] ** 2;
      const den = Math.max(Math.sqrt(s), eps);
      for (let t = 0; t < n; t++) out[at(t)] = x[at(t)] / den;
    }
  }
  return out;
}

/** Gradient of sum(normalize(x) * g): (g - y <y, g>) / ||x|| where ||x|| >= eps, else g / eps (clamp active). */
export function l2NormalizeBackward(x: Float64Array, shape: readonly number[], dim: number, g: Float64Array, eps = 1e-12): Float64Array {
  const { outer, n, inner } = around(shape, dim);
  const gx = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let q = 0; q < inner; q++) {
      const at = (t: number) => (o * n + t) * inner + q;
      let s = 0;
      for (let t = 0; t < n; t++) s += x[at(t)] ** 2;
      const norm = Math.sqrt(s);
      if (norm < eps) {
        for (let t = 0; t < n; t++) gx[at(t)] = g[at(t)] / eps;
        continue;
      }
      let yg = 0;
      for (let t = 0; t < n; t++) yg += (x[at(t)] / norm) * g[at(t)];
      for (let t = 0; t < n; t++) gx[at(t)] = (g[at(t)] - (x[at(t)] / norm) * yg) / norm;
    }
  }
  return gx;
}
