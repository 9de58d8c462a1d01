"""The freeze-and-project "tailor": turn a classifier into an embedding model.

Given any PyTorch model, :func:`list_layers` shows its layers in the order they run, with
output shapes; :func:`to_embedding_model` cuts the model after a chosen layer (by default
just before its last dense layer, i.e. dropping the classifier), freezes all or some of its
weights, and attaches a head from :mod:`skiplab.heads`.

The cut works on most models, whatever their ``forward`` does between layers: the wrapper
runs the original forward and stops it, with a forward hook, as soon as the chosen layer
has produced its output. Layers after the cut never run, so they cost nothing and learn
nothing. A module that runs more than once per forward (torchvision's ResNets reuse one
``relu`` per block) is refused as a cut point, since "its output" would be ambiguous; the
default cut replaces the last dense layer by ``nn.Identity``, as Finetuner's PyTorch
tailor did, so the classifier's parameters are gone. (Scripted or compiled models cannot
be cut this way.)

>>> import torchvision
>>> model = to_embedding_model(torchvision.models.resnet50(), freeze=True, output_dim=1024)
>>> model.embedding_dim, model.output_dim
(2048, 1024)
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .heads import EmptyHead, EncoderHead, ProjectionHead

__all__ = ["EmbeddingModel", "LayerSummary", "cache_embeddings", "dense_layers",
           "list_layers", "to_embedding_model"]


@dataclass(frozen=True)
class LayerSummary:
    """One layer as it ran on an example input."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int


def dense_layers(model: nn.Module) -> list[str]:
    """Names of the model's dense (``nn.Linear``) layers, in registration order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def list_layers(model: nn.Module, example: torch.Tensor) -> list[LayerSummary]:
    """Every leaf layer in the order it runs on ``example``, with the shape of its output
    (batch dimension included) and its own parameter count. A module that runs several
    times appears once per call (and cannot be a cut point)."""
    summaries: list[LayerSummary] = []
    handles = []
    for name, module in model.named_modules():
        if name and (not list(module.children())):
            def hook(m, _inputs, output, name=name):
                if isinstance(output, torch.Tensor):
                    summaries.append(LayerSummary(
                        name, type(m).__name__, tuple(output.shape),
                        sum(p.numel() for p in m.parameters(recurse=False))))
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return summaries


class _Cut(BaseException):   # not Exception: a forward's own ``except Exception`` must not catch it
    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value


class EmbeddingModel(nn.Module):
    """An encoder cut at one layer, flattened, then a head.

    ``forward(x)`` returns ``head(embed(x))``, (B, output_dim); ``embed(x)`` the encoder's
    flattened output at the cut, (B, embedding_dim).

    Args:
        encoder: the original model (kept whole; only the layers up to the cut run).
        layer: name of the layer to cut at (a key of ``encoder.named_modules()``).
        before: cut at the layer's *input* instead of its output (used to drop a
            classifier: the input of the last dense layer is the embedding).
        embedding_dim: size of the flattened output at the cut.
        head: the head (default: the identity, :class:`~skiplab.heads.EmptyHead`); moved
            (in place) to the device and floating-point dtype of the encoder's first
            parameter or buffer, so a head built on the CPU works with an encoder on a GPU.
    """

    def __init__(self, encoder: nn.Module, layer: str, *, before: bool, embedding_dim: int,
                 head: EncoderHead | None = None):
        super().__init__()
        self.encoder = encoder
        self.layer, self.before, self.embedding_dim = layer, before, embedding_dim
        head = head if head is not None else EmptyHead(embedding_dim)
        device, dtype = _placement(encoder)
        self.head = head.to(device=device, dtype=dtype)
        if self.head.input_dim != embedding_dim:
            raise ValueError(f"the head expects {self.head.input_dim} dimensions but the cut at "
                             f"{layer!r} gives {embedding_dim}")
        self._target = dict(encoder.named_modules())[layer]
        self.train(self.training)

    @property
    def output_dim(self) -> int:
        return self.head.output_dim

    @property
    def encoder_frozen(self) -> bool:
        """True when no encoder parameter is trainable."""
        return not any(p.requires_grad for p in self.encoder.parameters())

    def train(self, mode: bool = True) -> EmbeddingModel:
        """Set the mode; frozen parts of the encoder stay in eval mode.

        A fully frozen encoder stays in eval mode, so that its BatchNorm layers keep their
        running statistics instead of using (and updating) the batch's, and its embeddings
        stay those :func:`cache_embeddings` computes. With partial freezing, every
        BatchNorm whose parameters are all frozen stays in eval mode likewise.
        """
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        else:
            for module in self.encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    params = list(module.parameters(recurse=False))
                    if params and not any(p.requires_grad for p in params):
                        module.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output at the cut, flattened: (B, embedding_dim)."""
        if self.before:
            def stop(_m, inputs):
                raise _Cut(inputs[0])
            handle = self._target.register_forward_pre_hook(stop)
        else:
            def stop(_m, _inputs, output):
                raise _Cut(output)
            handle = self._target.register_forward_hook(stop)
        try:
            self.encoder(x)
        except _Cut as cut:
            return cut.value.flatten(1)
        finally:
            handle.remove()
        raise RuntimeError(f"layer {self.layer!r} did not run in the encoder's forward")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def without_head(self) -> EmbeddingModel:
        """The same encoder and cut (shared, not copied) with the identity as head: the
        encoder's own embedding model."""
        return EmbeddingModel(self.encoder, self.layer, before=self.before,
                              embedding_dim=self.embedding_dim)

    def trainable_parameters(self) -> int:
        """Trainable parameters of encoder and head. Layers after a named cut stay
        registered (and are counted) although they never run; the default cut removes the
        classifier, so nothing unused is counted then."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _placement(module: nn.Module) -> tuple[torch.device | None, torch.dtype | None]:
    """The device of the module's first parameter or buffer and the dtype of its first
    floating-point one (None where it has none)."""
    tensors = [*module.parameters(), *module.buffers()]
    device = tensors[0].device if tensors else None
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), None)
    return device, dtype


@torch.no_grad()
def _output_shape(model: nn.Module, layer: nn.Module, example: torch.Tensor,
                  name: str) -> tuple[int, ...]:
    seen: dict[str, tuple[int, ...]] = {}
    calls = [0]

    def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
        calls[0] += 1
        seen.setdefault("shape", tuple(output.shape))

    handle = layer.register_forward_hook(hook)
    was = model.training
    model.eval()
    try:
        model(example)
    finally:
        handle.remove()
        model.train(was)
    if "shape" not in seen:
        raise ValueError(f"layer {name!r} does not run in the model's forward")
    if calls[0] > 1:
        raise ValueError(f"layer {name!r} runs {calls[0]} times in one forward (a shared "
                         "module, e.g. one ReLU reused in a block), so a cut after it is "
                         "ambiguous; cut after a module that runs once (see list_layers)")
    return tuple(seen["shape"])


def _flat_size(shape: Sequence[int]) -> int:
    size = 1
    for s in shape[1:]:
        size *= s
    return size


def to_embedding_model(model: nn.Module, layer_name: str | None = None, *,
                       example: torch.Tensor | None = None,
                       freeze: bool | Sequence[str] = False,
                       head: EncoderHead | None = None,
                       output_dim: int | None = None) -> EmbeddingModel:
    """Cut ``model`` into an embedding model, freeze weights, attach a head.

    Args:
        model: any ``nn.Module`` (modified in place: frozen parameters get
            ``requires_grad=False``).
        layer_name: cut after this layer; default: before the last dense layer (the
            classifier is dropped). See :func:`list_layers` for the names.
        example: an example input batch, needed to size the cut when ``layer_name`` is not
            a dense layer.
        freeze: ``True`` freezes every parameter of the encoder; a list of names (or name
            prefixes, e.g. ``["stem", "stages.0"]``) freezes those.
        head: the head to attach; exclusive with ``output_dim``.
        output_dim: attach a :class:`~skiplab.heads.ProjectionHead` to this size.

    Returns:
        The :class:`EmbeddingModel`, its head on the encoder's device and dtype.

    Raises:
        ValueError: unknown layer (with the closest names), a model without dense layers
            and no ``layer_name``, both ``head`` and ``output_dim``, ``freeze=True`` with
            neither (nothing would be left to train), or a freeze name that matches nothing.
    """
    modules = dict(model.named_modules())
    if head is not None and output_dim is not None:
        raise ValueError("pass a head or an output_dim (for a projection head), not both")
    if freeze is True and head is None and output_dim is None:
        raise ValueError("freeze=True without a head or an output_dim leaves nothing to "
                         "train; attach a head (head=...) or pass output_dim=...")
    before = False
    classifier_name = None
    if layer_name is None:
        dense = dense_layers(model)
        if not dense:
            raise ValueError("the model has no dense (nn.Linear) layer to cut before; pass "
                             "layer_name (see list_layers)")
        layer_name, before = dense[-1], True
        embedding_dim = modules[layer_name].in_features
        classifier_name = layer_name
    elif layer_name not in modules or not layer_name:
        close = difflib.get_close_matches(layer_name, [n for n in modules if n], n=5)
        raise ValueError(f"no layer named {layer_name!r}"
                         + (f"; did you mean {', '.join(map(repr, close))}?" if close else
                            "; see list_layers(model, example) for the names"))
    elif isinstance(modules[layer_name], nn.Linear):
        embedding_dim = modules[layer_name].out_features
    else:
        if example is None:
            raise ValueError(f"cutting after {layer_name!r} needs an example input to know "
                             "the embedding size: pass example=...")
        embedding_dim = _flat_size(_output_shape(model, modules[layer_name], example,
                                                 layer_name))
    if head is not None and head.input_dim != embedding_dim:
        raise ValueError(f"the head expects {head.input_dim} dimensions but the cut at "
                         f"{layer_name!r} gives {embedding_dim}")
    if freeze and freeze is not True:
        params = dict(model.named_parameters())
        for prefix in freeze:
            if not any(n == prefix or n.startswith(prefix + ".") for n in params):
                raise ValueError(f"freeze: {prefix!r} matches no parameter of the model")
    if classifier_name is not None:
        # drop the classifier, as Finetuner's tailor did: the cut is at its input, and an
        # Identity in its place leaves no unused parameters behind
        parent_name, _, child = classifier_name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, child, nn.Identity())
    if freeze is True:
        for p in model.parameters():
            p.requires_grad_(False)
    elif freeze:
        params = dict(model.named_parameters())
        for prefix in freeze:
            for n in params:
                if n == prefix or n.startswith(prefix + "."):
                    params[n].requires_grad_(False)
    if output_dim is not None:
        device, _ = _placement(model)
        with torch.device(device or "cpu"):      # made where the encoder lives, not copied there
            head = ProjectionHead(embedding_dim, output_dim=output_dim)
    return EmbeddingModel(model, layer_name, before=before, embedding_dim=embedding_dim,
                          head=head)


@torch.no_grad()
def cache_embeddings(model: EmbeddingModel, x: torch.Tensor, batch_size: int = 512
                     ) -> torch.Tensor:
    """The encoder's embeddings of all of ``x``, computed once in eval mode: (N, D).

    With a frozen encoder the embeddings never change (as long as the inputs do not:
    random augmentation would be lost by caching), so a head can be trained on this cache
    instead of running the encoder at every step. Raises if the encoder is trainable:
    its embeddings would change during training, and eval-mode embeddings would differ
    from those training sees.
    """
    if not model.encoder_frozen:
        raise ValueError("cache_embeddings needs a frozen encoder (to_embedding_model(..., "
                         "freeze=True)); a trainable encoder's embeddings change as it trains")
    was = model.encoder.training
    model.encoder.eval()
    try:
        return torch.cat([model.embed(x[i:i + batch_size]) for i in range(0, len(x),
                                                                          batch_size)])
    finally:
        model.encoder.train(was)
