// `wgkd info`: what the adapter is and what the device was created with.
import type { Device } from '../gpu/device.js';

export function describeAdapter(dev: Device, options: { limits?: boolean } = {}): string {
  const s = dev.summary;
  const lines = [
    `adapter      ${s.description || s.device || '(no description)'}`,
    `vendor       ${s.vendor || '?'}   architecture ${s.architecture || '?'}   device ${s.device || '?'}`,
    `backend      ${s.backend === 'default' ? "Dawn's default (Vulkan on Linux, Metal on macOS, D3D12 on Windows)" : s.backend}`,
    `software     ${s.software ? 'yes (a CPU implementation: correct, slow)' : 'no (hardware GPU)'}`,
    `features     timestamp-query ${yes(s.features, 'timestamp-query')}, shader-f16 ${yes(s.features, 'shader-f16')}, subgroups ${yes(s.features, 'subgroups')}`,
  ];
  if (options.limits !== false) {
    lines.push('limits (as requested from the adapter):');
    for (const [k, v] of Object.entries(s.limits)) lines.push(`  ${k.padEnd(44)} ${v}`);
  }
  return lines.join('\n');
}

function yes(features: string[], name: string): string {
  return features.includes(name) ? 'yes' : 'no';
}
