"""A plain-torch AdaFocusV2, written from the authors' code (`models/adafocus_v2.py`,
`main_v2.py`), with their module names, for the import parity tests.

Modules: `global_CNN` (their MobileNetV2, tonylins' flat naming with a Linear `classifier`, or a
torchvision ResNet), `global_CNN_fc` (Dropout, Linear), `local_CNN` (ResNet), `local_CNN_fc`,
`policy_stn` (`encoder`: 1x1 conv, BN2d, tanh, flatten, Linear, BN1d, tanh; `gru`; `fc`: Linear,
sigmoid) and `classifier` (`mlp.layers`: Linear, BN1d, ReLU; `classifiers.k`: Dropout, Linear).
The evaluation forward: frames reordered as `--sample` does, the patch cropped with
affine_grid + grid_sample, a running max over the steps, every step's head.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torch_reference as ref
from torch import nn


def input_order(num_segments: int) -> list[int]:
  """`main_v2.input_order`: the middle, first and last frames, then interval midpoints."""
  order = [int(np.floor((num_segments - 1) / 2)), 0, num_segments - 1]
  q = 2
  while len(order) < num_segments:
    edges = np.floor(np.linspace(0, num_segments - 1, q + 1))
    for a, b in zip(edges[:-1], edges[1:]):
      middle = int(np.floor((a + b) / 2))
      if middle not in order:
        order.append(middle)
    q *= 2
  return order


def feature_map(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
  """The last feature map of a reference backbone (their `get_featmap`)."""
  if isinstance(net, ref.MobileNetV2):
    return net.features(x)
  x = net.maxpool(F.relu(net.bn1(net.conv1(x))))
  for i in range(1, 5):
    x = getattr(net, f'layer{i}')(x)
  return x


def crop(frames: torch.Tensor, corners: torch.Tensor, patch: int) -> torch.Tensor:
  """`get_patches_frame`: [N, 3, S, S] frames, [N, 2] corners (y, x) -> [N, 3, P, P]."""
  n, _, size, _ = frames.shape
  origin = corners * (size - patch)
  theta = torch.zeros(n, 2, 3, dtype=frames.dtype)
  theta[:, 0, 0] = theta[:, 1, 1] = patch / size
  theta[:, 0, 2] = -1 + (2 * origin[:, 1] + patch) / size
  theta[:, 1, 2] = -1 + (2 * origin[:, 0] + patch) / size
  grid = F.affine_grid(theta, [n, 3, patch, patch], align_corners=False)
  return F.grid_sample(frames, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


class PolicySTN(nn.Module):
  def __init__(self, feature_dim, map_size, channels, hidden):
    super().__init__()
    self.encoder = nn.Sequential(
        nn.Conv2d(feature_dim, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.Tanh(),
        nn.Flatten(), nn.Linear(channels * map_size, hidden), nn.BatchNorm1d(hidden), nn.Tanh())
    self.gru = nn.GRU(hidden, hidden, batch_first=True)
    self.fc = nn.Sequential(nn.Linear(hidden, 2), nn.Sigmoid())
    self.hidden = hidden

  def forward(self, maps, steps):
    x = self.encoder(maps).view(-1, steps, self.hidden)
    out, _ = self.gru(x, torch.zeros(1, x.shape[0], self.hidden, dtype=x.dtype))
    return self.fc(out.reshape(-1, self.hidden))


class PoolingClassifier(nn.Module):
  def __init__(self, input_dim, steps, num_classes, hidden):
    super().__init__()
    self.mlp = nn.Module()
    self.mlp.layers = nn.Sequential(nn.Linear(input_dim, hidden), nn.BatchNorm1d(hidden),
                                    nn.ReLU())
    self.classifiers = nn.ModuleList(
        nn.Sequential(nn.Dropout(0.2), nn.Linear(hidden, num_classes)) for _ in range(steps))

  def forward(self, x):
    b, t, f = x.shape
    z = self.mlp.layers(x.reshape(b * t, f)).view(b, t, -1)
    logits, running = [], z[:, 0]
    for k in range(t):
      if k > 0:
        running = torch.maximum(z[:, k], running)
      logits.append(self.classifiers[k](running))
    return torch.stack(logits, 1)


class AdaFocusV2(nn.Module):
  """The authors' model; `forward(video [B, T, 3, S, S])` in their evaluation mode."""

  def __init__(self, global_cnn, local_cnn, num_classes, steps, patch, size, glance=None,
               channels=64, hidden=2048, classifier_hidden=4096):
    super().__init__()
    self.global_CNN, self.local_CNN = global_cnn, local_cnn
    g, l = global_cnn.num_features, local_cnn.num_features
    self.global_CNN_fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(g, num_classes))
    self.local_CNN_fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(l, num_classes))
    side = math.ceil((glance or size) / 32)
    self.policy_stn = PolicySTN(g, side * side, channels, hidden)
    self.classifier = PoolingClassifier(g + l, steps, num_classes, classifier_hidden)
    self.steps, self.patch, self.size, self.glance = steps, patch, size, glance

  def forward(self, video, corners=None):
    b = video.shape[0]
    video = video[:, input_order(self.steps)]  # --sample
    frames = video.reshape(-1, 3, self.size, self.size)
    glance = frames if self.glance is None else F.interpolate(
        frames, (self.glance, self.glance), mode='bilinear', align_corners=True)
    maps = feature_map(self.global_CNN, glance)
    global_features = maps.mean([2, 3])
    policy_corners = self.policy_stn(maps, self.steps)
    corners = policy_corners if corners is None else corners.reshape(-1, 2)
    patches = crop(frames, corners, self.patch)
    local_features = self.local_CNN.embed(patches)
    both = torch.cat([global_features, local_features], -1).view(b, self.steps, -1)
    step_logits = self.classifier(both)
    return dict(logits=step_logits[:, -1], step_logits=step_logits,
                global_logits=self.global_CNN_fc(global_features).view(b, self.steps, -1),
                local_logits=self.local_CNN_fc(local_features).view(b, self.steps, -1),
                corners=policy_corners.view(b, self.steps, 2))


@torch.no_grad()
def randomize_heads(net: AdaFocusV2, seed: int) -> AdaFocusV2:
  """Random policy, classifier and heads (BatchNorm1d/2d statistics included); eval mode."""
  g = torch.Generator().manual_seed(seed)
  for module in (net.policy_stn, net.classifier, net.global_CNN_fc, net.local_CNN_fc):
    for m in module.modules():
      if isinstance(m, (nn.Linear, nn.Conv2d, nn.GRU)):
        for p in m.parameters():
          fan_in = p[0].numel() if p.ndim > 1 else 4.0
          p.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=g)
      elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        m.weight.uniform_(0.5, 1.5, generator=g)
        m.bias.normal_(0.0, 0.2, generator=g)
        m.running_mean.normal_(0.0, 0.2, generator=g)
        m.running_var.uniform_(0.5, 2.0, generator=g)
  return net.eval()
