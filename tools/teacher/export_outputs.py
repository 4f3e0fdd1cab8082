#!/usr/bin/env python3
"""Runs a torchvision-layout ResNet teacher (ResNet-18, or any widths/blocks such as wgkd's resnet-small) over a dataset
and writes a wgkd teacher-outputs file.

    python3 tools/teacher/export_outputs.py --weights resnet18_teacher.ckpt \\
        --food11 ~/food11 --split training --size 224 --views identity,hflip --hints layer2,layer3 \\
        --out teacher-food11-training.safetensors

The file holds, for every sample in wgkd's fixed order and every view, the logits [V, N, K] (or [N, K] for one
view), the pooled 512-d embedding and the requested stage outputs ('hint.layer2', ...), with the metadata wgkd's
checkAlignment() compares (dataset, split, count, fingerprint, num_classes); see src/teacher/outputs.ts.

What is reproduced exactly from wgkd (src/data/*.ts, src/random.ts):
  - sample order, count and fingerprint: Food-11's sorted file list and Fashion-MNIST's seeded 5,000-image hold-out
    (mulberry32 + Fisher-Yates, seed 0);
  - views ('identity', 'hflip', 'crop(x,y,w,h)', 'crop(x,y,w,h)+hflip'): the same pixel boxes, bilinear taps and
    float32 normalisation, bit for bit on the same uint8 image;
  - Food-11 geometry: shorter side resized to round(size * 256 / 224), longer side floor(S * long / short), centre
    crop at offsets round((dim - size) / 2).
What is not: Food-11 JPEG decoding and resampling. Python uses PIL (bilinear, torchvision's pipeline, which is what
the course's teacher was trained on); wgkd uses sharp/libvips. Pixels typically differ by a few levels, so outputs
differ slightly from `wgkd teacher export` on the same images. Fashion-MNIST pixels are identical.
"""

import argparse
import gzip
import hashlib
import json
import math
import os
import re
import struct
import sys
import time

import numpy as np

# Sibling modules, without leaving __pycache__ folders in the repository.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from safetensors_io import SafetensorsError, SafetensorsWriter, read_safetensors  # noqa: E402

TEACHER_OUTPUTS_FORMAT = 'wgkd-teacher-outputs'
TEACHER_OUTPUTS_VERSION = '1'
FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
FASHION_MNIST_MEAN = [0.286]
FASHION_MNIST_STD = [0.353]
STAGES = ('layer1', 'layer2', 'layer3', 'layer4')
M32 = 0xFFFFFFFF


class ExportError(Exception):
    pass


# ---- src/random.ts -------------------------------------------------------------------------------------------

def _imul(a, b):
    return (a * b) & M32


def rng(seed):
    """mulberry32, as src/random.ts: uniform floats in [0, 1). Works on uint32 values (JS's ops are mod 2^32)."""
    state = [seed & M32]

    def next_float():
        state[0] = (state[0] + 0x6D2B79F5) & M32
        t = state[0]
        t = _imul(t ^ (t >> 15), t | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296

    return next_float


def seeded_permutation(n, seed):
    """Fisher-Yates with mulberry32, as src/random.ts seededPermutation."""
    order = list(range(n))
    random = rng(seed)
    for i in range(n - 1, 0, -1):
        j = math.floor(random() * (i + 1))
        order[i], order[j] = order[j], order[i]
    return order


# ---- src/data/dataset.ts -------------------------------------------------------------------------------------

def fingerprint_of(pieces):
    """sha256 over length-prefixed pieces (str as UTF-8, bytes as is), first 16 hex digits."""
    h = hashlib.sha256()
    for piece in pieces:
        data = piece.encode('utf-8') if isinstance(piece, str) else bytes(piece)
        h.update(struct.pack('<Q', len(data)))
        h.update(data)
    return h.hexdigest()[:16]


def js_round(v):
    """JavaScript's Math.round: halves go up."""
    r = math.floor(v)
    return r + 1 if v - r >= 0.5 else r


def round_half_even(v):
    """Python's round() (and wgkd's roundHalfEven)."""
    return int(round(v))


# ---- src/data/food11.ts --------------------------------------------------------------------------------------

FOOD11_SPLITS = {'training': 'training', 'train': 'training', 'validation': 'validation', 'val': 'validation',
                 'evaluation': 'evaluation', 'eval': 'evaluation', 'test': 'evaluation'}
IMAGE_EXTENSION = re.compile(r'\.(jpe?g|png)$', re.IGNORECASE)
LABELLED_NAME = re.compile(r'^(\d+)_[^/\\]*\.(jpe?g|png)$', re.IGNORECASE)


def utf16_key(name):
    """JavaScript's default string order (UTF-16 code units); equals Python's for the usual ASCII names."""
    return name.encode('utf-16-be')


def list_food11(root, split):
    canonical = FOOD11_SPLITS.get(split)
    if canonical is None:
        raise ExportError("Food-11: unknown split '%s' (training, validation, evaluation)" % split)
    candidates = ['evaluation', 'test'] if canonical == 'evaluation' else [canonical]
    folder = next((os.path.join(root, c) for c in candidates if os.path.isdir(os.path.join(root, c))), None)
    if folder is None:
        raise ExportError('Food-11: no %s folder in %s (expected training/, validation/, evaluation/)'
                          % (' or '.join(c + '/' for c in candidates), root))
    files, labels = [], []
    for name in sorted((n for n in os.listdir(folder) if not n.startswith('.')), key=utf16_key):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        label = None
        if canonical == 'evaluation':
            if not IMAGE_EXTENSION.search(name):
                raise ExportError("Food-11: cannot use %s: expected an image named '<name>.jpg'" % path)
        else:
            m = LABELLED_NAME.match(name)
            if not m:
                raise ExportError("Food-11: cannot parse the label of %s: expected '<label>_<n>.jpg' with <label> in 0..10" % path)
            label = int(m.group(1))
            if label > 10:
                raise ExportError("Food-11: label %d of %s is not in 0..10 (expected '<label>_<n>.jpg')" % (label, path))
        files.append(name)
        labels.append(label)
    if not files:
        raise ExportError('Food-11: no images in %s' % folder)
    return folder, canonical, files, labels


def food11_resize_short(size):
    return js_round(size * 256 / 224)


def decode_food11(path, size):
    """uint8 [3, size, size]: PIL bilinear resize of the shorter side to round(size*256/224), centre crop."""
    from PIL import Image
    bilinear = getattr(Image, 'Resampling', Image).BILINEAR
    try:
        with Image.open(path) as img:
            img = img.convert('RGB')
            width, height = img.size
            short = food11_resize_short(size)
            if width <= height:
                rw, rh = short, (short * height) // width
            else:
                rw, rh = (short * width) // height, short
            img = img.resize((rw, rh), bilinear)
            left = round_half_even((rw - size) / 2)
            top = round_half_even((rh - size) / 2)
            img = img.crop((left, top, left + size, top + size))
            hwc = np.asarray(img, dtype=np.uint8)
    except Exception as err:
        raise ExportError('Food-11: cannot decode %s: %s' % (path, err))
    if hwc.shape != (size, size, 3):
        raise ExportError('Food-11: %s decoded to %r, expected %dx%dx3' % (path, hwc.shape, size, size))
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


class Food11Images:
    """Decodes on access (a torch DataLoader runs it in worker processes)."""

    def __init__(self, folder, files, size):
        self.paths = [os.path.join(folder, f) for f in files]
        self.size = size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return decode_food11(self.paths[i], self.size)


# ---- src/data/fashion-mnist.ts -------------------------------------------------------------------------------

def read_idx(path):
    with open(path, 'rb') as f:
        raw = f.read()
    if path.endswith('.gz'):
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ExportError('IDX file %s: bad magic number' % path)
    if raw[2] != 0x08:
        raise ExportError('IDX file %s: type code 0x%02x, expected 0x08 (uint8)' % (path, raw[2]))
    ndim = raw[3]
    dims = list(struct.unpack('>%dI' % ndim, raw[4:4 + 4 * ndim]))
    count = int(np.prod(dims, dtype=np.int64))
    body = raw[4 + 4 * ndim:]
    if len(body) != count:
        raise ExportError('IDX file %s: %d data bytes for dims %r (%d)' % (path, len(body), dims, count))
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def find_idx(folder, base):
    for candidate in (base + '.gz', base):
        p = os.path.join(folder, candidate)
        if os.path.exists(p):
            return p
    raise ExportError('Fashion-MNIST: neither %s.gz nor %s in %s (install the Debian package dataset-fashion-mnist)' % (base, base, folder))


def fashion_mnist(folder, split, validation_size=5000, seed=0):
    """(uint8 images [N, 1, 28, 28], int32 labels [N]) of a split, in wgkd's order."""
    if split not in ('train', 'validation', 'test'):
        raise ExportError("Fashion-MNIST: unknown split '%s' (train, validation, test)" % split)
    prefix = 't10k' if split == 'test' else 'train'
    image_file = find_idx(folder, prefix + '-images-idx3-ubyte')
    label_file = find_idx(folder, prefix + '-labels-idx1-ubyte')
    images = read_idx(image_file)
    labels = read_idx(label_file)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ExportError('Fashion-MNIST: %s holds %r, expected [N, 28, 28]' % (image_file, list(images.shape)))
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ExportError('Fashion-MNIST: %s has %r labels for %d images' % (label_file, list(labels.shape), images.shape[0]))
    if labels.size and labels.max() >= 10:
        raise ExportError('Fashion-MNIST: %s has a label %d not in 0..9' % (label_file, labels.max()))
    if split == 'test':
        indices = np.arange(images.shape[0])
    else:
        total = images.shape[0]
        if not (0 <= validation_size < total):
            raise ExportError('Fashion-MNIST: validation size %d must be in [0, %d)' % (validation_size, total))
        order = seeded_permutation(total, seed)
        chosen = order[:validation_size] if split == 'validation' else order[validation_size:]
        indices = np.array(sorted(chosen), dtype=np.int64)
    return images[indices][:, None, :, :], labels[indices].astype(np.int32)


# ---- src/data/augment.ts: views ------------------------------------------------------------------------------

VIEW_GRAMMAR = "'identity', 'hflip', 'crop(x,y,w,h)' or 'crop(x,y,w,h)+hflip' (x, y, w, h: fractions in [0, 1])"
CROP = re.compile(r'^crop\(([^,()]+),([^,()]+),([^,()]+),([^,()]+)\)$')
NUMBER = re.compile(r'^\s*[0-9.eE+-]+\s*$')


def parse_view(description):
    """(crop fractions or None, hflip), as parseView."""
    def fail(why):
        raise ExportError("view '%s': %s; expected %s" % (description, why, VIEW_GRAMMAR))

    crop, hflip = None, False
    if description == 'identity':
        return crop, hflip
    for part in description.split('+'):
        if part == 'hflip':
            if hflip:
                fail('hflip given twice')
            hflip = True
            continue
        m = CROP.match(part)
        if not m:
            fail("unknown part '%s'" % part)
        if crop is not None:
            fail('crop given twice')
        values = []
        for s in m.groups():
            try:
                values.append(float(s) if NUMBER.match(s) else math.nan)
            except ValueError:
                values.append(math.nan)
        x, y, w, h = values
        if not all(math.isfinite(v) and 0 <= v <= 1 for v in values):
            fail('crop values must be numbers in [0, 1]')
        if w <= 0 or h <= 0 or x + w > 1 + 1e-9 or y + h > 1 + 1e-9:
            fail('the crop box must be non-empty and inside the image')
        crop = (x, y, w, h)
    return crop, hflip


def view_box(crop, height, width):
    """Pixel box (x, y, w, h) of a crop view for an H x W image, as viewTransform."""
    if crop is None:
        return None
    x = min(width - 1, js_round(crop[0] * width))
    y = min(height - 1, js_round(crop[1] * height))
    w = max(1, min(width - x, js_round(crop[2] * width)))
    h = max(1, min(height - y, js_round(crop[3] * height)))
    return x, y, w, h


def taps(start, length, out_size):
    """Bilinear source taps along one axis (align_corners=False), as augment.ts; frac rounded to float32."""
    step = length / out_size
    lo = np.empty(out_size, dtype=np.int64)
    hi = np.empty(out_size, dtype=np.int64)
    frac = np.empty(out_size, dtype=np.float64)
    for i in range(out_size):
        source = max(0.0, (i + 0.5) * step - 0.5)
        base = min(math.floor(source), length - 1)
        lo[i] = start + base
        hi[i] = start + min(base + 1, length - 1)
        frac[i] = source - base
    return lo, hi, frac.astype(np.float32).astype(np.float64)


class ViewTransform:
    """One view applied to uint8 [B, C, H, W] images -> normalised float32, with the arithmetic of transformInto."""

    def __init__(self, description, channels, height, width, mean, std):
        crop, self.hflip = parse_view(description)
        self.box = view_box(crop, height, width)
        # normalisation(): Float32Array scale 1/(255 std) and shift -mean/std; products in float64, stored float32.
        self.scale = np.array([1 / (255 * s) for s in std], dtype=np.float32).astype(np.float64).reshape(1, channels, 1, 1)
        self.shift = np.array([-m / s for m, s in zip(mean, std)], dtype=np.float32).astype(np.float64).reshape(1, channels, 1, 1)
        if self.box is not None:
            x, y, w, h = self.box
            self.cols = taps(x, w, width)
            self.rows = taps(y, h, height)

    def __call__(self, images):
        src = images.astype(np.float64)
        if self.box is not None:
            (clo, chi, fx), (rlo, rhi, fy) = self.cols, self.rows
            top, bottom = src[:, :, rlo, :], src[:, :, rhi, :]
            fy = fy.reshape(1, 1, -1, 1)
            fx = fx.reshape(1, 1, 1, -1)
            upper = top[:, :, :, clo] + (top[:, :, :, chi] - top[:, :, :, clo]) * fx
            lower = bottom[:, :, :, clo] + (bottom[:, :, :, chi] - bottom[:, :, :, clo]) * fx
            src = upper + (lower - upper) * fy
        if self.hflip:
            src = src[:, :, :, ::-1]
        return np.ascontiguousarray((src * self.scale + self.shift).astype(np.float32))


# ---- the teacher ---------------------------------------------------------------------------------------------

def load_state_dict(path):
    """{name: torch tensor} from a converted .safetensors file or a PyTorch checkpoint (.ckpt/.pt/.pth)."""
    import torch
    if path.endswith('.safetensors'):
        arrays, _ = read_safetensors(path)
        return {name: torch.from_numpy(a) for name, a in arrays.items()}  # 0-d arrays stay 0-d
    from convert_checkpoint import ConvertError, find_state_dict, load_checkpoint, strip_wrappers
    try:
        state, _ = find_state_dict(load_checkpoint(path, trust_pickle=False), path)
    except ConvertError as err:
        raise ExportError(str(err))
    items = [(str(k), v) for k, v in state.items() if isinstance(v, torch.Tensor)]
    names, _ = strip_wrappers([k for k, _ in items])
    return {name: t for name, (_, t) in zip(names, items)}


def build_resnet(state, small_stem=None, classes=None):
    """A ResNet in torchvision's layout shaped by the weights: input channels and stem from conv1, stage widths and
    block counts from layer*.*, classes from fc. ResNet-18's layout (64-128-256-512, two blocks each) is built with
    torchvision itself; any other (e.g. wgkd's 'resnet-small', 32-64-128) with tools/teacher/resnet.py, which uses
    the same names. The 'small' stem (3x3 stride-1 conv1, no max-pool) is wgkd's choice below 112 px; the
    ImageNet stem (7x7 stride 2 + max-pool) is torchvision's.
    """
    import torch
    import torchvision
    from resnet import ResNet, layout_of
    for name in ('conv1.weight', 'fc.weight', 'layer1.0.conv1.weight'):
        if name not in state:
            raise ExportError('the weights have no %r: not a torchvision-layout ResNet state dict (names: %s ...)'
                              % (name, ', '.join(list(state)[:8])))
    kernel = state['conv1.weight'].shape[2]
    if kernel not in (3, 7):
        raise ExportError('conv1.weight is %r: expected a 7x7 (ImageNet) or 3x3 (small) stem' % list(state['conv1.weight'].shape))
    in_channels, num_classes, widths, blocks, stem = layout_of(state)
    if small_stem is not None and small_stem != (stem == 'small'):
        raise ExportError('--small-stem %s but the weights have a %dx%d conv1' % ('given' if small_stem else 'not given', kernel, kernel))
    if classes is not None and classes != num_classes:
        raise ExportError('--classes %d but fc.weight is %r (%d classes)' % (classes, list(state['fc.weight'].shape), num_classes))
    if widths == [64, 128, 256, 512] and blocks == [2, 2, 2, 2]:
        name = 'resnet18'
        model = torchvision.models.resnet18(num_classes=num_classes)
        if stem == 'small':
            model.conv1 = torch.nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            model.maxpool = torch.nn.Identity()
        elif in_channels != 3:
            model.conv1 = torch.nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    else:
        name = 'resnet widths %s blocks %s' % ('-'.join(map(str, widths)), '-'.join(map(str, blocks)))
        model = ResNet(in_channels, num_classes, widths, blocks, stem)
    wanted = model.state_dict()
    problems = []
    for key, t in state.items():
        if key not in wanted:
            problems.append('unexpected %r' % key)
        elif tuple(t.shape) != tuple(wanted[key].shape):
            problems.append('%r: weights %r, model %r' % (key, list(t.shape), list(wanted[key].shape)))
    problems += ['missing %r' % k for k in wanted if k not in state and not k.endswith('num_batches_tracked')]
    if problems:
        raise ExportError('the weights do not fit %s (%d problems):\n  %s' % (name, len(problems), '\n  '.join(problems)))
    model.load_state_dict({k: v.to(wanted[k].dtype) for k, v in state.items()}, strict=False)
    model.eval()
    stages = tuple('layer%d' % (i + 1) for i in range(len(widths)))
    return model, {'in_channels': in_channels, 'num_classes': num_classes, 'small_stem': stem == 'small', 'name': name, 'stages': stages}


def forward_features(model, x, stages=STAGES):
    """(logits, pooled embedding, {layer1..layer4}) of a torchvision ResNet, as wgkd's forwardFeatures."""
    import torch
    h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    maps = {}
    for name in stages:
        h = maps[name] = getattr(model, name)(h)
    embedding = torch.flatten(model.avgpool(h), 1)
    return model.fc(embedding), embedding, maps


# ---- the export ----------------------------------------------------------------------------------------------

def open_dataset(args):
    """name, split, fingerprint, labels, channels, height, width, mean, std and a batch iterator of uint8 images."""
    if (args.food11 is None) == (args.fashion_mnist is None):
        raise ExportError('give exactly one of --food11 ROOT and --fashion-mnist [DIR]')
    if args.food11 is not None:
        folder, split, files, labels = list_food11(args.food11, args.split or 'training')
        size = args.size
        if size < 1:
            raise ExportError('--size %d must be a positive integer' % size)
        return {
            'name': 'food11', 'split': split, 'count': len(files), 'num_classes': 11,
            'fingerprint': fingerprint_of(['food11', split] + files),
            'labels': None if split == 'evaluation' else np.array(labels, dtype=np.int32),
            'shape': (3, size, size), 'mean': IMAGENET_MEAN, 'std': IMAGENET_STD,
            'source': Food11Images(folder, files, size), 'decoder': 'PIL bilinear (torchvision Resize + CenterCrop)',
        }
    split = args.split or 'train'
    images, labels = fashion_mnist(args.fashion_mnist, split, args.validation_size, args.holdout_seed)
    return {
        'name': 'fashion-mnist', 'split': split, 'count': images.shape[0], 'num_classes': 10,
        'fingerprint': fingerprint_of(['fashion-mnist', str(images.shape[0]), labels.astype('<i4').tobytes()]),
        'labels': labels, 'shape': (1, 28, 28), 'mean': FASHION_MNIST_MEAN, 'std': FASHION_MNIST_STD,
        'source': images, 'decoder': 'IDX (exact)',
    }


def stack_images(items):
    return np.stack(items)


def batches(source, batch_size, workers):
    """(start, uint8 [B, C, H, W]) in sample order."""
    if isinstance(source, np.ndarray):
        for start in range(0, source.shape[0], batch_size):
            yield start, source[start:start + batch_size]
        return
    import torch.utils.data
    loader = torch.utils.data.DataLoader(source, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         collate_fn=stack_images)
    start = 0
    for batch in loader:
        yield start, batch
        start += batch.shape[0]


def split_list(text):
    """'identity,crop(0.1,0.1,0.8,0.8)' -> ['identity', 'crop(0.1,0.1,0.8,0.8)']: commas inside parentheses stay."""
    return [part.strip() for part in re.split(r',(?![^(]*\))', text) if part.strip()]


def export(args):
    import torch
    views = split_list(args.views)
    hints = [h.strip() for h in args.hints.split(',') if h.strip()] if args.hints else []
    if not views:
        raise ExportError('--views must name at least one view')
    if len(set(views)) != len(views):
        raise ExportError('--views lists a view twice: %s' % args.views)
    for v in views:
        parse_view(v)
    ds = open_dataset(args)
    identity = {k: ds[k] for k in ('name', 'split', 'count', 'fingerprint', 'num_classes')}
    if args.print_identity:
        print(json.dumps(identity))
        return
    if not args.weights or not args.out:
        raise ExportError('--weights FILE and --out FILE are required')

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    # Full float32 on GPUs (no TF32), so the outputs are what the teacher computes.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model, arch = build_resnet(load_state_dict(args.weights), True if args.small_stem else None, args.classes)
    for h in hints:
        if h not in arch['stages']:
            raise ExportError("no feature map '%s' in %s (has: %s)" % (h, arch['name'], ', '.join(arch['stages'])))
    model.to(device)
    channels, height, width = ds['shape']
    if arch['in_channels'] != channels:
        raise ExportError('the weights take %d input channels but %s images have %d' % (arch['in_channels'], ds['name'], channels))
    if arch['num_classes'] != ds['num_classes']:
        raise ExportError('the weights have %d classes but %s has %d (teacher outputs must have K = %d)'
                          % (arch['num_classes'], ds['name'], ds['num_classes'], ds['num_classes']))
    transforms = [ViewTransform(v, channels, height, width, ds['mean'], ds['std']) for v in views]

    with torch.no_grad():
        _, emb, maps = forward_features(model, torch.zeros(1, channels, height, width, device=device), arch['stages'])
    hint_shapes = {h: tuple(maps[h].shape[1:]) for h in hints}
    count, num_classes = ds['count'], ds['num_classes']
    lead = [len(views), count] if len(views) > 1 else [count]
    dtype = 'F16' if args.f16 else 'F32'
    hint_dtype = 'F16' if (args.f16 or args.hints_f16) else 'F32'
    specs = [('logits', dtype, lead + [num_classes]), ('embedding', dtype, lead + [emb.shape[1]])]
    specs += [('hint.' + h, hint_dtype, lead + list(hint_shapes[h])) for h in hints]
    import torchvision
    metadata = {
        'format': TEACHER_OUTPUTS_FORMAT,
        'format_version': TEACHER_OUTPUTS_VERSION,
        'dataset': ds['name'],
        'split': ds['split'],
        'count': str(count),
        'fingerprint': ds['fingerprint'],
        'num_classes': str(num_classes),
        'teacher': args.teacher_name or '%s %s' % (arch['name'], args.weights),
        'teacher_accuracy': '' if args.teacher_accuracy is None else repr(float(args.teacher_accuracy)),
        'views': json.dumps(views, separators=(',', ':')),
        'image_size': '%dx%dx%d' % (channels, height, width),
        'producer': 'tools/teacher/export_outputs.py (PyTorch %s, torchvision %s, %s stem)'
                    % (torch.__version__, torchvision.__version__, 'small' if arch['small_stem'] else 'ImageNet'),
        'decoder': ds['decoder'],
    }
    writer = SafetensorsWriter(args.out, specs, metadata)
    dump = SafetensorsWriter(args.dump_images, [('images', 'U8', [count, channels, height, width])],
                             {'dataset': ds['name'], 'split': ds['split'], 'fingerprint': ds['fingerprint']}) if args.dump_images else None
    correct = 0
    started = last_report = time.time()
    try:
        for start, images in batches(ds['source'], args.batch, args.workers):
            if dump:
                dump.write_rows('images', start, images)
            b = images.shape[0]
            for v, transform in enumerate(transforms):
                x = torch.from_numpy(transform(images)).to(device)
                with torch.no_grad():
                    logits, embedding, maps = forward_features(model, x, arch['stages'])
                # Row (v, start) of the [V, N, ...] layout, flattened: element (v * N + start) * row size.
                row = v * count + start
                for name, value in [('logits', logits), ('embedding', embedding)] + [('hint.' + h, maps[h]) for h in hints]:
                    value = value.float().cpu().numpy()
                    writer.write_elements(name, row * (value.size // b), value)
                if v == 0 and ds['labels'] is not None:
                    correct += int((logits.argmax(1).cpu().numpy() == ds['labels'][start:start + b]).sum())
            if not args.quiet and (time.time() - last_report > 5 or start + b == count):
                last_report = time.time()
                rate = (start + b) / max(1e-9, last_report - started)
                print('  %d/%d images (%d views), %.1f img/s' % (start + b, count, len(views), rate), file=sys.stderr)
        writer.finish()
        if dump:
            dump.finish()
    except BaseException:
        writer.abort()
        if dump:
            dump.abort()
        raise
    if not args.quiet:
        shape_text = ', '.join('%s [%s]' % (n, ', '.join(map(str, s))) for n, _, s in specs)
        print('wrote %s: %s/%s, %d samples, %s; fingerprint %s' % (args.out, ds['name'], ds['split'], count, shape_text, ds['fingerprint']))
        if ds['labels'] is not None:
            print('teacher accuracy on %s/%s (view %s): %.4f' % (ds['name'], ds['split'], views[0], correct / count))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog='See tools/teacher/README.md.',
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group('dataset (one of)')
    data.add_argument('--food11', metavar='ROOT', help='Food-11 folder with training/, validation/, evaluation/ (or test/)')
    data.add_argument('--fashion-mnist', metavar='DIR', nargs='?', const=FASHION_MNIST_DIR,
                      help='folder with the four IDX files (default %s)' % FASHION_MNIST_DIR)
    parser.add_argument('--split', help='Food-11: training|validation|evaluation (default training); '
                                        'Fashion-MNIST: train|validation|test (default train)')
    parser.add_argument('--size', type=int, default=224, help='Food-11 crop size (default 224, the course teacher)')
    parser.add_argument('--validation-size', type=int, default=5000, help='Fashion-MNIST hold-out size (default 5000, as wgkd)')
    parser.add_argument('--holdout-seed', type=int, default=0, help='Fashion-MNIST hold-out seed (default 0, as wgkd)')
    parser.add_argument('--weights', help='teacher weights: PyTorch .ckpt/.pt/.pth or a converted .safetensors')
    parser.add_argument('--out', help='teacher-outputs file to write (.safetensors)')
    parser.add_argument('--views', default='identity', help="comma-separated views (default identity), e.g. identity,hflip")
    parser.add_argument('--hints', default='', help='comma-separated stage outputs to store, e.g. layer2,layer3')
    parser.add_argument('--small-stem', action='store_true',
                        help="require the 'small' stem (3x3 stride-1 conv1, no max-pool; wgkd's resnet18 below 112 px); "
                             'without it the stem is taken from the weights anyway')
    parser.add_argument('--classes', type=int, help='expected number of classes (checked against fc.weight)')
    parser.add_argument('--f16', action='store_true', help='store everything as F16')
    parser.add_argument('--hints-f16', action='store_true', help='store the hints as F16 (they dominate the size)')
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1), help='Food-11 decoding processes')
    parser.add_argument('--device', help='cpu, cuda, cuda:1, ... (default: cuda when available)')
    parser.add_argument('--threads', type=int, help='torch CPU threads')
    parser.add_argument('--teacher-name', help="recorded as 'teacher' (default: the architecture and WEIGHTS)")
    parser.add_argument('--teacher-accuracy', type=float, help="recorded as 'teacher_accuracy' (e.g. its validation accuracy)")
    parser.add_argument('--dump-images', metavar='FILE', help='also write the decoded uint8 images (U8 [N, C, H, W]) to compare with wgkd')
    parser.add_argument('--print-identity', action='store_true', help='print the dataset identity wgkd checks (JSON) and exit')
    parser.add_argument('--quiet', action='store_true')
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error('--batch must be positive')
    try:
        export(args)
    except (ExportError, SafetensorsError, OSError) as err:
        print('export_outputs: %s' % err, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
