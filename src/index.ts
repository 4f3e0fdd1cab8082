/// <reference types="@webgpu/types" />
// wgkd's public API.
export { Device, getDevice, NoAdapterError, type DeviceOptions, type AdapterSummary, type BufferLike, type DispatchArgs } from './gpu/device.js';
export { ShaderCompileError } from './gpu/shaders.js';
export { Tensor, scope, keep, tensor, empty, zeros, ones, full, rand, randn, type DType, type Shape } from './tensor.js';
export { rng, mixSeed, seededPermutation } from './random.js';
export { backward, noGrad, isGradEnabled, record, zeroGrad, type Node, type BackwardFn } from './autograd/tape.js';

// ops
export * from './ops/elementwise.js';
export * from './ops/reduce.js';
export * from './ops/activation.js';
export * from './ops/matmul.js';
export * from './ops/conv.js';
export * from './ops/batchnorm.js';
export * from './ops/pool.js';
export * from './ops/softmax.js';
export * from './ops/loss.js';
export * from './ops/relational.js';
export { zeroFlat, gradNormAndClipCoef, sgdUpdate, adamUpdate, normPartialCount, type SgdUpdate, type AdamUpdate } from './ops/optim.js';

// nn and models
export * from './nn/module.js';
export * from './nn/layers.js';
export * from './nn/conv-transpose.js';
export * from './models/classifier.js';
export * from './models/hw13.js';
export * from './models/dwpw.js';
export * from './models/resnet.js';
export * from './models/registry.js';

// distillation, teacher outputs, data, training
export * from './kd/recipe.js';
export * from './io/atomic.js';
export * from './teacher/safetensors.js';
export * from './teacher/outputs.js';
export * from './teacher/export.js';
export * from './teacher/torch.js';
export { SHIPPED_TEACHER, fashionMnistTeacher, type ShippedTeacher, type ShippedTeacherOptions } from './teacher/shipped.js';
export * from './data/dataset.js';
export * from './data/idx.js';
export * from './data/fashion-mnist.js';
export * from './data/food11.js';
export * from './data/cache.js';
export * from './data/augment.js';
export * from './data/loader.js';
export * from './data/open.js';
export { Optimizer, SGD, Adam, AdamW, type SGDOptions, type AdamOptions, type OptimizerState, type HyperParams } from './train/optim.js';
export { lrAt, makeSchedule, constantLR, cosineLR, stepLR, type ScheduleConfig, type LRSchedule } from './train/schedule.js';
export * from './train/trainer.js';
export * from './train/evaluate.js';
export * from './train/checkpoint.js';
export { Progress } from './train/progress.js';
export { plotRun, lineChartSvg, confusionSvg, writePng, readMetrics, type LineChart, type ConfusionChart } from './train/plots.js';
export { profile, startProfile, instrumentModules, PROFILING_DAWN_FLAGS, type StepProfile, type ProfileOptions } from './profile/profile.js';
export { profileTraining, type ProfileTrainingOptions } from './profile/run.js';
export { roofline, measureRoofline, formatRoofline, type Roofline } from './profile/roofline.js';
export { summarize, formatReport, type ProfileSummary } from './profile/report.js';
export { chromeTrace } from './profile/trace.js';
export { writeTimeline, timelineSvg } from './profile/timeline.js';
export { withLabel, type DispatchLabel, type Phase } from './gpu/labels.js';
export type { DispatchRecord, DispatchCost } from './gpu/profiler.js';
export * from './models/json-student.js';
export * from './models/architecture.js';
export * from './models/onnx-graph.js';
export * from './io/onnx.js';
export { autotunePending, autotuneEnabled, pendingTunes } from './gpu/autotune.js';
