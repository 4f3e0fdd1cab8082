// Bind groups, made once per distinct set of bindings. A training step binds the same pooled buffers at the same
// ranges in the same order every time (and the uniform ring at the same offsets), so after the first step every
// bind group is found here instead of created again: createBindGroup was about half of the host's recording time.
// Pooled buffers live as long as the device, so a cached group never refers to a freed one; the cache is emptied
// when it grows past MAX_GROUPS (bindings that never repeat) so that it never holds many buffers alive.
const MAX_GROUPS = 8192;

export class BindGroupCache {
  private groups = new Map<string, GPUBindGroup>();
  private ids = new WeakMap<object, number>();
  private nextId = 1;
  created = 0;

  constructor(private device: GPUDevice) {}

  get(layout: GPUBindGroupLayout, entries: GPUBindGroupEntry[]): GPUBindGroup {
    let key = String(this.idOf(layout));
    for (const e of entries) {
      const r = e.resource as GPUBufferBinding;
      key += `|${e.binding}:${this.idOf(r.buffer)}:${r.offset ?? 0}:${r.size ?? -1}`;
    }
    let group = this.groups.get(key);
    if (!group) {
      if (this.groups.size >= MAX_GROUPS) this.groups.clear();
      group = this.device.createBindGroup({ layout, entries });
      this.groups.set(key, group);
      this.created++;
    }
    return group;
  }

  private idOf(o: object): number {
    let id = this.ids.get(o);
    if (id === undefined) this.ids.set(o, (id = this.nextId++));
    return id;
  }
}
