import { describe, it } from 'vitest';
import { relu } from '../src/index.js';
import { checkOp } from './helpers/check.js';
import { useDevice } from './helpers/device.js';
import * as ref from './reference/activation.js';

useDevice();

describe('relu (tolerance: exact up to rel 1e-7)', () => {
  for (const shape of [[1], [7], [2, 3, 13, 13], [1, 5, 29, 7]]) {
    it(`relu [${shape}]`, async () => {
      await checkOp({
        name: 'relu',
        inputs: { x: { shape } },
        gpu: (t) => relu(t.x),
        ref: (x) => ref.relu(x.x),
        refBackward: (x, g) => ({ x: ref.reluBackward(x.x, g) }),
        tol: { fwd: 1e-7, bwd: 1e-7 },
      });
    });
  }
});
