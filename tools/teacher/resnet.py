"""A ResNet with torchvision's parameter names (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0, fc, ...) for any
stage widths and block counts, mirroring wgkd's src/models/resnet.ts. torchvision's own class fixes four stages of
64-128-256-512 channels; wgkd's 'resnet-small' teacher (32-64-128, two blocks each, 3x3 stem) needs this one."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x):
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """stem 'small': conv1 3x3 stride 1, no max-pool (28-64 px inputs); 'imagenet': 7x7 stride 2 + max-pool."""

    def __init__(self, in_channels=1, num_classes=10, widths=(32, 64, 128), blocks=(2, 2, 2), stem='small'):
        super().__init__()
        small = stem == 'small'
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3 if small else 7, 1 if small else 2, 1 if small else 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        self.stage_names = []
        channels = widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks)):
            layer = nn.Sequential(*[BasicBlock(channels if b == 0 else width, width, 2 if b == 0 and i > 0 else 1) for b in range(count)])
            setattr(self, 'layer%d' % (i + 1), layer)
            self.stage_names.append('layer%d' % (i + 1))
            channels = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            h = getattr(self, name)(h)
        return self.fc(torch.flatten(self.avgpool(h), 1))


def layout_of(state):
    """(in_channels, num_classes, widths, blocks, stem) read from a torchvision-layout ResNet state dict."""
    widths, blocks = [], []
    stage = 1
    while 'layer%d.0.conv1.weight' % stage in state:
        widths.append(int(state['layer%d.0.conv1.weight' % stage].shape[0]))
        count = 0
        while 'layer%d.%d.conv1.weight' % (stage, count) in state:
            count += 1
        blocks.append(count)
        stage += 1
    conv1, fc = state['conv1.weight'], state['fc.weight']
    return int(conv1.shape[1]), int(fc.shape[0]), widths, blocks, 'small' if conv1.shape[2] == 3 else 'imagenet'
