"""Models: the built-in CNN and MLP, `make_model` for any ``nn.Module`` a config names, and `ModelAdapter`.

The ``model`` config group instantiates any ``nn.Module`` by ``_target_``; `make_model` fills the
constructor arguments that depend on the data (``input_shape``, ``num_classes``, ``in_channels``,
``input_size``, ``in_features``) when the constructor takes them and the config leaves them out.

`ModelAdapter` gives selectors and tasks what they need from a network without asking users to change
it: the embedding comes from a named layer (``model.embedding_layer``, through a forward hook), else from
an ``embed`` method, else from the input of the classifier head (the network's last ``nn.Linear``
when it has ``num_classes`` outputs, or ``model.head_layer``). The built-in models have ``embed`` and
``head``. Where the model has no ``head``, the map from embeddings back to outputs (SMOTE in embedding
space needs it) is the chain of modules that runs after the embedding, found from one forward pass
(`ModelAdapter.output_map`).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from selectkit.errors import ConfigError


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (the first two max-pooled), a pooled linear embedding and a linear head.

    About 90k parameters at ``width=32``; a few CPU epochs reach roughly 90% on Fashion-MNIST.

    Args:
        in_channels: image channels.
        num_classes: output classes.
        input_size: height (= width) of the input images; at least 4 (two 2x poolings).
        width: channels of the first block; the later blocks have twice as many.
        embedding_dim: width of the embedding (penultimate) layer.
        dropout: dropout on the embedding during training.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        width: int = 32,
        embedding_dim: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_positive("model.width", width)
        _check_positive("model.embedding_dim", embedding_dim)
        _check_dropout(dropout)
        if int(input_size) < 4:
            raise ConfigError(f"model: the cnn needs images of at least 4x4 pixels, got {input_size}x{input_size}; use model=mlp")
        wide = 2 * width
        pooled = min(2, int(input_size) // 4)

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, width),
            nn.MaxPool2d(2),
            *block(width, wide),
            nn.MaxPool2d(2),
            *block(wide, wide),
            nn.AdaptiveAvgPool2d(pooled),
            nn.Flatten(),
        )
        self.project = nn.Sequential(nn.Linear(wide * pooled * pooled, embedding_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.classifier = nn.Linear(embedding_dim, num_classes)
        self.embedding_dim = int(embedding_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, ``[N, embedding_dim]``."""
        return self.project(self.features(x))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Logits from embedding-space features."""
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, ``[N, num_classes]``."""
        return self.head(self.embed(x))


class MLP(nn.Module):
    """Flatten, then Linear-ReLU-Dropout blocks; the last hidden layer is the embedding.

    Args:
        in_features: flattened input size.
        hidden: widths of the hidden layers (empty: the flattened input is the embedding).
        num_classes: output classes.
        dropout: dropout after each hidden layer.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (256, 128), num_classes: int = 10, dropout: float = 0.1) -> None:
        super().__init__()
        _check_dropout(dropout)
        layers: list[nn.Module] = [nn.Flatten()]
        width = int(in_features)
        for i, h in enumerate(hidden):
            _check_positive(f"model.hidden.{i}", h)
            layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = int(h)
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.embedding_dim = width

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, ``[N, embedding_dim]``."""
        return self.body(x)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Logits from embedding-space features."""
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, ``[N, num_classes]``."""
        return self.head(self.embed(x))


def _check_positive(key: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")


def _check_dropout(value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ConfigError(f"model.dropout must be a number in [0, 1), got {value!r}")


#: Built-in model names (the options of the ``model`` config group) and their classes.
MODELS: dict[str, type] = {"cnn": SmallCNN, "mlp": MLP}


#: constructor arguments `make_model` fills from the data, by name
DATA_ARGUMENTS = ("in_features", "in_channels", "input_size", "input_shape", "num_classes")


def data_arguments(input_shape: Sequence[int], num_classes: int | None) -> dict[str, object]:
    """The constructor arguments a model may take from the data, by their conventional names."""
    shape = tuple(int(s) for s in input_shape)
    args: dict[str, object] = {"input_shape": shape, "in_features": math.prod(shape)}
    if shape:
        args["in_channels"] = shape[0]
        args["input_size"] = shape[-1]
    if num_classes is not None:
        args["num_classes"] = int(num_classes)
    return args


def make_model(factory: Callable[..., nn.Module], input_shape: Sequence[int], num_classes: int | None, /, *, setting: str = "model", **kwargs) -> nn.Module:
    """``factory(**kwargs)`` plus the data arguments it accepts and ``kwargs`` leave out.

    An argument the factory does not take raises `ConfigError` naming ``<setting>.<key>``.
    """
    if len(input_shape) < 1 or any(int(s) < 1 for s in input_shape):
        raise ConfigError(f"{setting}: input shape {tuple(input_shape)} is not a channels-first shape")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    given = set(kwargs)
    for key in given:
        if key not in params and not open_kwargs:
            allowed = [p for p in params if p not in data_arguments(input_shape, num_classes) and p != "self"]
            raise ConfigError(f"{setting}.{key} is not a setting of {getattr(factory, '__name__', factory)}; its settings: {', '.join(allowed) or 'none'}")
    filled = data_arguments(input_shape, num_classes)
    extra = {k: v for k, v in filled.items() if k in params and k not in given}
    missing = [
        k for k, p in params.items()
        if k != "self" and p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k not in given and k not in extra
    ]
    if missing:
        name = getattr(factory, "__name__", factory)
        unfilled = " (the data has no classes)" if "num_classes" in missing and num_classes is None else ""
        raise ConfigError(
            f"{setting}: {name} needs {', '.join(missing)}, which selectkit does not fill{unfilled}; it fills "
            f"{', '.join(DATA_ARGUMENTS)} from the data; set the others as {setting}.<name>, e.g. {setting}.{missing[0]}=..."
        )
    model = factory(**kwargs, **extra)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{setting}._target_ must build a torch.nn.Module, got {type(model).__name__}")
    return model


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> nn.Module:
    """The built-in model ``name`` (``cnn`` | ``mlp``) for channels-first inputs of ``input_shape``.

    ``kwargs`` are the remaining ``model.*`` settings (e.g. ``width`` for the CNN, ``hidden`` and
    ``dropout`` for the MLP); an unknown one raises `ConfigError` naming it.
    """
    if name not in MODELS:
        raise ConfigError(f"model.name must be one of {', '.join(MODELS)}, got {name!r}")
    return make_model(MODELS[name], input_shape, num_classes, **kwargs)


# ====================================================================================== adapter
class ModelAdapter:
    """Embeddings, the classifier head and dropout control for any ``nn.Module``.

    Args:
        model: the network; ``model(x)`` returns the task's output (logits for classification).
        embedding_layer: dotted name of the submodule whose output is the embedding (``model.embedding_layer``).
        head_layer: dotted name of the ``nn.Linear`` classifier head (``model.head_layer``); found by
            itself when unset: the network's last ``nn.Linear``, when it has ``num_classes`` outputs
            (an inner layer that happens to have that width is never taken for the head).
        num_classes: classes of a classification task (None for other tasks).
    """

    def __init__(self, model: nn.Module, *, embedding_layer: str | None = None, head_layer: str | None = None, num_classes: int | None = None) -> None:
        self.model = model
        self.embedding_layer = embedding_layer
        self.head_layer = head_layer
        self.num_classes = num_classes
        self._embed_module = self._submodule(embedding_layer, "model.embedding_layer") if embedding_layer else None
        self._output_map: Callable[[torch.Tensor], torch.Tensor] | None = None
        if head_layer:
            head = self._submodule(head_layer, "model.head_layer")
            if not isinstance(head, nn.Linear):
                raise ConfigError(f"model.head_layer: {head_layer!r} is a {type(head).__name__}, not an nn.Linear")
            self._head: nn.Linear | None = head
        else:
            self._head = self._find_head()

    def _submodule(self, name: str, setting: str) -> nn.Module:
        try:
            return self.model.get_submodule(name)
        except AttributeError:
            names = [n for n, _ in self.model.named_modules() if n][:12]
            raise ConfigError(f"{setting}: {type(self.model).__name__} has no layer {name!r}; its layers include {', '.join(names)}") from None

    def _find_head(self) -> nn.Linear | None:
        if self.num_classes is None:
            return None
        last = None
        for module in self.model.modules():
            if isinstance(module, nn.Linear):
                last = module
        return last if last is not None and last.out_features == self.num_classes else None

    @property
    def head(self) -> nn.Linear | None:
        """The classifier head (``nn.Linear``), or None when the network has none."""
        return self._head

    def _capture(self, module: nn.Module, x: torch.Tensor, *, inputs: bool) -> tuple[torch.Tensor, torch.Tensor]:
        store: list[torch.Tensor] = []
        if inputs:
            handle = module.register_forward_pre_hook(lambda m, args: store.append(args[0]))
        else:
            handle = module.register_forward_hook(lambda m, args, out: store.append(out))
        try:
            out = self.model(x)
        finally:
            handle.remove()
        if not store:
            raise ConfigError(f"model: the layer chosen for embeddings ({type(module).__name__}) did not run in forward()")
        return out, store[-1]

    def describe_embedding(self) -> str:
        """Where embeddings come from, for error messages and logs."""
        if self._embed_module is not None:
            return f"layer {self.embedding_layer!r}"
        if callable(getattr(self.model, "embed", None)):
            return "embed()"
        if self._head is not None:
            return "the input of the classifier head"
        return "nothing"

    def outputs_and_embeddings(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(model(x), embedding [b, d])`` from one forward pass where the network allows it."""
        if self._embed_module is not None:
            out, z = self._capture(self._embed_module, x, inputs=False)
        elif callable(getattr(self.model, "embed", None)) and callable(getattr(self.model, "head", None)):
            z = self.model.embed(x)
            out = self.model.head(z)
        elif self._head is not None:
            out, z = self._capture(self._head, x, inputs=True)
        elif callable(getattr(self.model, "embed", None)):
            return self.model(x), self.model.embed(x).flatten(1)
        else:
            raise ConfigError(
                f"model: {type(self.model).__name__} has no embed() method and no classifier head; "
                "set model.embedding_layer to the layer whose output is the embedding"
            )
        return out, z.flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding of ``x``, ``[b, d]``."""
        if self._embed_module is None and callable(getattr(self.model, "embed", None)):
            return self.model.embed(x).flatten(1)
        return self.outputs_and_embeddings(x)[1]

    def logits_from_embedding(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """The model's outputs for embedding-space points ``z`` ``[b, d]``, through `output_map`
        (found on the inputs ``x`` the first time, when the model has no ``head()``)."""
        return self.output_map(x)(z)

    def output_map(self, x: torch.Tensor | None, *, needed_by: str = "model") -> Callable[[torch.Tensor], torch.Tensor]:
        """The function ``f`` from embeddings ``[b, d]`` to the model's outputs, ``f(embed(x)) == model(x)``.

        * With ``embed()`` and ``head()`` on the model (and ``model.embedding_layer`` unset): ``head``.
        * Otherwise the modules that run after the embedding is made, where they form a chain: one
          forward pass of ``x`` (eval mode, no gradients) walks back from the output through the module
          calls, each call's one input being the tensor an earlier call returned, until it reaches the
          embedding (``model.embedding_layer``'s output, else the classifier head's input; with
          ``embed()`` but no ``head()``, ``embed(x)`` must equal the head's input). The chain must then
          give ``model(x)`` from the embedding. An operation that is not a module call between the
          embedding and the output (``torch.relu(h)``, a reshape, a skip connection) breaks the chain.

        Found once and kept. `ConfigError` naming ``model.embedding_layer`` and ``needed_by`` (the
        setting that needs the map) when there is no such function.
        """
        if self._output_map is not None:
            return self._output_map
        if self._embed_module is None and callable(getattr(self.model, "embed", None)) and callable(getattr(self.model, "head", None)):
            self._output_map = self.model.head
            return self._output_map
        if x is None:
            raise ConfigError(f"{needed_by}: the map from {self.describe_embedding()} to {type(self.model).__name__}'s outputs is found from a batch of inputs, and none was given")
        with probing(self.model):
            self._output_map = self._trace_chain(x, needed_by)
        return self._output_map

    def _trace_chain(self, x: torch.Tensor, needed_by: str) -> Callable[[torch.Tensor], torch.Tensor]:
        name = type(self.model).__name__
        start = self._embed_module if self._embed_module is not None else self._head
        what = f"the output of model.embedding_layer={self.embedding_layer!r}" if self._embed_module is not None else "the classifier head's input"

        def refuse(reason: str) -> ConfigError:
            return ConfigError(
                f"{needed_by} needs {name}'s outputs as a function of its embeddings, and {reason}; set model.embedding_layer "
                "to a layer whose output reaches the output through module calls only, or define embed() and head() on the model"
            )

        if start is None:
            raise refuse("it has no head() method, no model.embedding_layer and no classifier head (an nn.Linear with num_classes outputs, or model.head_layer)")
        calls: list[tuple[nn.Module, tuple, dict, object]] = []
        watched = [m for m in self.model.modules() if m is start or next(m.children(), None) is None]
        handles = [m.register_forward_hook(lambda m, args, kwargs, out: calls.append((m, args, kwargs, out)), with_kwargs=True) for m in watched]
        try:
            out = self.model(x)
        finally:
            for h in handles:
                h.remove()
        runs = [c for c in calls if c[0] is start]
        if not runs:
            raise refuse(f"the layer chosen for embeddings ({type(start).__name__}) did not run in forward()")
        emb = runs[-1][1][0] if self._embed_module is None else runs[-1][3]
        if not isinstance(out, torch.Tensor) or not isinstance(emb, torch.Tensor):
            raise refuse(f"the output of forward() or {what} is not a tensor")
        chain: list[nn.Module] = []
        target = out
        for module, args, kwargs, result in reversed(calls):
            if target is emb:
                break
            if result is not target:
                continue
            if len(args) != 1 or kwargs or not isinstance(args[0], torch.Tensor):
                raise refuse(f"{type(module).__name__} between {what} and the output takes more than one input")
            chain.append(module)
            target = args[0]
        if target is not emb:
            raise refuse(f"{what} reaches the output through an operation that is not a module call")
        chain.reverse()
        shape = tuple(emb.shape[1:])

        def through_chain(z: torch.Tensor) -> torch.Tensor:
            h = z.reshape(z.shape[0], *shape)
            for module in chain:
                h = module(h)
            return h

        if self._embed_module is None and callable(getattr(self.model, "embed", None)):
            emb = self.model.embed(x)
            if emb.flatten(1).shape[1] != math.prod(shape):
                raise refuse(f"embed() gives {emb.flatten(1).shape[1]} values per item, and the classifier head takes {math.prod(shape)}")
        if not torch.allclose(through_chain(emb.flatten(1)), out, rtol=1e-4, atol=1e-5):
            raise refuse(f"the modules after {what} do not give the model's outputs from it")
        return through_chain

    def check_output_width(self, outputs: object) -> None:
        """Refuse outputs that are not ``[b, num_classes]`` (one logit per class), naming the setting."""
        n = self.num_classes
        if n is None or (isinstance(outputs, torch.Tensor) and outputs.ndim == 2 and outputs.shape[1] == n):
            return
        if not isinstance(outputs, torch.Tensor):
            raise ConfigError(f"model: {type(self.model).__name__} returns a {type(outputs).__name__}, not a tensor of {n} logits per item")
        width = math.prod(outputs.shape[1:])
        shown = f"{width}" if outputs.ndim <= 2 else f"{width} ({'x'.join(map(str, outputs.shape[1:]))})"
        cls = type(self.model)
        try:
            takes = "num_classes" in inspect.signature(cls).parameters
        except (TypeError, ValueError):
            takes = False
        fix = (
            f"set model.num_classes={n}, or leave it unset (it is filled from the data)"
            if takes
            else f"model._target_ ({cls.__name__}) takes no num_classes argument for selectkit to fill; give it one, or make its output {n} wide"
        )
        raise ConfigError(f"model outputs {shown} values per item; the data has {n} classes: {fix}")

    def has_dropout(self) -> bool:
        """Whether the network holds any dropout layer (MC dropout needs one)."""
        return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in self.model.modules())

    def dropout_only_train(self) -> list[nn.Module]:
        """Put the network in eval mode except its dropout layers; returns those layers."""
        self.model.eval()
        layers = [m for m in self.model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        for m in layers:
            m.train()
        return layers


@contextlib.contextmanager
def probing(model: nn.Module) -> Iterator[None]:
    """Run ``model`` for a check: eval mode, no gradients, torch's generators untouched; every module's
    own mode is restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            yield
    finally:
        for m, mode in modes:
            m.training = mode
