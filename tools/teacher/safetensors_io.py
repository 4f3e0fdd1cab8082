"""safetensors read and written by hand (numpy only), shared by convert_checkpoint.py and export_outputs.py.

Layout (the same as src/teacher/safetensors.ts): an 8-byte little-endian header length L, then L bytes of UTF-8
JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {key: string}}, then the data area: raw
little-endian tensors, offsets relative to its start, packed in header order with no holes. The JSON is padded with
spaces so the data area starts 8-byte aligned, as the reference writer does.

Files are written atomically: into a temporary file next to the destination, fsync'ed, then renamed over it, so an
error or a crash leaves either the old file or the complete new one.
"""

import json
import os
import struct

import numpy as np

# safetensors dtype -> little-endian numpy dtype
DTYPES = {
    'F64': np.dtype('<f8'),
    'F32': np.dtype('<f4'),
    'F16': np.dtype('<f2'),
    'I64': np.dtype('<i8'),
    'I32': np.dtype('<i4'),
    'I16': np.dtype('<i2'),
    'I8': np.dtype('i1'),
    'U8': np.dtype('u1'),
    'BOOL': np.dtype('?'),
}

# The reference implementation refuses larger headers as corrupt; so do we.
MAX_HEADER_BYTES = 100_000_000


class SafetensorsError(Exception):
    pass


def _temp_path(target):
    folder, base = os.path.split(os.path.abspath(target))
    return os.path.join(folder, '.%s.%d.tmp' % (base, os.getpid()))


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some platforms cannot fsync a folder; the rename is still atomic
    finally:
        os.close(fd)


def _header_bytes(specs, metadata):
    """specs: list of (name, dtype, shape) in data order. Returns (header bytes incl. length prefix, offsets)."""
    header = {}
    if metadata:
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise SafetensorsError('metadata %r must be a string, got %s' % (key, type(value).__name__))
        header['__metadata__'] = dict(metadata)
    offsets = {}
    offset = 0
    for name, dtype, shape in specs:
        if name == '__metadata__':
            raise SafetensorsError("'__metadata__' is reserved and cannot name a tensor")
        if name in offsets:
            raise SafetensorsError('tensor %r given twice' % name)
        if dtype not in DTYPES:
            raise SafetensorsError('tensor %r: unknown dtype %r (supported: %s)' % (name, dtype, ', '.join(DTYPES)))
        shape = [int(d) for d in shape]
        if any(d < 0 for d in shape):
            raise SafetensorsError('tensor %r: bad shape %r' % (name, shape))
        nbytes = int(np.prod(shape, dtype=np.int64)) * DTYPES[dtype].itemsize
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [offset, offset + nbytes]}
        offsets[name] = (offset, nbytes, shape, dtype)
        offset += nbytes
    text = json.dumps(header, separators=(',', ':'), ensure_ascii=False).encode('utf-8')
    text += b' ' * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack('<Q', len(text)) + text, offsets, offset


class SafetensorsWriter:
    """Writes a safetensors file piece by piece at known offsets (outputs too large to hold in memory).

    The layout is fixed by `specs` ([(name, dtype, shape)] in data order); every element must be written exactly
    once before finish(), which renames the temporary file into place. abort() leaves no file behind.
    """

    def __init__(self, path, specs, metadata=None):
        self.path = path
        header, self._tensors, data_size = _header_bytes(specs, metadata or {})
        self._data_start = len(header)
        self._written = {name: [] for name in self._tensors}
        self._temp = _temp_path(path)
        self._file = open(self._temp, 'wb')
        try:
            self._file.write(header)
            self._file.truncate(self._data_start + data_size)
        except BaseException:
            self.abort()
            raise

    def write_elements(self, name, elem_start, values):
        """Writes `values` (any shape, converted to the tensor's dtype) as elements [elem_start, elem_start + n)."""
        if name not in self._tensors:
            raise SafetensorsError('%s: no tensor %r in the layout (%s)' % (self.path, name, ', '.join(self._tensors)))
        offset, nbytes, shape, dtype = self._tensors[name]
        np_dtype = DTYPES[dtype]
        data = np.ascontiguousarray(np.asarray(values).reshape(-1), dtype=np_dtype)
        numel = nbytes // np_dtype.itemsize
        if elem_start < 0 or elem_start + data.size > numel:
            raise SafetensorsError('%s: write of %r elements [%d, %d) outside [0, %d)' % (self.path, name, elem_start, elem_start + data.size, numel))
        if data.size == 0:
            return
        self._file.seek(self._data_start + offset + elem_start * np_dtype.itemsize)
        self._file.write(data.tobytes())
        self._written[name].append((elem_start, elem_start + data.size))

    def write_rows(self, name, row_start, values):
        """Writes rows [row_start, row_start + n) of the leading axis."""
        _, _, shape, _ = self._tensors[name]
        row_size = int(np.prod(shape[1:], dtype=np.int64))
        data = np.asarray(values)
        if row_size > 0 and data.size % row_size != 0:
            raise SafetensorsError('%s: write of %r: %d values is not a whole number of rows of %d' % (self.path, name, data.size, row_size))
        self.write_elements(name, row_start * row_size, data)

    def finish(self):
        """Checks every element was written exactly once, then fsyncs and renames into place."""
        try:
            for name, ranges in self._written.items():
                offset, nbytes, shape, dtype = self._tensors[name]
                numel = nbytes // DTYPES[dtype].itemsize
                cursor = 0
                for begin, end in sorted(ranges):
                    if begin < cursor:
                        raise SafetensorsError('%s: tensor %r: elements [%d, %d) written twice' % (self.path, name, begin, min(end, cursor)))
                    if begin > cursor:
                        break
                    cursor = end
                if cursor != numel:
                    raise SafetensorsError('%s: tensor %r: elements from %d of %d never written' % (self.path, name, cursor, numel))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temp, self.path)
            _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        except BaseException:
            self.abort()
            raise

    def abort(self):
        try:
            self._file.close()
        finally:
            if os.path.exists(self._temp):
                os.remove(self._temp)


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: (dtype, numpy array)} (in the given order) and string metadata to `path` atomically."""
    specs = [(name, dtype, np.shape(array)) for name, (dtype, array) in tensors.items()]
    writer = SafetensorsWriter(path, specs, metadata)
    try:
        for name, (_, array) in tensors.items():
            writer.write_elements(name, 0, array)
    except BaseException:
        writer.abort()
        raise
    writer.finish()


def read_safetensors(path):
    """Returns ({name: numpy array (native byte order)}, metadata). Checks the header like the wgkd reader."""

    def fail(problem):
        raise SafetensorsError('safetensors %s: %s' % (path, problem))

    with open(path, 'rb') as f:
        raw = f.read()
    if len(raw) < 8:
        fail('file is %d bytes, too short for the 8-byte header length' % len(raw))
    (length,) = struct.unpack('<Q', raw[:8])
    if length > MAX_HEADER_BYTES:
        fail('header length %d is absurd (limit %d bytes)' % (length, MAX_HEADER_BYTES))
    if length > len(raw) - 8:
        fail('header length %d runs past the end of the file (%d bytes)' % (length, len(raw)))
    try:
        header = json.loads(raw[8:8 + length].decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as err:
        fail('header is not valid JSON (%s)' % err)
    if not isinstance(header, dict):
        fail('header is not a JSON object')
    data = memoryview(raw)[8 + length:]
    metadata = header.pop('__metadata__', {}) or {}
    tensors = {}
    for name, entry in header.items():
        dtype = entry.get('dtype')
        if dtype not in DTYPES:
            fail('tensor %r: unknown dtype %r' % (name, dtype))
        shape = entry.get('shape')
        begin, end = entry.get('data_offsets', [None, None])
        numel = int(np.prod(shape, dtype=np.int64))
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= len(data)):
            fail('tensor %r: data_offsets %r lie outside the data area (%d bytes)' % (name, [begin, end], len(data)))
        if end - begin != numel * DTYPES[dtype].itemsize:
            fail('tensor %r: holds %d bytes but %s %r needs %d' % (name, end - begin, dtype, shape, numel * DTYPES[dtype].itemsize))
        array = np.frombuffer(data[begin:end], dtype=DTYPES[dtype]).reshape(shape)
        tensors[name] = array.astype(array.dtype.newbyteorder('='), copy=True)
    return tensors, metadata
