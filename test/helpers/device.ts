// Opens one device per test file. No adapter is a failing test with the setup hint, never a silent skip.
import { afterAll, beforeAll } from 'vitest';
import { Device, type DeviceOptions } from '../../src/index.js';

export function useDevice(options: DeviceOptions = {}): () => Device {
  let dev: Device | null = null;
  beforeAll(async () => {
    dev = await Device.open(options);
  });
  afterAll(() => {
    dev?.destroy();
    dev = null;
  });
  return () => {
    if (!dev) throw new Error('device not open (Device.open failed in beforeAll; see the error above)');
    return dev;
  };
}
