// Float64 references for activations.
export function relu(x: Float64Array): Float64Array {
  return x.map((v) => Math.max(v, 0));
}
export function reluBackward(x: Float64Array, g: Float64Array): Float64Array {
  return x.map((v, i) => (v > 0 ? g[i] : 0));
}
