// Float64 CPU reference helpers: plain loops, written for clarity, not speed.

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  return shape.reduce((n, d) => n * d, 1);
}

export function strides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

/** Coordinates of flat index i in shape. */
export function unravel(i: number, shape: Shape): number[] {
  const coords = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    coords[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return coords;
}

export function ravel(coords: readonly number[], shape: Shape): number {
  let i = 0;
  for (let d = 0; d < shape.length; d++) i = i * shape[d] + coords[d];
  return i;
}

export function broadcastShape(a: Shape, b: Shape): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error('shapes do not broadcast');
    out.push(Math.max(da, db));
  }
  return out;
}

/** Flat index into `shape` of the element that broadcasting maps output coordinates `coords` to. */
export function broadcastIndex(coords: readonly number[], shape: Shape): number {
  const offset = coords.length - shape.length;
  let i = 0;
  for (let d = 0; d < shape.length; d++) i = i * shape[d] + (shape[d] === 1 ? 0 : coords[d + offset]);
  return i;
}
