"""Reference PyTorch modules for the import parity tests, in plain torch.

There is no CPU torchvision build and efficientnet_pytorch is not a dependency, so these rebuild
their networks with the same parameter names and forward passes: torchvision's ResNet and
MobileNetV2 (current nested naming, or the flat naming of older checkpoints), efficientnet_pytorch's
EfficientNet (static same padding for the native image size, BatchNorm eps 1e-3, momentum 0.01,
swish), and the original AR-Net (`ARNet` in the authors' ops/models_ada.py) with its forward pass
driven by forced decisions. Width/depth knobs give smaller networks of the same structure; they
follow our configs' multipliers so a test can build the matching model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _head(features: int, num_classes: int | None, classifier) -> nn.Module:
  """The 1000-class head, or (AR-Net's backbones) the Dropout that replaced it."""
  return classifier(features, num_classes) if num_classes else nn.Dropout(0.5)


# --- torchvision ResNet. -----------------------------------------------------------------------

class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: stride here
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = downsample

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
  def __init__(self, block, layers, width=64, num_classes=1000):
    super().__init__()
    self.inplanes = width
    self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    for i, n in enumerate(layers):
      setattr(self, f'layer{i + 1}', self._make_layer(block, width * 2**i, n, 1 if i == 0 else 2))
    self.num_features = width * 8 * block.expansion
    self.fc = _head(self.num_features, num_classes, nn.Linear)

  def _make_layer(self, block, planes, blocks, stride):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(
          nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
          nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def embed(self, x):
    x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
    for i in range(1, 5):
      x = getattr(self, f'layer{i}')(x)
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

  def forward(self, x):
    return self.fc(self.embed(x))


# --- torchvision MobileNetV2. ------------------------------------------------------------------

MOBILENET_V2_SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                        [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def make_divisible(v, divisor=8):
  new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
  return new_v + divisor if new_v < 0.9 * v else new_v


def conv_bn_relu(inp, oup, kernel_size=3, stride=1, groups=1):
  return [nn.Conv2d(inp, oup, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                    bias=False), nn.BatchNorm2d(oup), nn.ReLU6(inplace=True)]


class InvertedResidual(nn.Module):
  def __init__(self, inp, oup, stride, expand_ratio, flat=False):
    super().__init__()
    hidden = int(round(inp * expand_ratio))
    self.use_res_connect = stride == 1 and inp == oup
    units = []  # each ConvBNReLU as a list of layers
    if expand_ratio != 1:
      units.append(conv_bn_relu(inp, hidden, 1))
    units.append(conv_bn_relu(hidden, hidden, 3, stride, groups=hidden))
    tail = [nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
    if flat:  # torchvision 0.2 / TSM: one flat Sequential
      self.conv = nn.Sequential(*[layer for unit in units for layer in unit], *tail)
    else:  # torchvision >= 0.3: ConvBNReLU(Sequential) entries
      self.conv = nn.Sequential(*[nn.Sequential(*unit) for unit in units], *tail)

  def forward(self, x):
    return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
  def __init__(self, width_mult=1.0, setting=None, last_channel=None, num_classes=1000,
               flat=False):
    super().__init__()
    input_channel = make_divisible(32 * width_mult)
    self.num_features = last_channel or make_divisible(1280 * max(1.0, width_mult))
    features = [nn.Sequential(*conv_bn_relu(3, input_channel, stride=2))]
    for t, c, n, s in setting or MOBILENET_V2_SETTING:
      output_channel = make_divisible(c * width_mult)
      for i in range(n):
        features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t,
                                          flat))
        input_channel = output_channel
    features.append(nn.Sequential(*conv_bn_relu(input_channel, self.num_features, 1)))
    self.features = nn.Sequential(*features)
    linear = ((lambda f, c: nn.Linear(f, c)) if flat else  # TSM: a plain Linear
              (lambda f, c: nn.Sequential(nn.Dropout(0.2), nn.Linear(f, c))))
    self.classifier = _head(self.num_features, num_classes, linear)

  def embed(self, x):
    return torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)

  def forward(self, x):
    return self.classifier(self.embed(x))


# --- efficientnet_pytorch EfficientNet. --------------------------------------------------------

# efficientnet_pytorch's blocks_args: repeats, kernel, stride, expand, in, out (se 0.25).
EFFICIENTNET_BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                       (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                       (1, 3, 1, 6, 192, 320)]
# width, depth, native image size
EFFICIENTNET_PARAMS = {'efficientnet_b0': (1.0, 1.0, 224), 'efficientnet_b1': (1.0, 1.1, 240),
                       'efficientnet_b2': (1.1, 1.2, 260), 'efficientnet_b3': (1.2, 1.4, 300)}


class Conv2dStaticSamePadding(nn.Conv2d):
  """TF 'same' padding computed once for `image_size`, as efficientnet_pytorch."""

  def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, bias=False,
               image_size=None):
    super().__init__(in_channels, out_channels, kernel_size, stride, 0, groups=groups, bias=bias)
    ih = iw = image_size
    kh, kw = self.weight.size()[-2:]
    sh, sw = self.stride
    oh, ow = math.ceil(ih / sh), math.ceil(iw / sw)
    pad_h = max((oh - 1) * sh + (kh - 1) * self.dilation[0] + 1 - ih, 0)
    pad_w = max((ow - 1) * sw + (kw - 1) * self.dilation[1] + 1 - iw, 0)
    if pad_h > 0 or pad_w > 0:
      self.static_padding = nn.ZeroPad2d((pad_w // 2, pad_w - pad_w // 2,
                                          pad_h // 2, pad_h - pad_h // 2))
    else:
      self.static_padding = nn.Identity()

  def forward(self, x):
    return F.conv2d(self.static_padding(x), self.weight, self.bias, self.stride, self.padding,
                    self.dilation, self.groups)


def _bn(channels):
  return nn.BatchNorm2d(channels, momentum=0.01, eps=1e-3)


def swish(x):
  return x * torch.sigmoid(x)


class MBConvBlock(nn.Module):
  def __init__(self, kernel, stride, expand, inp, oup, image_size):
    super().__init__()
    self.has_skip = stride == 1 and inp == oup
    hidden = inp * expand
    self.expand = expand != 1
    if self.expand:
      self._expand_conv = Conv2dStaticSamePadding(inp, hidden, 1, image_size=image_size)
      self._bn0 = _bn(hidden)
    self._depthwise_conv = Conv2dStaticSamePadding(hidden, hidden, kernel, stride, groups=hidden,
                                                   image_size=image_size)
    self._bn1 = _bn(hidden)
    image_size = math.ceil(image_size / stride)
    squeezed = max(1, int(inp * 0.25))
    self._se_reduce = Conv2dStaticSamePadding(hidden, squeezed, 1, bias=True, image_size=1)
    self._se_expand = Conv2dStaticSamePadding(squeezed, hidden, 1, bias=True, image_size=1)
    self._project_conv = Conv2dStaticSamePadding(hidden, oup, 1, image_size=image_size)
    self._bn2 = _bn(oup)

  def forward(self, inputs):
    x = swish(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
    x = swish(self._bn1(self._depthwise_conv(x)))
    s = self._se_expand(swish(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))
    x = self._bn2(self._project_conv(torch.sigmoid(s) * x))
    return x + inputs if self.has_skip else x  # drop connect only acts in training


class EfficientNet(nn.Module):
  def __init__(self, width, depth, image_size, num_classes=1000):
    super().__init__()

    def round_filters(filters):
      filters *= width
      new = max(8, int(filters + 4) // 8 * 8)
      return int(new + 8 if new < 0.9 * filters else new)

    self._conv_stem = Conv2dStaticSamePadding(3, round_filters(32), 3, 2, image_size=image_size)
    self._bn0 = _bn(round_filters(32))
    image_size = math.ceil(image_size / 2)
    blocks = []
    for repeats, k, s, e, i, o in EFFICIENTNET_BLOCKS:
      inp, oup = round_filters(i), round_filters(o)
      for r in range(int(math.ceil(depth * repeats))):
        blocks.append(MBConvBlock(k, s if r == 0 else 1, e, inp if r == 0 else oup, oup,
                                  image_size))
        if r == 0:
          image_size = math.ceil(image_size / s)
    self._blocks = nn.ModuleList(blocks)
    self.num_features = round_filters(1280)
    self._conv_head = Conv2dStaticSamePadding(oup, self.num_features, 1, image_size=image_size)
    self._bn1 = _bn(self.num_features)
    self._fc = _head(self.num_features, num_classes, nn.Linear)

  def embed(self, x):
    x = swish(self._bn0(self._conv_stem(x)))
    for block in self._blocks:
      x = block(x)
    x = swish(self._bn1(self._conv_head(x)))
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

  def forward(self, x):
    return self._fc(self.embed(x))


# --- By our architecture names and multipliers. --------------------------------------------------

RESNETS = {'resnet18': (BasicBlock, [2, 2, 2, 2]), 'resnet34': (BasicBlock, [3, 4, 6, 3]),
           'resnet50': (Bottleneck, [3, 4, 6, 3])}


def backbone(arch: str, width_multiplier: float = 1.0, depth_multiplier: float = 1.0,
             num_classes: int | None = 1000, flat: bool = False) -> nn.Module:
  """A reference network of the structure `create_backbone(arch, ...)` builds."""
  w, d = width_multiplier, depth_multiplier
  if arch in RESNETS:
    block, layers = RESNETS[arch]
    return ResNet(block, [max(1, round(n * d)) for n in layers], max(1, round(64 * w)),
                  num_classes)
  if arch == 'mobilenet_v2':
    setting = [[t, c, max(1, round(n * d)), s] for t, c, n, s in MOBILENET_V2_SETTING]
    last = None if w >= 1 else make_divisible(1280 * w)
    return MobileNetV2(w, setting, last, num_classes, flat)
  width, depth, size = EFFICIENTNET_PARAMS[arch]
  return EfficientNet(width * w, depth * d, size, num_classes)


# --- The original AR-Net. ----------------------------------------------------------------------

class ARNet(nn.Module):
  """The original AR-Net's modules and forward pass, decisions forced.

  Modules as the authors' `ARNet`: `lite_backbone` (the policy CNN, classifier replaced by
  Dropout), `rnn` (LSTMCell), `base_model_list`, `new_fc_list`, `linear` (action logits),
  `lite_fc` (the policy's own classifier, an action when `policy_action`). With
  `frame_independent` (the original's --frame_independent), `linear` and `lite_fc` read the CNN
  features instead of the LSTM state.
  """

  def __init__(self, backbones, lite_backbone, num_classes, resolutions, policy_resolution,
               skip_list, hidden_dim=512, policy_action=True, frame_independent=False):
    super().__init__()
    self.lite_backbone = lite_backbone
    self.rnn = nn.LSTMCell(lite_backbone.num_features, hidden_dim)
    self.base_model_list = nn.ModuleList(backbones)
    self.new_fc_list = nn.ModuleList(nn.Linear(b.num_features, num_classes) for b in backbones)
    self.reso_dim = len(backbones) + int(policy_action)
    self.action_dim = self.reso_dim + len(skip_list)
    head_in = lite_backbone.num_features if frame_independent else hidden_dim
    self.linear = nn.Linear(head_in, self.action_dim)
    self.lite_fc = nn.Linear(head_in, num_classes)
    self.resolutions, self.policy_resolution = resolutions, policy_resolution
    self.skip_list, self.hidden_dim, self.policy_action = skip_list, hidden_dim, policy_action
    self.frame_independent = frame_independent

  @staticmethod
  def at(frames, size):
    """The original makes lower resolutions by nearest interpolation of the top one."""
    if size == frames.shape[-1]:
      return frames
    return F.interpolate(frames, size=(size, size), mode='nearest')

  def policy_only(self, video):
    """--offline_lstm_all: lite_fc on each frame's LSTM state (with --frame_independent, on its
    features), averaged over frames: the LSTM baseline (exp3) and the Uniform baseline (exp2)."""
    b, t = video.shape[:2]
    feat = self.lite_backbone.embed(self.at(video.flatten(0, 1), self.policy_resolution))
    feat = feat.view(b, t, -1)
    if self.frame_independent:
      return self.lite_fc(feat).mean(1)
    hx = torch.zeros(b, self.hidden_dim, dtype=feat.dtype)
    cx = torch.zeros(b, self.hidden_dim, dtype=feat.dtype)
    outs = []
    for step in range(t):
      hx, cx = self.rnn(feat[:, step], (hx, cx))
      outs.append(self.lite_fc(hx))
    return torch.stack(outs, 1).mean(1)

  def forward(self, video, forced, freeze_cell=False):
    """video `[B, T, 3, H, W]` at the top resolution, forced `[B, T]` actions.

    `freeze_cell=False` is the original: during skipped steps hx is restored but cx keeps
    evolving. `freeze_cell=True` freezes cx as well, as the paper describes (and we implement).
    Returns (video logits [B, C], decisions [B, T, A], action log-probabilities [B, T, A]).
    """
    return self.decide(*self.frame_outputs(video), forced, freeze_cell)

  def frame_outputs(self, video):
    """The per-frame CNN work: (policy features [B, T, F], backbone logits R x [B, T, C])."""
    b, t = video.shape[:2]
    frames = video.flatten(0, 1)
    feat_lite = self.lite_backbone.embed(self.at(frames, self.policy_resolution)).view(b, t, -1)
    base_out_list = [fc(net.embed(self.at(frames, r))).view(b, t, -1) for net, fc, r in
                     zip(self.base_model_list, self.new_fc_list, self.resolutions)]
    return feat_lite, base_out_list

  def decide(self, feat_lite, base_out_list, forced, freeze_cell=False):
    """The original's decision loop (decisions forced) and logit averaging."""
    b, t = forced.shape
    hx = torch.zeros(b, self.hidden_dim, dtype=feat_lite.dtype)
    cx = torch.zeros(b, self.hidden_dim, dtype=feat_lite.dtype)
    remain_skip_vector = torch.zeros(b, 1)
    old_hx = old_cx = old_r_t = None
    r_list, lite_j_list, p_list = [], [], []
    for step in range(t):
      hx, cx = self.rnn(feat_lite[:, step], (hx, cx))
      p_t = torch.log(F.softmax(self.linear(hx), dim=1))
      j_t = self.lite_fc(hx)
      r_t = F.one_hot(forced[:, step], self.action_dim).to(hx.dtype)
      if old_hx is not None:
        take_old = (remain_skip_vector > 0.5).to(hx.dtype)
        hx = old_hx * take_old + hx * (1 - take_old)
        if freeze_cell:
          cx = old_cx * take_old + cx * (1 - take_old)
        r_t = old_r_t * take_old + r_t * (1 - take_old)
      for i in range(b):
        for skip_i in range(self.action_dim - self.reso_dim):
          if remain_skip_vector[i][0] < 0.5 and r_t[i][self.reso_dim + skip_i] > 0.5:
            remain_skip_vector[i][0] = self.skip_list[skip_i]
      old_hx, old_cx, old_r_t = hx, cx, r_t
      r_list.append(r_t)
      lite_j_list.append(j_t)
      p_list.append(p_t)
      remain_skip_vector = (remain_skip_vector - 1).clamp(0)
    outs = list(base_out_list)
    if self.policy_action:
      outs.append(torch.stack(lite_j_list, dim=1))
    r = torch.stack(r_list, dim=1)
    return self.combine_logits(r, outs), r, torch.stack(p_list, dim=1)

  def combine_logits(self, r, base_out_list):
    total_num = torch.sum(r[:, :, :self.reso_dim], dim=[1, 2])
    res = [torch.sum(r[:, :, i].unsqueeze(-1) * out, dim=1) for i, out in enumerate(base_out_list)]
    return torch.stack(res).sum(dim=0) / torch.clamp(total_num.unsqueeze(-1), 1)


# --- Random weights that matter. -----------------------------------------------------------------

@torch.no_grad()
def randomize(module: nn.Module, seed: int,
              calibration_input: torch.Tensor | None = None) -> nn.Module:
  """Random weights, BatchNorm affine parameters and running statistics; returns it in eval.

  Linear/LSTM weights become N(0, 1/fan_in), their biases N(0, 0.5); convolutions keep torch's
  init. With `calibration_input`, BatchNorm is made to matter while the network stays well
  conditioned (rounding errors are not amplified through 50 layers): each layer's activation
  mean m and variance v are measured on that input in training mode; the stored statistics become
  running_mean = m + noise and running_var = r ~ logU(0.1, 10) * eps, and the weight is rescaled by
  sqrt(r + eps) / sqrt(v + eps), so eval mode normalises by about the measured v. A model using
  another eps than the reference's would be off by up to 3x at every layer.
  """
  g = torch.Generator().manual_seed(seed)
  for m in module.modules():
    if isinstance(m, nn.Conv2d) and m.bias is not None:
      m.bias.uniform_(-0.5, 0.5, generator=g)
    elif isinstance(m, nn.BatchNorm2d):
      m.weight.uniform_(0.3, 0.8, generator=g)
      m.bias.normal_(0.0, 0.2, generator=g)
    elif isinstance(m, (nn.Linear, nn.LSTMCell)):
      for p in m.parameters():
        p.normal_(0.0, 1.0 / math.sqrt(p.shape[-1]) if p.ndim == 2 else 0.5, generator=g)
  if calibration_input is not None:
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    for m in bns:
      m.reset_running_stats()
      m.momentum = None  # cumulative: the running statistics become this batch's
    module.train()
    module.embed(calibration_input)
    for m, momentum in zip(bns, momenta):
      m.momentum = momentum
      v = m.running_var.clamp(min=0.01 * float(m.running_var.median()))
      r = m.eps * torch.exp(torch.empty(v.shape).uniform_(math.log(0.1), math.log(10.0),
                                                          generator=g))
      m.running_mean.add_(0.05 * v.sqrt() * torch.randn(v.shape, generator=g))
      m.running_var.copy_(r)
      m.weight.mul_(torch.sqrt((r + m.eps) / (v + m.eps)))
  return module.eval()
