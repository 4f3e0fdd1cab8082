// Activations: relu. Forward and backward side by side.
import { record } from '../autograd/tape.js';
import { Tensor } from '../tensor.js';

const WG = 256;

export function relu(x: Tensor): Tensor {
  const out = Tensor.empty(x.shape, { device: x.device });
  if (x.numel > 0) {
    x.device.dispatch('activation', 'relu_forward', { bindings: { x, out }, params: { n: x.numel }, workgroups: Math.ceil(x.numel / WG) });
  }
  return record(out, 'relu', [x], (g) => {
    const gx = Tensor.empty(x.shape, { device: x.device });
    if (x.numel > 0) {
      x.device.dispatch('activation', 'relu_backward', {
        bindings: { x, grad_out: g, out: gx },
        params: { n: x.numel },
        workgroups: Math.ceil(x.numel / WG),
      });
    }
    return [gx];
  });
}
