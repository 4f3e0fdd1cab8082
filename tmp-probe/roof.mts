import { Device } from '../src/gpu/device.ts';
import { measureRoofline, formatRoofline } from '../src/profile/roofline.ts';
const dev = await Device.open({ dawnFlags: ['disable-dawn-features=timestamp_quantization'] });
const r = await measureRoofline(dev, console.log);
console.log(formatRoofline(r));
dev.destroy();
