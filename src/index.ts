// wgkd's public API.
export { Device, getDevice, NoAdapterError, type DeviceOptions, type AdapterSummary, type BufferLike } from './gpu/device.js';
export { ShaderCompileError } from './gpu/shaders.js';
export { Tensor, scope, keep, tensor, empty, zeros, ones, full, rand, randn, rng, type DType, type Shape } from './tensor.js';
export { backward, noGrad, isGradEnabled, record, zeroGrad, type Node, type BackwardFn } from './autograd/tape.js';
export * from './ops/elementwise.js';
export * from './ops/reduce.js';
export * from './ops/activation.js';
