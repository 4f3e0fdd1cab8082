"""The workloads of bench/train.ts in PyTorch on the CPU, for the ratio npm run bench:train prints.

Same students, losses and optimisers as bench/workloads.ts (random inputs and teacher outputs of the same
shapes: the values do not change a step's cost). Prints one JSON line: median step time, train and inference img/s.
Not part of wgkd: PyTorch is only used here and in tools/teacher/.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def dw_block(cin, cout, stride=1):
    return [
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    ]


class Student(nn.Module):
    def __init__(self, layers, width, classes):
        super().__init__()
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        embedding = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.fc(embedding), embedding


def dwpw(cin, classes):
    # wgkd's dwpw at 28x28: stride 2 in stage1 and stage3 (src/models/dwpw.ts).
    layers = [nn.Conv2d(cin, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
    layers += dw_block(32, 64, 2) + dw_block(64, 128) + dw_block(128, 128, 2) + dw_block(128, 192)
    return Student(layers, 192, classes)


def hw13_dwpw(cin, classes):
    layers = [nn.Conv2d(cin, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2)]
    layers += dw_block(16, 32) + [nn.MaxPool2d(2)] + dw_block(32, 64) + [nn.MaxPool2d(2)]
    layers += dw_block(64, 128) + [nn.MaxPool2d(2)] + dw_block(128, 256)
    return Student(layers, 256, classes)


WORKLOADS = {
    'demo': dict(batch=64, channels=1, size=28, classes=10, model=dwpw, optimizer='adam', lr=6e-3, teacher_dim=128, angle=50.0),
    'hw13-64': dict(batch=64, channels=3, size=64, classes=11, model=hw13_dwpw, optimizer='adamw', lr=1e-3, teacher_dim=512, angle=0.0),
    'hw13-224': dict(batch=16, channels=3, size=224, classes=11, model=hw13_dwpw, optimizer='adamw', lr=1e-3, teacher_dim=512, angle=0.0),
}


def rkd_distance(e):
    d = torch.cdist(e, e)
    off = ~torch.eye(len(e), dtype=torch.bool)
    return d / d[off].mean()


def rkd_angle(e):
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).view(-1)


def loss_fn(logits, embedding, y, t_logits, t_embedding, angle_weight, T=4.0):
    kd = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(t_logits / T, 1), reduction='batchmean') * T * T
    loss = 0.5 * F.cross_entropy(logits, y) + 0.5 * kd
    loss = loss + 25.0 * F.smooth_l1_loss(rkd_distance(embedding), rkd_distance(t_embedding))
    if angle_weight:
        loss = loss + angle_weight * F.smooth_l1_loss(rkd_angle(embedding), rkd_angle(t_embedding))
    return loss


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--workload', required=True, choices=sorted(WORKLOADS))
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    w = WORKLOADS[a.workload]
    model = w['model'](w['channels'], w['classes'])
    opt = torch.optim.Adam(model.parameters(), lr=w['lr']) if w['optimizer'] == 'adam' else torch.optim.AdamW(model.parameters(), lr=w['lr'], weight_decay=0.01)
    b = w['batch']
    x = torch.randn(b, w['channels'], w['size'], w['size'])
    y = torch.randint(0, w['classes'], (b,))
    t_logits = 3 * torch.randn(b, w['classes'])
    t_embedding = torch.randn(b, w['teacher_dim'])

    def step():
        logits, embedding = model(x)
        loss = loss_fn(logits, embedding, y, t_logits, t_embedding, w['angle'])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        return loss.item()

    def timed(fn, n):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    model.train()
    timed(step, a.warmup)
    step_s = timed(step, a.steps)
    model.eval()
    with torch.no_grad():
        timed(lambda: model(x), a.warmup)
        infer_s = timed(lambda: model(x), a.steps)
    print(json.dumps({
        'workload': a.workload, 'engine': f'pytorch {torch.__version__} cpu x{a.threads}', 'batch': b,
        'stepMs': 1000 * step_s, 'trainImgPerSec': b / step_s, 'inferImgPerSec': b / infer_s,
    }))


if __name__ == '__main__':
    main()
