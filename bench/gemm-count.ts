// Runs one GEMM shape of the student a few times on one kernel, for instruction counts under callgrind (load-
// independent, unlike timings on a shared machine). bench/count.sh drives it: valgrind starts with
// instrumentation off, this script compiles the pipeline and says READY, the driver turns instrumentation on and
// creates the go-file, the timed repetitions run, DONE, instrumentation off; the count is that of lavapipe's compute
// threads in that window, per repetition:
//   bash bench/count.sh bench/gemm-count.ts pw-fwd:64x128x49x128 subgroup
//   bash bench/count.sh bench/gemm-count.ts pw-fwd:64x128x49x128 subgroup:rg4,c4,ku4,fold
// Shapes: pw-fwd:B x O x HW x C (out[b] = W @ x[b]), pw-dx:B x O x HW x C (dx[b] = Wᵀ @ gy[b]),
// pw-dw:B x O x HW x C (dW[b] = gy[b] @ x[b]ᵀ), linear:rows x out x in.
import { handshake } from './handshake.js';
import { Device } from '../src/gpu/device.js';
import { Tensor } from '../src/tensor.js';
import { gemmWith, type GemmArgs, type GemmKernel, type SubgroupTile } from '../src/ops/matmul.js';

function argsFor(spec: string): GemmArgs {
  const [kind, dims] = spec.split(':');
  const [d0, d1, d2, d3] = dims.split('x').map(Number);
  const t = (n: number) => Tensor.randn([n], { seed: n });
  if (kind === 'linear') {
    const [rows, outF, inF] = [d0, d1, d2];
    return { a: t(rows * inF), b: t(outF * inF), out: Tensor.empty([rows * outF]), batch: 1, m: rows, n: outF, k: inF, aStrides: [0, inF, 1], bStrides: [0, 1, inF] };
  }
  const [batch, o, hw, c] = [d0, d1, d2, d3];
  if (kind === 'pw-fwd') {
    return { a: t(o * c), b: t(batch * c * hw), out: Tensor.empty([batch * o * hw]), batch, m: o, n: hw, k: c, aStrides: [0, c, 1], bStrides: [c * hw, hw, 1] };
  }
  if (kind === 'pw-dx') {
    return { a: t(o * c), b: t(batch * o * hw), out: Tensor.empty([batch * c * hw]), batch, m: c, n: hw, k: o, aStrides: [0, 1, c], bStrides: [o * hw, hw, 1] };
  }
  if (kind === 'pw-dw') {
    return { a: t(batch * o * hw), b: t(batch * c * hw), out: Tensor.empty([batch * o * c]), batch, m: o, n: c, k: hw, aStrides: [o * hw, hw, 1], bStrides: [c * hw, 1, hw] };
  }
  throw new Error(`gemm-count: unknown shape kind "${kind}" in ${spec}`);
}

const [spec, kernelText, repsText, goFile] = process.argv.slice(2);
// A kernel name, or subgroup:TILE with TILE like rg4,c2,ku4,l64,swap,fold,v4 (a subgroup tile; unnamed parts default).
const [kernel, tileText] = kernelText.split(':') as [GemmKernel, string | undefined];
let tile: SubgroupTile | undefined;
if (tileText) {
  const parts = tileText.split(',');
  const num = (key: string, fallback: number) => Number(parts.find((t) => t.startsWith(key) && /\d/.test(t.slice(key.length)))?.slice(key.length) ?? fallback);
  tile = {
    rowGroups: num('rg', 4) as SubgroupTile['rowGroups'], cols: num('c', 2) as SubgroupTile['cols'], ku: num('ku', 1) as SubgroupTile['ku'],
    lanes: num('l', 64) as SubgroupTile['lanes'], swap: parts.includes('swap'), fold: parts.includes('fold'), vec: parts.includes('v4'),
  };
}
const dev = await Device.open();
const args = argsFor(spec);
gemmWith(dev, args, kernel, tile); // compiles the pipeline
await dev.sync();
const reps = Number(repsText ?? 1);
// With a go-file: say READY, wait until it exists (the driver turns callgrind's instrumentation on), run, say DONE.
if (goFile) await handshake('READY', goFile);
for (let i = 0; i < reps; i++) {
  gemmWith(dev, args, kernel, tile);
  await dev.sync();
}
if (goFile) await handshake('DONE', `${goFile}.done`);
dev.destroy();
