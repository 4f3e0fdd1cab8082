// The GPU runtime: command batching, pooling without leaks, and errors that say what went wrong.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Device, NoAdapterError, Tensor, add, mean, mul, relu, scope, sub, sum, zeroGrad } from '../src/index.js';
import { useDevice } from './helpers/device.js';

const device = useDevice();

/** One training-like iteration of the first ops: forward, backward, an SGD-like update, the loss read back. */
async function iteration(w: Tensor, b: Tensor, x: Tensor): Promise<number> {
  return scope(async () => {
    const loss = mean(relu(add(mul(x, w), b)));
    loss.backward();
    const value = await loss.item();
    zeroGrad([w, b]);
    return value;
  });
}

describe('command batching and the buffer pool', () => {
  it('1,000 forward+backward iterations keep the live-buffer count flat, with one submit each', async () => {
    const dev = device();
    const x = Tensor.randn([8, 3, 5, 5], { seed: 1 });
    const w = Tensor.randn([1, 3, 1, 1], { seed: 2, requiresGrad: true });
    const b = Tensor.randn([1, 3, 1, 1], { seed: 3, requiresGrad: true });

    // Instrument the queue: count every submit that reaches Dawn.
    let submits = 0;
    const realSubmit = dev.queue.submit.bind(dev.queue);
    dev.queue.submit = (buffers: Iterable<GPUCommandBuffer>) => {
      submits++;
      realSubmit(buffers);
    };
    try {
      for (let i = 0; i < 10; i++) await iteration(w, b, x); // warm the pool and the pipeline cache
      const liveBefore = dev.poolStats().live;
      const createdBefore = dev.poolStats().created;
      const submitsBefore = submits;
      const liveSamples: number[] = [];
      for (let i = 0; i < 1000; i++) {
        await iteration(w, b, x);
        if (i % 100 === 99) liveSamples.push(dev.poolStats().live);
      }
      expect(submits - submitsBefore).toBe(1000); // exactly one submit per iteration
      expect(liveSamples.every((n) => n === liveBefore)).toBe(true); // no tensor leaks
      // Buffers are recycled, not created anew: at most a handful beyond the warm-up (completion timing varies).
      expect(dev.poolStats().created - createdBefore).toBeLessThan(20);
    } finally {
      dev.queue.submit = realSubmit;
    }
  });

  it('records without submitting until a readback', async () => {
    const dev = device();
    const before = dev.counters.submits;
    const a = Tensor.ones([100]);
    const c = add(mul(a, a), a);
    expect(dev.counters.submits).toBe(before);
    expect(Array.from(await c.toArray()).every((v) => v === 2)).toBe(true);
    expect(dev.counters.submits).toBe(before + 1);
  });

  it('reuses a released buffer only after the submit that used it completed', async () => {
    const dev = device();
    await dev.sync();
    const a = Tensor.full([1000], 3);
    const b = relu(a); // recorded, not submitted
    const buffer = a.buffer;
    a.dispose(); // the open encoder still reads it
    const c = Tensor.fromArray(new Float32Array(1000).fill(7)); // writeBuffer: must not land in a's buffer
    expect(c.buffer).not.toBe(buffer);
    expect(Array.from(await b.toArray()).every((v) => v === 3)).toBe(true);
    await dev.sync();
    expect(dev.poolStats().pending).toBe(0);
  });

  it('pipelines are created once per (shader, entry, constants)', async () => {
    const dev = device();
    const x = Tensor.ones([10]);
    add(x, x);
    const created = dev.shaders.pipelinesCreated;
    for (let i = 0; i < 20; i++) add(sub(x, x), x);
    await dev.sync();
    expect(dev.shaders.pipelinesCreated).toBe(created + 1); // only sub was new
  });

  it("a bucket's oldest free buffer goes out first, so a repeated step gets the same buffers", async () => {
    const dev = device();
    await dev.sync();
    const step = () => [Tensor.full([3000], 1), Tensor.full([3000], 2), Tensor.full([3000], 3)];
    const first = step();
    const buffers = first.map((t) => t.buffer);
    for (const t of [first[1], first[2], first[0]]) t.dispose(); // released out of order
    await dev.sync();
    const again = step();
    expect(again.map((t) => t.buffer)).toEqual(buffers);
    for (const t of again) t.dispose();
  });

  it('bind groups are made once per distinct set of bindings', async () => {
    const dev = device();
    const x = Tensor.ones([64]);
    const y = Tensor.full([64], 2);
    await dev.sync();
    add(x, y).dispose(); // the first: its uniforms at the ring's start, as in every iteration below
    await dev.sync();
    const made = dev.bindGroups.created;
    for (let i = 0; i < 5; i++) {
      const out = add(x, y);
      await dev.sync();
      out.dispose(); // the next iteration's output gets the same buffer: the same bindings
    }
    expect(dev.bindGroups.created).toBe(made);
    const z = add(y, x); // other bindings: a new group
    expect(Array.from(await z.toArray()).every((v) => v === 3)).toBe(true);
    expect(dev.bindGroups.created).toBe(made + 1);
  });
});

describe('tensor lifetime', () => {
  it('scope frees temporaries and keeps what it returns', async () => {
    const dev = device();
    const liveBefore = dev.poolStats().live;
    const kept = scope(() => {
      const a = Tensor.ones([10]);
      const b = add(a, a);
      return mul(b, b);
    });
    expect(dev.poolStats().live).toBe(liveBefore + 1);
    expect(Array.from(await kept.toArray())).toEqual(new Array(10).fill(4));
    kept.dispose();
    expect(dev.poolStats().live).toBe(liveBefore);
  });

  it('a view shares storage and outlives the tensor it came from', async () => {
    const a = Tensor.fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    const v = a.reshape([3, -1]);
    expect(v.shape).toEqual([3, 2]);
    expect(v.buffer).toBe(a.buffer);
    a.dispose();
    expect(Array.from(await v.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => a.reshape([6])).toThrow(/used after dispose/);
  });
});

describe('errors that say what is wrong', () => {
  it('shape mismatch names both shapes', () => {
    expect(() => add(Tensor.zeros([2, 3]), Tensor.zeros([3, 2]))).toThrow(/\[2, 3\] and \[3, 2\]/);
    expect(() => Tensor.fromArray([1, 2, 3], [2, 2])).toThrow(/3 values do not fill shape \[2, 2\]/);
    expect(() => Tensor.zeros([2, 3]).reshape([4, 2])).toThrow(/cannot reshape 6 elements to \[4, 2\]/);
    expect(() => sum(Tensor.zeros([2]), 3)).toThrow(/axis 3 out of range/);
  });

  it('wrong bindings name the shader, entry, binding and access', () => {
    const dev = device();
    const x = Tensor.zeros([4]);
    const out = Tensor.zeros([4]);
    expect(() => dev.dispatch('activation', 'relu_forward', { bindings: { x }, params: { n: 4 }, workgroups: 1 })).toThrow(
      /activation\.wgsl:relu_forward: binding 'out' \(storage, read_write, array<f32>\) not given/,
    );
    expect(() => dev.dispatch('activation', 'relu_forward', { bindings: { x, out, y: x }, params: { n: 4 }, workgroups: 1 })).toThrow(
      /no storage binding 'y' \(expects: .*x \(read\)/,
    );
    expect(() => dev.dispatch('activation', 'relu_forward', { bindings: { x, out: x }, params: { n: 4 }, workgroups: 1 })).toThrow(
      /binding 'out' \(storage, read_write\) aliases 'x'/,
    );
    const labels = Tensor.fromArray([1, 2, 3, 4], [4], { dtype: 'i32' });
    expect(() => dev.dispatch('activation', 'relu_forward', { bindings: { x: labels, out }, params: { n: 4 }, workgroups: 1 })).toThrow(
      /binding 'x' expects array<f32>, got a i32 tensor/,
    );
    expect(() => dev.dispatch('activation', 'relu_forward', { bindings: { x, out }, params: {}, workgroups: 1 })).toThrow(
      /uniform 'p': field 'n' \(u32\) not given/,
    );
    expect(() => dev.dispatch('activation', 'nope', { bindings: {}, workgroups: 1 })).toThrow(/no compute entry point 'nope' \(has: relu_forward, relu_backward\)/);
    expect(() => dev.dispatch('nope', 'x', { bindings: {}, workgroups: 1 })).toThrow(/unknown shader 'nope'/);
  });

  it('a WGSL syntax error names the file and line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wgkd-wgsl-'));
    const file = join(dir, 'broken.wgsl');
    writeFileSync(file, '// line 1\n@compute @workgroup_size(1)\nfn main() {\n  let x = ;\n}\n');
    await expect(device().shaders.loadFile(file)).rejects.toThrow(/broken\.wgsl:4:\d+: error: /);
    // In a shader directory, the broken file fails only the ops that use it, with the same message.
    writeFileSync(join(dir, 'fine.wgsl'), '@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(1)\nfn main() { out[0] = 1.0; }\n');
    const dev = await Device.open({ extraShaderDirs: [dir] });
    try {
      expect(() => dev.dispatch('broken', 'main', { bindings: {}, workgroups: 1 })).toThrow(/broken\.wgsl:4:\d+: error: /);
      const out = Tensor.zeros([1], { device: dev });
      dev.dispatch('fine', 'main', { bindings: { out }, workgroups: 1 });
      expect(await out.item()).toBe(1);
      expect([...dev.shaders.errors().keys()]).toContain('broken');
    } finally {
      dev.destroy();
    }
  });

  it('no adapter is an actionable error', async () => {
    const err = await Device.open({ adapter: 'no-such-adapter-wgkd' }).then(
      (d) => {
        d.destroy();
        return null;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NoAdapterError);
    expect(String(err)).toMatch(/no WebGPU adapter found.*\n.*npm run setup/);
  });
});
