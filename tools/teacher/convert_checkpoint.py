#!/usr/bin/env python3
"""Converts a PyTorch state dict (.ckpt / .pt / .pth) to safetensors, keeping the tensor names, for wgkd.

    python3 tools/teacher/convert_checkpoint.py resnet18_teacher.ckpt resnet18_teacher.safetensors

Accepts what people actually save: a plain state dict (torch.save(model.state_dict(), ...), like the course's
resnet18_teacher.ckpt), a dict holding one under 'state_dict', 'model_state_dict', 'model', 'net', ... (choose
with --key when ambiguous), and names prefixed 'module.' by DataParallel / DistributedDataParallel or '_orig_mod.'
by torch.compile (the prefix is stripped). A file holding a whole pickled model object needs --trust-pickle, since
unpickling arbitrary objects can run code.

Float tensors (F16, BF16, F32, F64) are written as F32 (or F16 with --f16), integer tensors (num_batches_tracked)
as I64, booleans as U8. The file is written directly in the safetensors layout, atomically.
Load the result in wgkd with loadTorchWeights() (src/teacher/torch.ts) or `wgkd teacher export --weights FILE`.
"""

import argparse
import os
import sys

# Sibling modules, without leaving __pycache__ folders in the repository.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from safetensors_io import SafetensorsError, write_safetensors  # noqa: E402

# Keys under which training scripts commonly nest the model's state dict, most specific first.
NESTED_KEYS = ('state_dict', 'model_state_dict', 'model_state', 'model', 'net', 'network', 'module', 'weights', 'params')
# Wrapper prefixes added by DataParallel / DDP and torch.compile.
WRAPPER_PREFIXES = ('module.', '_orig_mod.')


class ConvertError(Exception):
    pass


def import_torch():
    try:
        import torch
    except ImportError:
        raise ConvertError('PyTorch is not installed for %s: install python3-torch (Debian) or `pip install torch`' % sys.executable)
    return torch


def looks_like_torch_save(path):
    """torch.save writes a zip archive (PyTorch >= 1.6) or, in the legacy format, a pickle (protocol 2+: 0x80)."""
    with open(path, 'rb') as f:
        head = f.read(4)
    return head.startswith(b'PK\x03\x04') or head[:1] == b'\x80'


def load_checkpoint(path, trust_pickle):
    """torch.load with weights_only (safe) when this PyTorch has it; whole-object pickles only when trusted."""
    torch = import_torch()
    if not os.path.isfile(path):
        raise ConvertError('%s: no such file' % path)
    try:
        if trust_pickle:
            return torch.load(path, map_location='cpu')
        try:
            return torch.load(path, map_location='cpu', weights_only=True)
        except TypeError:  # PyTorch < 1.13 has no weights_only
            return torch.load(path, map_location='cpu')
    except Exception as err:  # torch raises many kinds: UnpicklingError, RuntimeError, EOFError, ...
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if 'WeightsUnpickler error:' in text:
            text = text.split('WeightsUnpickler error:', 1)[1].strip()
        if not looks_like_torch_save(path):
            raise ConvertError('%s: torch.load failed: not a PyTorch checkpoint (neither the zip format of torch.save '
                               'nor a legacy pickle)' % path)
        if not trust_pickle and ('weights_only' in str(err) or 'Unsupported' in str(err) or 'GLOBAL' in str(err)):
            raise ConvertError(
                '%s holds more than tensors and plain containers (probably a whole pickled model: %s). If you trust '
                'the file, rerun with --trust-pickle; better, save model.state_dict() instead.' % (path, text))
        raise ConvertError('%s: torch.load failed: %s (is it a PyTorch checkpoint?)' % (path, text))


def is_tensor_dict(value):
    torch = import_torch()
    return isinstance(value, dict) and len(value) > 0 and all(isinstance(v, torch.Tensor) for v in value.values())


def find_state_dict(obj, path, key=None):
    """The state dict inside what torch.load returned, and where it was found (for the summary)."""
    torch = import_torch()
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict(), 'model object'
    if not isinstance(obj, dict):
        raise ConvertError('%s holds a %s, not a state dict (a dict of tensors)' % (path, type(obj).__name__))
    if key is not None:
        if key not in obj:
            raise ConvertError('%s has no key %r (keys: %s)' % (path, key, ', '.join(map(str, obj))))
        return find_state_dict(obj[key], '%s[%r]' % (path, key))[0], 'key %r' % key
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(tensors) > 0 and len(tensors) >= len(obj) / 2:
        return obj, 'top level'
    for name in NESTED_KEYS:
        inner = obj.get(name)
        if isinstance(inner, torch.nn.Module):
            return inner.state_dict(), 'key %r (model object)' % name
        if is_tensor_dict(inner) or (isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values())):
            return inner, 'key %r' % name
    nested = [k for k, v in obj.items() if isinstance(v, dict) and any(isinstance(t, torch.Tensor) for t in v.values())]
    if len(nested) == 1:
        return obj[nested[0]], 'key %r' % nested[0]
    if len(nested) > 1:
        raise ConvertError('%s holds several dicts of tensors (%s); choose one with --key' % (path, ', '.join(map(repr, nested))))
    raise ConvertError('%s holds no tensors (keys: %s)' % (path, ', '.join(map(str, list(obj)[:20]))))


def strip_wrappers(names):
    """Strips 'module.' / '_orig_mod.' when every name carries it (repeatedly: DDP around a compiled model)."""
    stripped = []
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if names and all(n.startswith(prefix) for n in names):
                names = [n[len(prefix):] for n in names]
                stripped.append(prefix)
                changed = True
    return names, stripped


def to_arrays(state, path, f16):
    """{name: (safetensors dtype, numpy array)} with wrapper prefixes stripped; notes for the summary."""
    torch = import_torch()
    notes = []
    items = [(str(k), v) for k, v in state.items()]
    skipped = [k for k, v in items if not isinstance(v, torch.Tensor)]
    if skipped:
        notes.append('skipped %d non-tensor entries: %s' % (len(skipped), ', '.join(skipped[:5]) + (' ...' if len(skipped) > 5 else '')))
    items = [(k, v) for k, v in items if isinstance(v, torch.Tensor)]
    if not items:
        raise ConvertError('%s: the state dict holds no tensors' % path)
    names, stripped = strip_wrappers([k for k, _ in items])
    if stripped:
        notes.append("stripped the prefix %s from every name" % ' + '.join(repr(p) for p in stripped))
    out = {}
    for name, (_, tensor) in zip(names, items):
        if name in out:
            raise ConvertError('%s: two tensors are named %r after stripping prefixes' % (path, name))
        t = tensor.detach().to('cpu')
        if t.is_sparse or t.is_quantized:
            raise ConvertError('%s: tensor %r is %s; only dense tensors can be converted' % (path, name, 'sparse' if t.is_sparse else 'quantized'))
        if t.is_complex():
            raise ConvertError('%s: tensor %r is complex (%s); not supported' % (path, name, t.dtype))
        if t.is_floating_point():
            dtype = 'F16' if f16 else 'F32'
            array = t.to(torch.float16 if f16 else torch.float32).contiguous().numpy()
        elif t.dtype == torch.bool:
            dtype, array = 'U8', t.to(torch.uint8).contiguous().numpy()
        else:
            dtype, array = 'I64', t.to(torch.int64).contiguous().numpy()
        out[name] = (dtype, array)
    return out, notes


def describe(arrays):
    """One line about the architecture, when it looks like a (torchvision) ResNet."""
    parts = []
    conv1 = arrays.get('conv1.weight')
    fc = arrays.get('fc.weight')
    if conv1 is not None and conv1[1].ndim == 4:
        k = conv1[1].shape[2]
        parts.append('conv1 %dx%d (%s stem), %d input channels' % (k, k, 'ImageNet 7x7' if k == 7 else 'small', conv1[1].shape[1]))
    if fc is not None and fc[1].ndim == 2:
        parts.append('fc %d -> %d classes' % (fc[1].shape[1], fc[1].shape[0]))
    return '; '.join(parts)


def convert(src, dst, key=None, f16=False, trust_pickle=False, quiet=False):
    obj = load_checkpoint(src, trust_pickle)
    state, where = find_state_dict(obj, src, key)
    arrays, notes = to_arrays(state, src, f16)
    import torch
    metadata = {
        'format': 'pt',
        'source': os.path.basename(src),
        'converter': 'wgkd tools/teacher/convert_checkpoint.py',
        'torch_version': torch.__version__,
    }
    write_safetensors(dst, arrays, metadata)
    if not quiet:
        # Parameters counted like torchsummary: every float tensor that is not a BatchNorm running statistic.
        params = sum(a.size for n, (d, a) in arrays.items() if d in ('F32', 'F16') and not n.endswith(('running_mean', 'running_var')))
        print('%s -> %s: %d tensors (state dict at %s), %s float values outside running stats' % (src, dst, len(arrays), where, format(params, ',')))
        for note in notes:
            print('  ' + note)
        arch = describe(arrays)
        if arch:
            print('  ' + arch)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog='See tools/teacher/README.md.')
    parser.add_argument('input', help='PyTorch checkpoint (.ckpt, .pt, .pth)')
    parser.add_argument('output', help='safetensors file to write')
    parser.add_argument('--key', help="take the state dict from this key of the checkpoint dict (default: found automatically)")
    parser.add_argument('--f16', action='store_true', help='store float tensors as F16 (half the size; wgkd reads both)')
    parser.add_argument('--trust-pickle', action='store_true', help='allow files that pickle whole Python objects (can run code)')
    parser.add_argument('--quiet', action='store_true')
    args = parser.parse_args(argv)
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        parser.error('the output must differ from the input')
    try:
        convert(args.input, args.output, key=args.key, f16=args.f16, trust_pickle=args.trust_pickle, quiet=args.quiet)
    except (ConvertError, SafetensorsError, OSError) as err:
        print('convert_checkpoint: %s' % err, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
