// Precomputed teacher outputs: one safetensors file per (dataset, split) holding, for every sample,
//   logits [N, K] (F32 or F16), optionally embedding [N, D] and hint.<name> [N, C, H, W] (feature maps for FitNet),
// each optionally with a leading views axis [V, N, ...]: the outputs of the teacher on V fixed views of each image
// (e.g. ["identity", "hflip"]), so that a student trained on augmented data sees exactly the view its targets came
// from (see src/data/augment.ts for the view grammar). __metadata__ identifies the data the outputs belong to:
//   format, format_version, dataset, split, count, fingerprint, num_classes, teacher, teacher_accuracy, views.
import { SafetensorsError, SafetensorsFile, SafetensorsWriter, type TensorSpec } from './safetensors.js';

export const TEACHER_OUTPUTS_FORMAT = 'wgkd-teacher-outputs';
export const TEACHER_OUTPUTS_VERSION = 1;
export const HINT_PREFIX = 'hint.';

/** What a dataset says about itself; compared with the teacher file by checkAlignment(). */
export interface DatasetIdentity {
  name: string;
  split: string;
  count: number;
  fingerprint: string;
  numClasses: number;
}

export interface TeacherOutputsMetadata {
  dataset: string;
  split: string;
  count: number;
  fingerprint: string;
  numClasses: number;
  teacher: string;
  /** Null when the file does not record it. */
  teacherAccuracy: number | null;
  views: string[];
  formatVersion: number;
  /** Every __metadata__ entry, including keys this module does not interpret. */
  raw: Readonly<Record<string, string>>;
}

/** Teacher targets for one batch, rows in the order of the requested indices. */
export interface TeacherBatch {
  /** [B * K] */
  logits: Float32Array;
  /** [B * D] when the file has an embedding and it was requested. */
  embedding?: Float32Array;
  /** hint name (without the 'hint.' prefix) -> [B * C * H * W]. */
  hints?: Record<string, Float32Array>;
}

export interface ReadBatchOptions {
  /** Read the embedding (default: when present). */
  embedding?: boolean;
  /** true: every hint (default), false: none, or the names to read. */
  hints?: boolean | readonly string[];
}

export interface AlignmentMismatch {
  field: 'dataset' | 'split' | 'N' | 'K' | 'fingerprint';
  expected: string | number;
  got: string | number;
}

export class TeacherAlignmentError extends Error {
  constructor(
    readonly file: string,
    readonly mismatches: AlignmentMismatch[],
  ) {
    const what: Record<AlignmentMismatch['field'], string> = {
      dataset: 'dataset',
      split: 'split',
      N: 'N (number of samples)',
      K: 'K (number of classes)',
      fingerprint: 'fingerprint',
    };
    const lines = mismatches.map((m) => `  ${what[m.field]}: expected ${JSON.stringify(m.expected)} (dataset), got ${JSON.stringify(m.got)} (teacher file)`);
    super(`teacher outputs ${file} do not belong to this dataset:\n${lines.join('\n')}\nRegenerate the teacher outputs for this dataset and split.`);
    this.name = 'TeacherAlignmentError';
  }
}

/** Leading dims of a teacher tensor: [N] or [V, N]. */
interface Layout {
  viewsAxis: boolean;
  rowSize: number;
}

/** An open teacher-outputs file. Random access by sample index; nothing but the header is read up front. */
export class TeacherOutputs {
  readonly metadata: TeacherOutputsMetadata;
  readonly views: string[];
  readonly count: number;
  readonly numClasses: number;
  /** Whether tensors carry a leading views axis [V, N, ...] (a single-view file may have it or not). */
  readonly hasViewsAxis: boolean;
  readonly embeddingDim: number | null;
  /** hint name (without prefix) -> [C, H, W]. */
  readonly hintShapes: Readonly<Record<string, readonly [number, number, number]>>;
  private readonly layouts = new Map<string, Layout>();

  constructor(private readonly file: SafetensorsFile) {
    const path = file.path;
    const fail = (problem: string): never => {
      throw new SafetensorsError(path, `teacher outputs: ${problem}`);
    };
    const meta = file.metadata;
    if (meta.format !== undefined && meta.format !== TEACHER_OUTPUTS_FORMAT) fail(`format is '${meta.format}', not '${TEACHER_OUTPUTS_FORMAT}'`);
    const version = Number(meta.format_version);
    if (meta.format_version === undefined) fail('no format_version in __metadata__ (not a wgkd teacher-outputs file?)');
    if (version !== TEACHER_OUTPUTS_VERSION) fail(`format_version ${meta.format_version} is not supported (this build reads ${TEACHER_OUTPUTS_VERSION})`);
    for (const key of ['dataset', 'split', 'count', 'fingerprint', 'num_classes']) {
      if (meta[key] === undefined) fail(`__metadata__ has no '${key}'`);
    }

    if (!file.has('logits')) fail(`no 'logits' tensor (tensors: ${file.names.join(', ') || 'none'})`);
    const logits = file.info('logits');
    if (logits.shape.length !== 2 && logits.shape.length !== 3) fail(`logits shape [${logits.shape}] is neither [N, K] nor [V, N, K]`);
    this.hasViewsAxis = logits.shape.length === 3;
    const lead = this.hasViewsAxis ? 2 : 1;
    const viewCount = this.hasViewsAxis ? logits.shape[0] : 1;
    this.count = logits.shape[lead - 1];
    this.numClasses = logits.shape[lead];

    let views: unknown = ['identity'];
    if (meta.views !== undefined) {
      try {
        views = JSON.parse(meta.views);
      } catch {
        fail(`views metadata ${JSON.stringify(meta.views)} is not JSON`);
      }
    }
    if (!Array.isArray(views) || !views.every((v) => typeof v === 'string')) fail(`views metadata ${meta.views} is not a JSON list of strings`);
    this.views = views as string[];
    if (this.views.length !== viewCount) {
      fail(`views metadata lists ${this.views.length} views (${meta.views}) but logits [${logits.shape}] hold ${viewCount}`);
    }

    const count = Number(meta.count);
    const numClasses = Number(meta.num_classes);
    if (count !== this.count) fail(`metadata count ${meta.count} disagrees with logits [${logits.shape}] (N = ${this.count})`);
    if (numClasses !== this.numClasses) fail(`metadata num_classes ${meta.num_classes} disagrees with logits [${logits.shape}] (K = ${this.numClasses})`);

    // Every tensor we use: float, with the same leading [V, N] (or [N]) as the logits.
    let embeddingDim: number | null = null;
    const hintShapes: Record<string, [number, number, number]> = Object.create(null); // 'hint.__proto__' is a name like any
    for (const name of file.names) {
      const info = file.info(name);
      const isHint = name.startsWith(HINT_PREFIX);
      if (name !== 'logits' && name !== 'embedding' && !isHint) continue; // unknown tensors are ignored
      const rank = (name === 'logits' || name === 'embedding' ? 1 : 3) + lead;
      if (info.shape.length !== rank) fail(`'${name}' has shape [${info.shape}]; expected rank ${rank} (${this.hasViewsAxis ? '[V, N, ...]' : '[N, ...]'})`);
      if (info.dtype !== 'F32' && info.dtype !== 'F16') fail(`'${name}' is ${info.dtype}; expected F32 or F16`);
      const leading = info.shape.slice(0, lead).join(', ');
      const expectedLeading = logits.shape.slice(0, lead).join(', ');
      if (leading !== expectedLeading) fail(`'${name}' leading dims [${leading}] differ from the logits' [${expectedLeading}]`);
      const tail = info.shape.slice(lead);
      if (name === 'embedding') embeddingDim = tail[0];
      if (isHint) hintShapes[name.slice(HINT_PREFIX.length)] = [tail[0], tail[1], tail[2]];
      this.layouts.set(name, { viewsAxis: this.hasViewsAxis, rowSize: tail.reduce((n, d) => n * d, 1) });
    }
    this.embeddingDim = embeddingDim;
    this.hintShapes = hintShapes;
    // Logits and embeddings are small enough to scan whole now; hints (possibly gigabytes) are checked as read.
    for (const name of ['logits', 'embedding']) if (this.layouts.has(name)) this.scanFinite(name);

    const accuracy = meta.teacher_accuracy;
    this.metadata = {
      dataset: meta.dataset,
      split: meta.split,
      count,
      fingerprint: meta.fingerprint,
      numClasses,
      teacher: meta.teacher ?? '',
      teacherAccuracy: accuracy === undefined || accuracy === '' ? null : Number(accuracy),
      views: this.views,
      formatVersion: version,
      raw: meta,
    };
  }

  get path(): string {
    return this.file.path;
  }

  /** Tensor names and shapes as stored. */
  get tensors(): Record<string, number[]> {
    return Object.fromEntries(this.file.names.map((n) => [n, [...this.file.info(n).shape]]));
  }

  get hintNames(): string[] {
    return Object.keys(this.hintShapes);
  }

  /**
   * Teacher outputs for samples `indices` under `view` (one view for the whole batch, or one per sample, as the
   * DataLoader reports them). Rows are read at file offsets; consecutive indices are read in one call.
   */
  readBatch(indices: ArrayLike<number>, view: number | ArrayLike<number> = 0, options: ReadBatchOptions = {}): TeacherBatch {
    const b = indices.length;
    const viewOf = typeof view === 'number' ? () => view : (i: number) => view[i];
    if (typeof view !== 'number' && view.length !== b) {
      throw new Error(`teacher outputs ${this.path}: readBatch got ${b} indices but ${view.length} views`);
    }
    // Global row of each sample in the flattened [V * N] leading axis.
    const rows = new Array<number>(b);
    for (let i = 0; i < b; i++) {
      const index = indices[i];
      const v = viewOf(i);
      if (!Number.isInteger(index) || index < 0 || index >= this.count) {
        throw new Error(`teacher outputs ${this.path}: sample index ${index} outside [0, ${this.count})`);
      }
      if (!Number.isInteger(v) || v < 0 || v >= this.views.length) {
        throw new Error(`teacher outputs ${this.path}: view ${v} outside [0, ${this.views.length}) (views: ${JSON.stringify(this.views)})`);
      }
      rows[i] = v * this.count + index;
    }

    const batch: TeacherBatch = { logits: this.readRows('logits', rows) };
    if (this.embeddingDim !== null && options.embedding !== false) batch.embedding = this.readRows('embedding', rows);
    const wanted = options.hints === false ? [] : options.hints === true || options.hints === undefined ? this.hintNames : options.hints;
    if (wanted.length > 0) {
      batch.hints = {};
      for (const hint of wanted) {
        if (!(hint in this.hintShapes)) throw new Error(`teacher outputs ${this.path}: no hint '${hint}' (hints: ${this.hintNames.join(', ') || 'none'})`);
        batch.hints[hint] = this.readRows(HINT_PREFIX + hint, rows);
      }
    }
    return batch;
  }

  /** Throws a TeacherAlignmentError listing each of dataset, split, N, K, fingerprint that differs. */
  checkAlignment(dataset: DatasetIdentity): void {
    const m = this.metadata;
    const mismatches: AlignmentMismatch[] = [];
    if (dataset.name !== m.dataset) mismatches.push({ field: 'dataset', expected: dataset.name, got: m.dataset });
    if (dataset.split !== m.split) mismatches.push({ field: 'split', expected: dataset.split, got: m.split });
    if (dataset.count !== this.count) mismatches.push({ field: 'N', expected: dataset.count, got: this.count });
    if (dataset.numClasses !== this.numClasses) mismatches.push({ field: 'K', expected: dataset.numClasses, got: this.numClasses });
    if (dataset.fingerprint !== m.fingerprint) mismatches.push({ field: 'fingerprint', expected: dataset.fingerprint, got: m.fingerprint });
    if (mismatches.length > 0) throw new TeacherAlignmentError(this.path, mismatches);
  }

  close(): void {
    this.file.close();
  }

  /** Throws naming the file, tensor, row (sample and view) and column of the first NaN or Inf in `values`. */
  private checkFinite(name: string, values: Float32Array, rowOf: (i: number) => number): void {
    for (let i = 0; i < values.length; i++) {
      if (Number.isFinite(values[i])) continue;
      const { rowSize } = this.layouts.get(name)!;
      const row = rowOf(Math.floor(i / rowSize));
      const sample = row % this.count;
      const view = Math.floor(row / this.count);
      throw new SafetensorsError(
        this.path,
        `teacher outputs: '${name}' holds ${values[i]} in row ${row} (sample ${sample}, view ${view} '${this.views[view]}'), element ${i % rowSize} of the row: ` +
          'the teacher produced non-finite outputs; regenerate the file',
      );
    }
  }

  /** Reads a whole tensor in pieces of about a million values and checks every value. */
  private scanFinite(name: string): void {
    const { rowSize } = this.layouts.get(name)!;
    const totalRows = this.views.length * this.count;
    const rowsPerPiece = Math.max(1, Math.floor((1 << 20) / Math.max(1, rowSize)));
    const piece = new Float32Array(Math.min(totalRows, rowsPerPiece) * rowSize);
    for (let start = 0; start < totalRows; start += rowsPerPiece) {
      const rows = Math.min(rowsPerPiece, totalRows - start);
      const values = piece.subarray(0, rows * rowSize);
      this.file.readElementsInto(name, start * rowSize, rows * rowSize, values, 0);
      this.checkFinite(name, values, (r) => start + r);
    }
  }

  private readRows(name: string, rows: readonly number[]): Float32Array {
    const { rowSize } = this.layouts.get(name)!;
    const out = new Float32Array(rows.length * rowSize);
    let i = 0;
    while (i < rows.length) {
      let run = 1;
      while (i + run < rows.length && rows[i + run] === rows[i] + run) run++;
      this.file.readElementsInto(name, rows[i] * rowSize, run * rowSize, out, i * rowSize);
      i += run;
    }
    if (name.startsWith(HINT_PREFIX)) this.checkFinite(name, out, (r) => rows[r]);
    return out;
  }
}

/** Opens a teacher-outputs file (header only) and validates its layout and metadata. */
export function openTeacherOutputs(path: string): TeacherOutputs {
  const file = SafetensorsFile.open(path);
  try {
    return new TeacherOutputs(file);
  } catch (err) {
    file.close();
    throw err;
  }
}

// ---- writing -----------------------------------------------------------------------------------------------

export interface TeacherOutputsLayout {
  dataset: string;
  split: string;
  fingerprint: string;
  count: number;
  numClasses: number;
  /** Free text naming the teacher (e.g. 'resnet18 resnet18_teacher.ckpt'). */
  teacher: string;
  teacherAccuracy?: number | null;
  /** View descriptions (src/data/augment.ts grammar); default ['identity']. */
  views?: string[];
  /** Store a leading views axis; default: when there is more than one view. */
  viewsAxis?: boolean;
  embeddingDim?: number;
  /** hint name (without prefix) -> [C, H, W]. */
  hints?: Record<string, readonly [number, number, number]>;
  /** Storage of logits and embedding (default F32). */
  dtype?: 'F32' | 'F16';
  /** Storage of hints (default: dtype). F16 halves the size of large feature maps. */
  hintDtype?: 'F32' | 'F16';
  /** More __metadata__ entries (e.g. image_size). */
  extraMetadata?: Record<string, string>;
}

/**
 * Writes teacher outputs batch by batch (files with feature-map hints are too large to assemble in memory).
 * Every (view, sample) row of every tensor must be written once; finish() then moves the file into place.
 */
export class TeacherOutputsWriter {
  private readonly writer: SafetensorsWriter;
  private readonly views: string[];
  private readonly rowSizes = new Map<string, number>();

  private constructor(
    readonly path: string,
    private readonly layout: TeacherOutputsLayout,
  ) {
    this.views = layout.views ?? ['identity'];
    if (this.views.length === 0) throw new Error(`teacher outputs ${path}: views must not be empty`);
    const viewsAxis = layout.viewsAxis ?? this.views.length > 1;
    if (!viewsAxis && this.views.length > 1) throw new Error(`teacher outputs ${path}: ${this.views.length} views need a views axis`);
    const lead = viewsAxis ? [this.views.length, layout.count] : [layout.count];
    const dtype = layout.dtype ?? 'F32';
    const specs: Record<string, TensorSpec> = { logits: { dtype, shape: [...lead, layout.numClasses] } };
    this.rowSizes.set('logits', layout.numClasses);
    if (layout.embeddingDim !== undefined) {
      specs.embedding = { dtype, shape: [...lead, layout.embeddingDim] };
      this.rowSizes.set('embedding', layout.embeddingDim);
    }
    for (const [name, chw] of Object.entries(layout.hints ?? {})) {
      specs[HINT_PREFIX + name] = { dtype: layout.hintDtype ?? dtype, shape: [...lead, ...chw] };
      this.rowSizes.set(HINT_PREFIX + name, chw[0] * chw[1] * chw[2]);
    }
    const metadata: Record<string, string> = {
      ...layout.extraMetadata,
      format: TEACHER_OUTPUTS_FORMAT,
      format_version: String(TEACHER_OUTPUTS_VERSION),
      dataset: layout.dataset,
      split: layout.split,
      count: String(layout.count),
      fingerprint: layout.fingerprint,
      num_classes: String(layout.numClasses),
      teacher: layout.teacher,
      teacher_accuracy: layout.teacherAccuracy === undefined || layout.teacherAccuracy === null ? '' : String(layout.teacherAccuracy),
      views: JSON.stringify(this.views),
    };
    this.writer = SafetensorsWriter.create(path, specs, metadata);
  }

  static create(path: string, layout: TeacherOutputsLayout): TeacherOutputsWriter {
    return new TeacherOutputsWriter(path, layout);
  }

  /** Writes the outputs of samples [start, start + B) under view `view`; B = logits.length / K. */
  write(start: number, view: number, batch: TeacherBatch): void {
    const { count, numClasses } = this.layout;
    const b = batch.logits.length / numClasses;
    if (!Number.isInteger(b)) throw new Error(`teacher outputs ${this.path}: ${batch.logits.length} logits is not a multiple of K = ${numClasses}`);
    if (!Number.isInteger(view) || view < 0 || view >= this.views.length) throw new Error(`teacher outputs ${this.path}: view ${view} outside [0, ${this.views.length})`);
    if (start < 0 || start + b > count) throw new Error(`teacher outputs ${this.path}: samples [${start}, ${start + b}) outside [0, ${count})`);
    // Check every part first, so a rejected batch writes nothing.
    const parts: [name: string, data: Float32Array, rowSize: number][] = [];
    const check = (name: string, data: Float32Array | undefined, label: string): void => {
      const rowSize = this.rowSizes.get(name);
      if (rowSize === undefined) {
        if (data !== undefined) throw new Error(`teacher outputs ${this.path}: ${label} given but not declared in the layout`);
        return;
      }
      if (data === undefined) throw new Error(`teacher outputs ${this.path}: ${label} missing from the batch`);
      if (data.length !== b * rowSize) throw new Error(`teacher outputs ${this.path}: ${label} has ${data.length} values, expected ${b} x ${rowSize}`);
      parts.push([name, data, rowSize]);
    };
    check('logits', batch.logits, 'logits');
    check('embedding', batch.embedding, 'embedding');
    const hints = batch.hints ?? {};
    for (const name of Object.keys(hints)) {
      if (!this.rowSizes.has(HINT_PREFIX + name)) throw new Error(`teacher outputs ${this.path}: hint '${name}' not declared in the layout`);
    }
    for (const name of Object.keys(this.layout.hints ?? {})) check(HINT_PREFIX + name, hints[name], `hint '${name}'`);
    for (const [name, data, rowSize] of parts) this.writer.writeElements(name, (view * count + start) * rowSize, data);
  }

  finish(): void {
    this.writer.finish();
  }

  abort(): void {
    this.writer.abort();
  }
}

export interface TeacherOutputsData extends TeacherOutputsLayout {
  /** [V * N * K], view-major. */
  logits: Float32Array;
  /** [V * N * D]; requires embeddingDim. */
  embedding?: Float32Array;
  /** name -> [V * N * C * H * W]; shapes in `hints` of the layout. */
  hintData?: Record<string, Float32Array>;
}

/** Writes a whole teacher-outputs file from arrays in memory (small datasets, tests). Atomic. */
export function writeTeacherOutputs(path: string, data: TeacherOutputsData): void {
  const writer = TeacherOutputsWriter.create(path, data);
  try {
    const views = (data.views ?? ['identity']).length;
    const n = data.count;
    const expectLength = (label: string, values: Float32Array | undefined, rowSize: number): void => {
      if (values && values.length !== views * n * rowSize) {
        throw new Error(`teacher outputs ${path}: ${label} has ${values.length} values, expected ${views} x ${n} x ${rowSize} (V x N x row)`);
      }
    };
    expectLength('logits', data.logits, data.numClasses);
    if (data.embedding && data.embeddingDim === undefined) throw new Error(`teacher outputs ${path}: embedding given without embeddingDim`);
    expectLength('embedding', data.embedding, data.embeddingDim ?? 0);
    for (const [name, chw] of Object.entries(data.hints ?? {})) expectLength(`hint '${name}'`, data.hintData?.[name], chw[0] * chw[1] * chw[2]);
    const slice = (values: Float32Array | undefined, rowSize: number, v: number): Float32Array | undefined =>
      values?.subarray(v * n * rowSize, (v + 1) * n * rowSize);
    for (let v = 0; v < views; v++) {
      const hints: Record<string, Float32Array> = {};
      for (const [name, chw] of Object.entries(data.hints ?? {})) {
        const values = data.hintData?.[name];
        if (!values) throw new Error(`teacher outputs ${path}: hint '${name}' has a shape but no hintData`);
        hints[name] = slice(values, chw[0] * chw[1] * chw[2], v)!;
      }
      writer.write(0, v, {
        logits: slice(data.logits, data.numClasses, v)!,
        embedding: data.embeddingDim === undefined ? undefined : slice(data.embedding, data.embeddingDim, v),
        hints,
      });
    }
  } catch (err) {
    writer.abort();
    throw err;
  }
  writer.finish();
}
