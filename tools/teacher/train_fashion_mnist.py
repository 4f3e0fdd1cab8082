#!/usr/bin/env python3
"""Trains the Fashion-MNIST teacher that ships in data/fashion-mnist/ (PyTorch on the CPU; uses CUDA when present).

    python3 tools/teacher/train_fashion_mnist.py --out data/fashion-mnist/teacher-resnet-small.safetensors

The model is wgkd's 'resnet-small' (torchvision names; 3x3 stem, stages of 2 basic blocks, widths 32-64-128). It
trains on wgkd's 55,000-image train split (the 5,000-image hold-out is drawn exactly as wgkd draws it), with inputs
normalised like wgkd ((x/255 - 0.286) / 0.353), random 2-pixel-shift crops and horizontal flips, SGD with Nesterov
momentum, a one-epoch warm-up then cosine decay. Each epoch prints validation and test accuracy; the weights are
written atomically (safetensors, F32, metadata: seed, epochs, accuracies, command) after every epoch, so an
interrupted run keeps its last finished epoch.
"""

import argparse
import math
import os
import sys
import time

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from export_outputs import FASHION_MNIST_DIR, FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashion_mnist  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402


def normalise(images_u8):
    import torch
    return (torch.from_numpy(images_u8).float() / 255 - FASHION_MNIST_MEAN[0]) / FASHION_MNIST_STD[0]


def augment(x, generator, shift=2):
    """Random crops of the zero-padded (black, before normalisation) images and random horizontal flips."""
    import torch
    b, _, h, w = x.shape
    background = -FASHION_MNIST_MEAN[0] / FASHION_MNIST_STD[0]
    padded = torch.nn.functional.pad(x, (shift, shift, shift, shift), value=background)
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    out = torch.empty_like(x)
    for i in range(b):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def accuracy(model, x_all, labels, device, batch=128):
    import torch
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, x_all.shape[0], batch):
            x = x_all[s:s + batch].to(device).contiguous(memory_format=torch.channels_last)
            correct += int((model(x).argmax(1).cpu() == labels[s:s + batch]).sum())
    return correct / x_all.shape[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data', default=FASHION_MNIST_DIR, help='folder with the IDX files (default %(default)s)')
    p.add_argument('--out', required=True, help='weights to write (.safetensors)')
    p.add_argument('--epochs', type=int, default=12)
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--lr', type=float, default=0.1)
    p.add_argument('--weight-decay', type=float, default=5e-4)
    p.add_argument('--widths', default='32,64,128')
    p.add_argument('--blocks', default='2,2,2')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, help='torch CPU threads (default: all cores)')
    p.add_argument('--limit', type=int, help='train on the first N images only (smoke tests)')
    p.add_argument('--device', help='cpu, cuda, ... (default: cuda when available)')
    args = p.parse_args(argv)

    import torch
    from resnet import ResNet
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    widths = [int(v) for v in args.widths.split(',')]
    blocks = [int(v) for v in args.blocks.split(',')]

    splits = {}
    for split in ('train', 'validation', 'test'):
        images, labels = fashion_mnist(args.data, split)
        splits[split] = (normalise(images), torch.from_numpy(labels.astype(np.int64)))
    x_train, y_train = splits['train']
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    n = x_train.shape[0]

    model = ResNet(1, 10, widths, blocks, 'small').to(device).to(memory_format=torch.channels_last)
    params = sum(t.numel() for t in model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(n / args.batch)
    total_steps = args.epochs * steps_per_epoch

    def lr_at(step):  # linear warm-up over the first epoch, then cosine to 0
        if step < steps_per_epoch:
            return args.lr * (0.1 + 0.9 * step / steps_per_epoch)
        t = (step - steps_per_epoch) / max(1, total_steps - steps_per_epoch)
        return args.lr * 0.5 * (1 + math.cos(math.pi * t))

    command = 'python3 tools/teacher/train_fashion_mnist.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    print('resnet-small %s/%s: %d parameters, %d training images, %d epochs on %s' % (args.widths, args.blocks, params, n, args.epochs, device), flush=True)
    started = time.time()
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        loss_sum, seen, epoch_start = 0.0, 0, time.time()
        for s in range(0, n, args.batch):
            idx = order[s:s + args.batch]
            x = augment(x_train[idx], generator).to(device).contiguous(memory_format=torch.channels_last)
            y = y_train[idx].to(device)
            for group in optimizer.param_groups:
                group['lr'] = lr_at(step)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += float(loss) * idx.shape[0]
            seen += idx.shape[0]
            if step % 50 == 0:
                print('  epoch %d %5d/%d loss %.4f  %.0f img/s' % (epoch, seen, n, loss_sum / seen, seen / (time.time() - epoch_start)), flush=True)
        val = accuracy(model, *splits['validation'], device)
        test = accuracy(model, *splits['test'], device)
        print('epoch %d: train loss %.4f, validation %.4f, test %.4f (%.1f min so far)'
              % (epoch, loss_sum / seen, val, test, (time.time() - started) / 60), flush=True)
        state = {k: ('F32', v.detach().float().cpu().numpy()) for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')}
        write_safetensors(args.out, state, {
            'model': 'resnet-small', 'widths': args.widths, 'blocks': args.blocks, 'stem': 'small',
            'dataset': 'fashion-mnist', 'epochs_done': str(epoch), 'epochs': str(args.epochs), 'seed': str(args.seed),
            'validation_accuracy': '%.4f' % val, 'test_accuracy': '%.4f' % test, 'parameters': str(params),
            'command': command, 'torch': torch.__version__,
        })
    print('done in %.1f min: test accuracy %.4f -> %s' % ((time.time() - started) / 60, test, args.out), flush=True)


if __name__ == '__main__':
    main()
