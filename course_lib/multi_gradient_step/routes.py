"""The two ways into a multi-gradient training step, made for every method by one factory.

* **clean**: a model class whose ``train_step`` is the skeleton (:class:`MultiGradientTrainStep`
  before ``keras.Model`` or ``keras.Sequential``); it saves and loads as a ``.keras`` file with
  its settings;
* **intrusive**: ``inject_<method>(model, ...)`` swaps a compiled standard model's
  ``train_function`` for Keras's own train function around the skeleton, tagged so that
  ``is_<method>_injected`` recognises it and ``eject_<method>`` removes it (``compile`` removes
  it too). ``evaluate`` and ``predict`` are unchanged.

A method supplies a :class:`MethodFamily`: its name, and its settings, a frozen dataclass of
:class:`MethodSettings` whose fields are the constructor's keyword arguments and which makes the
method's rule and controller. :func:`routes` returns the mixin, the functional and Sequential
model classes and the three functions of injection.
"""

from __future__ import annotations

from course_lib.multi_gradient_step import after_each_step, make_train_function, train_step
from course_lib.multi_gradient_step.records import Method

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import keras

__all__ = [
    "MethodFamily",
    "MethodSettings",
    "MultiGradientTrainStep",
    "Routes",
    "require_optimizer",
    "routes",
]


class MethodSettings:
    """A method's settings, checked: subclass it as a frozen dataclass of constructor arguments.

    :meth:`method` makes the rule (and the controller, whose variables ``model`` owns on the
    clean route); :meth:`to_config` is what a saved model keeps.
    """

    def method(self, model: keras.Model, intrusive: bool, where: str) -> Method:
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        """The settings as constructor keyword arguments, JSON-friendly."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MethodFamily:
    """How a method names itself and what it is made of, for :func:`routes`."""

    #: "SAM", "Runge–Kutta", in messages.
    name: str
    #: Names the classes ("SAMModel", "SAMSequential") and the functions ("inject_sam").
    class_prefix: str
    function_suffix: str
    settings: type[MethodSettings]
    #: What the clean route's models set in their constructor ("rho", "its tableau").
    setting: str
    #: Finishes the sentence "Call model.compile(...) first;".
    needs_optimizer: str
    #: Finishes the docstring "compile it with ...".
    compile_hint: str
    #: Where the model classes are registered for saving.
    package: str = "course_lib"

    @property
    def tag(self) -> str:
        """The attribute that marks a train function installed by the injection."""
        return f"_{self.function_suffix}_settings"


class Routes(NamedTuple):
    """What :func:`routes` makes for one method."""

    mixin: type
    model: type
    sequential: type
    inject: Callable[..., keras.Model]
    is_injected: Callable[[keras.Model], bool]
    eject: Callable[[keras.Model], keras.Model]


def require_optimizer(model: keras.Model, where: str, why: str) -> keras.optimizers.Optimizer:
    """Return the compiled optimizer, or raise a clear error if there is none or it scales the
    loss by a fixed ``loss_scale_factor``.

    ``why`` finishes the sentence "Call model.compile(...) first;" for the method at hand. A
    ``LossScaleOptimizer`` (mixed precision) is welcome: the skeleton scales the loss of every
    pass and skips a step with a gradient that is not finite
    (:mod:`course_lib.multi_gradient_step.loss_scaling`).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(model, "compiled", False):
        raise ValueError(
            f"{where}: model {getattr(model, 'name', model)!r} has no optimizer. Call "
            f"model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=...) first; "
            f"{why}"
        )
    if optimizer.loss_scale_factor is not None:
        raise ValueError(
            f"{where}: the optimizer has loss_scale_factor={optimizer.loss_scale_factor!r}, a "
            "fixed loss scale, which a multi-gradient step does not support: the optimizer "
            "would divide the direction by a scale the step never multiplied, and a gradient "
            "that overflows would be applied. Leave loss_scale_factor unset and wrap the "
            "optimizer in keras.optimizers.LossScaleOptimizer (dynamic loss scaling; compile() "
            "does it under a mixed_float16 policy)."
        )
    return optimizer


def _check_compiled(model: keras.Model, family: MethodFamily, method: Method, where: str) -> None:
    require_optimizer(model, where, family.needs_optimizer)
    if method.check is not None:
        method.check(model, where)


def _with_controller(function: Callable, model: keras.Model, method: Method) -> Callable:
    """The train function, followed by the controller's check of each step's logs."""
    if method.controller is None:
        return function
    return after_each_step(function, model, method.controller.check_logs)


class MultiGradientTrainStep:
    """Mixin: a ``train_step`` that runs the skeleton with the model's method.

    :func:`routes` makes one per method (it sets :attr:`step_family`). Put it before the Keras
    model class and call :meth:`_configure_step` with the settings in ``__init__``; they are
    saved in the model's config.
    """

    step_family: ClassVar[MethodFamily]
    step_settings: MethodSettings
    step_method: Method

    def _configure_step(self, **settings: Any) -> None:
        self.step_settings = self.step_family.settings(**settings)
        self.step_method = self.step_settings.method(
            self, intrusive=False, where=type(self).__name__
        )

    def train_step(self, *args: Any) -> Any:
        """TensorFlow: ``train_step(data) -> logs``; JAX: ``train_step(state, data) -> (logs,
        state)``, a pure function of the state."""
        return train_step(self, self.step_method, *args)

    def make_train_function(self, force: bool = False):
        """The train function of both routes: Keras's own around the skeleton's step."""
        if self.train_function is not None and not force:
            return self.train_function
        _check_compiled(self, self.step_family, self.step_method, f"{type(self).__name__}.fit")
        function = make_train_function(self, self.step_method)
        self.train_function = _with_controller(function, self, self.step_method)
        return self.train_function

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(self.step_settings.to_config())
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None):
        """Rebuild the model, then its settings (``Sequential.from_config`` drops them)."""
        config = dict(config)
        names = [f.name for f in dataclasses.fields(cls.step_family.settings)]
        settings = {name: config.pop(name) for name in names if name in config}
        model = super().from_config(config, custom_objects=custom_objects)
        cls._configure_step(model, **settings)
        return model


def _settings_signature(family: MethodFamily) -> str:
    fields = dataclasses.fields(family.settings)
    return ", ".join(f"{f.name}={f.default!r}" for f in fields)


def _mixin(family: MethodFamily, attributes: Mapping[str, Any]) -> type:
    """The method's mixin, with a read-only property per setting (``sam_rho``)."""

    def setting(name: str) -> property:
        return property(lambda self: getattr(self.step_settings, name), doc=f"The {name} set.")

    namespace: dict[str, Any] = {
        f"{family.function_suffix}_{f.name}": setting(f.name)
        for f in dataclasses.fields(family.settings)
    }
    namespace.update(attributes, step_family=family, __module__=family.settings.__module__)
    namespace["__doc__"] = (
        f"Mixin: a ``train_step`` that takes {family.name} steps. Put it before the Keras model "
        f"class and call ``self._configure_step({_settings_signature(family)})`` in "
        "``__init__``."
    )
    return type(f"{family.class_prefix}TrainStep", (MultiGradientTrainStep,), namespace)


def _model_class(family: MethodFamily, mixin: type, base: type, kind: str, call: str) -> type:
    """``mixin`` before ``base``: the settings come as keyword arguments of the constructor."""
    names = [f.name for f in dataclasses.fields(family.settings)]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = {name: kwargs.pop(name) for name in names if name in kwargs}
        # super(), not base.__init__: Keras rebases a functional subclass onto Functional.
        super(cls, self).__init__(*args, **kwargs)
        self._configure_step(**settings)

    name = f"{family.class_prefix}{kind}"
    doc = (
        f"A {kind if kind == 'Sequential' else 'functional'} model trained by {family.name} "
        f"steps: ``{name}({call}, {_settings_signature(family)})``.\n\nCompile it with "
        f"{family.compile_hint}. Saves to ``.keras`` with its settings."
    )
    namespace = {"__init__": __init__, "__doc__": doc, "__module__": mixin.__module__}
    cls = type(name, (mixin, base), namespace)
    return keras.saving.register_keras_serializable(package=family.package)(cls)


def _injection(family: MethodFamily) -> tuple[Callable, Callable, Callable]:
    """``inject``, ``is_injected`` and ``eject`` for ``family``'s method."""
    where = f"inject_{family.function_suffix}"

    def inject(model: keras.Model, *args: Any, **kwargs: Any) -> keras.Model:
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"{where}: model must be a keras.Model, got {type(model).__name__}; build and "
                "compile a Keras model first."
            )
        if isinstance(model, MultiGradientTrainStep):
            raise TypeError(
                f"{where}: model {model.name!r} is already a {type(model).__name__}, which owns "
                f"its training step; set {model.step_family.setting} in its constructor "
                "instead of injecting."
            )
        settings = family.settings(*args, **kwargs)
        method = settings.method(model, intrusive=True, where=where)
        _check_compiled(model, family, method, where)
        function = _with_controller(make_train_function(model, method), model, method)

        def train_function(*call_args: Any) -> Any:
            return function(*call_args)

        setattr(train_function, family.tag, settings)
        model.train_function = train_function
        return model

    def is_injected(model: keras.Model) -> bool:
        return hasattr(getattr(model, "train_function", None), family.tag)

    def eject(model: keras.Model) -> keras.Model:
        if not is_injected(model):
            raise ValueError(
                f"model {getattr(model, 'name', model)!r} has no injected {family.name} step (it "
                "was never injected, or compile() already removed it)."
            )
        model.train_function = None
        return model

    parameters = inspect.signature(family.settings).parameters.values()
    model_parameter = inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    inject.__signature__ = inspect.Signature([model_parameter, *parameters])
    docs = {
        inject: (
            f"Make a compiled standard model's ``fit`` take {family.name} steps; returns the "
            "model.\n\nNothing is rebuilt: only ``model.train_function`` is replaced, so "
            f"``evaluate`` and ``predict`` are unchanged. ``compile`` or ``eject_"
            f"{family.function_suffix}`` undoes it; saving an injected model saves the "
            "standard model."
        ),
        is_injected: f"Whether ``model.train_function`` was installed by ``{where}``.",
        eject: f"Undo ``{where}``: the next ``fit`` builds Keras's standard step again.",
    }
    names = {inject: where, is_injected: f"is_{family.function_suffix}_injected"}
    names[eject] = f"eject_{family.function_suffix}"
    for function, doc in docs.items():
        function.__name__ = function.__qualname__ = names[function]
        function.__doc__ = doc
        function.__module__ = family.settings.__module__
    return inject, is_injected, eject


def routes(family: MethodFamily, **mixin_attributes: Any) -> Routes:
    """The mixin, the two model classes and injection for ``family``'s method.

    ``mixin_attributes`` (properties, say) join the mixin, and so both model classes.
    """
    mixin = _mixin(family, mixin_attributes)
    model = _model_class(family, mixin, keras.Model, "Model", "inputs=..., outputs=...")
    sequential = _model_class(family, mixin, keras.Sequential, "Sequential", "layers")
    return Routes(mixin, model, sequential, *_injection(family))
