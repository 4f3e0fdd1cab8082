// conv2d benchmarks: the convolution layers of a depthwise-separable student at batch 64, for 28x28 (1 channel),
// 64x64 and 224x224 (3 channels) inputs. Stem conv 3x3 pad 1 (Cin -> 32, stride 1 at 28, stride 2 at 64/224),
// then depthwise 3x3 pad 1 + pointwise blocks 32->64 at S, 64->128 at S/2, 128->256 at S/4 (S: size after the
// stem; each block's depthwise runs at the block's resolution). Forward and backward (dX + dW + db) are timed
// separately (for the stems also dW + db alone, what training runs); the note column gives the path and the
// backward/forward time ratio.
import type { Device } from '../../src/gpu/device.js';
import { Tensor } from '../../src/tensor.js';
import { conv2d, type Conv2dOptions } from '../../src/ops/conv.js';
import { timeGpu, type Row } from '../harness.js';

interface Layer {
  name: string;
  x: [number, number, number, number];
  weight: [number, number, number, number];
  options: Conv2dOptions;
  path: string;
}

const BATCH = 64;

function layersFor(size: number, channels: number): Layer[] {
  const stemStride = size === 28 ? 1 : 2;
  const s = size / stemStride;
  const layers: Layer[] = [
    { name: 'stem 3x3', x: [BATCH, channels, size, size], weight: [32, channels, 3, 3], options: { stride: stemStride, padding: 1 }, path: channels === 1 ? 'stem' : 'general' },
  ];
  const blocks: [number, number, number][] = [[32, 64, s], [64, 128, s / 2], [128, 256, s / 4]];
  for (const [cin, cout, at] of blocks) {
    layers.push({ name: `depthwise 3x3 ${cin}`, x: [BATCH, cin, at, at], weight: [cin, 1, 3, 3], options: { padding: 1, groups: cin }, path: 'depthwise' });
    layers.push({ name: `pointwise ${cin}->${cout}`, x: [BATCH, cin, at, at], weight: [cout, cin, 1, 1], options: {}, path: 'pointwise' });
  }
  return layers;
}

function outputSize(l: Layer): [number, number] {
  const stride = (l.options.stride as number | undefined) ?? 1;
  const pad = (l.options.padding as number | undefined) ?? 0;
  const [, , h, w] = l.x;
  const [, , kh, kw] = l.weight;
  return [Math.floor((h + 2 * pad - kh) / stride) + 1, Math.floor((w + 2 * pad - kw) / stride) + 1];
}

export async function run(dev: Device): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [size, channels] of [[28, 1], [64, 3], [224, 3]] as const) {
    // 224x224 layers take seconds per call on a software adapter: fewer repeats, same shapes.
    const opts = size === 224 ? { warmup: 1, repeats: 3, inner: 1 } : size === 64 ? { warmup: 1, repeats: 3, inner: 1 } : { warmup: 1, repeats: 3, inner: 2 };
    for (const l of layersFor(size, channels)) {
      const x = Tensor.randn(l.x, { seed: 1, requiresGrad: true });
      const weight = Tensor.randn(l.weight, { seed: 2, std: 0.1, requiresGrad: true });
      const bias = Tensor.randn([l.weight[0]], { seed: 3, requiresGrad: true });
      const [oh, ow] = outputSize(l);
      const [n, c, h, w] = l.x;
      const [o, cg, kh, kw] = l.weight;
      const macs = n * o * oh * ow * cg * kh * kw;
      const shape = `x[${l.x}] w[${l.weight}]${l.options.stride === 2 ? ' s2' : ''}`;
      const fwd = await timeGpu(dev, () => conv2d(x, weight, bias, l.options), opts);
      const out = conv2d(x, weight, bias, l.options);
      const gOut = Tensor.randn(out.shape, { seed: 4 });
      const node = out.node!;
      const bwd = await timeGpu(dev, () => node.backward(gOut), opts);
      const xBytes = n * c * h * w * 4;
      const outBytes = n * o * oh * ow * 4;
      const wBytes = o * cg * kh * kw * 4;
      rows.push({ name: `conv2d fwd ${l.name} @${size}`, shape, ms: fwd.medianMs, flops: 2 * macs, bytes: xBytes + wBytes + outBytes, note: l.path });
      rows.push({
        name: `conv2d bwd ${l.name} @${size}`,
        shape,
        ms: bwd.medianMs,
        flops: 4 * macs, // dX and dW, each as many multiply-adds as the forward
        bytes: 2 * outBytes + 2 * xBytes + 2 * wBytes, // read g (twice), read x, write dx, read w, write dw
        note: `${l.path}, bwd/fwd ${(bwd.medianMs / fwd.medianMs).toFixed(2)}x`,
      });
      if (l.name.startsWith('stem')) {
        // Training never needs the stem's input gradient (the images do not require grad): time dW + db alone too.
        const frozenInput = x.detach();
        const outW = conv2d(frozenInput, weight, bias, l.options);
        const nodeW = outW.node!;
        const bwdW = await timeGpu(dev, () => nodeW.backward(gOut), opts);
        rows.push({
          name: `conv2d bwd dW+db ${l.name} @${size}`,
          shape,
          ms: bwdW.medianMs,
          flops: 2 * macs,
          bytes: outBytes + xBytes + wBytes,
          note: `${l.path}, as in training, bwd/fwd ${(bwdW.medianMs / fwd.medianMs).toFixed(2)}x`,
        });
        for (const t of [frozenInput, outW]) t.dispose();
      }
      for (const t of [x, weight, bias, out, gOut]) t.dispose();
      await dev.sync();
    }
  }
  return rows;
}
