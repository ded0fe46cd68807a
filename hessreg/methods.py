"""The methods a run can use: each step of :mod:`hessreg.steps` with its hyperparameters, their defaults and
valid ranges — the registry readers extend.

``METHODS`` is the registry: name → :class:`Method` (the step function and its hyperparameters with
defaults and valid ranges). ``check_method`` validates a name and hyperparameters before any training.
A method of the reader's own is named ``package.module:attr`` wherever a method name goes (a Config, a chapter's
``methods`` parameter): :func:`import_method` resolves it, without registering it.

The steps are importable from here too (``from hessreg.methods import sam_step, sgd_step``), as the README's
example of a reader's own method does.
"""
from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable

from .steps import (StepOutput, asam_step, gn_psam_step, gn_trace_hutchinson_step, gn_trace_step,
                    gradient_penalty_step, hessian_trace_step, label_smoothing_step, nso_step, psam_step, pusam_step,
                    rsam_step, sam_step, sgd_step, trainable, weight_noise_step)
from .typecheck import conforms

__all__ = ["METHODS", "Hparam", "Method", "StepOutput", "check_method", "get_method", "import_method", "register",
           "trainable", "asam_step", "gn_psam_step", "gn_trace_hutchinson_step", "gn_trace_step",
           "gradient_penalty_step", "hessian_trace_step", "label_smoothing_step", "nso_step", "psam_step",
           "pusam_step", "rsam_step", "sam_step", "sgd_step", "weight_noise_step"]


@dataclass(frozen=True)
class Hparam:
    default: float | int | bool
    low: float | None = None  # inclusive lower bound
    high: float | None = None  # inclusive upper bound
    choices: tuple | None = None

    def check(self, method: str, name: str, value) -> None:
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{method}: {name} must be one of {self.choices}, got {value!r}")
        if isinstance(self.default, bool):
            if not conforms(value, bool):
                raise TypeError(f"{method}: {name} must be a bool, got {value!r}")
            return
        if not conforms(value, float) or not math.isfinite(value):  # an int-valued float is a valid int
            raise TypeError(f"{method}: {name} must be a finite number, got {value!r}")
        if isinstance(self.default, int) and not float(value).is_integer():
            raise TypeError(f"{method}: {name} must be an integer, got {value!r}")
        if self.low is not None and value < self.low:
            raise ValueError(f"{method}: {name} must be ≥ {self.low}, got {value!r}")
        if self.high is not None and value > self.high:
            raise ValueError(f"{method}: {name} must be ≤ {self.high}, got {value!r}")


@dataclass(frozen=True)
class Method:
    name: str
    step: Callable[..., StepOutput]
    hparams: dict[str, Hparam] = field(default_factory=dict)
    classification_only: bool = False  # needs logits over classes (sampled labels, softmax Hessian)

    def resolve(self, given: dict) -> dict:
        """Defaults filled in, unknown names and out-of-range values rejected; ints stay ints."""
        unknown = set(given) - set(self.hparams)
        if unknown:
            valid = ", ".join(sorted(self.hparams)) or "none"
            raise ValueError(f"method {self.name!r} has no hyperparameter(s) {sorted(unknown)}; valid: {valid}")
        out = {}
        for name, spec in self.hparams.items():
            value = given.get(name, spec.default)
            spec.check(self.name, name, value)
            if isinstance(spec.default, int) and not isinstance(spec.default, bool):
                value = int(value)
            elif isinstance(spec.default, float):
                value = float(value)
            out[name] = value
        return out


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method ``name``, or the reader's own one named ``package.module:attr`` (see
    :func:`import_method`)."""
    if ":" in name:
        return import_method(name)
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid choices: {', '.join(sorted(METHODS))}, or "
                         "'package.module:attr' for a method of your own")
    return METHODS[name]


_STEP_ARGS = ("model", "x", "y", "loss_fn")


def import_method(spec: str) -> Method:
    """A method from the reader's own module, named ``package.module:attr`` (the module importable from
    ``sys.path``, e.g. through ``PYTHONPATH``). The attribute is either a :class:`Method` (used as it is) or a
    plain step function ``step(model, x, y, loss_fn, **hparams) -> StepOutput`` whose hyperparameters are its
    keyword arguments after the first four, each with a default (a bool, int or float: the :class:`Hparam`
    default, no range). The method's name, as records and figures show it, is ``spec`` itself; the registry's
    own names never contain ':', so their records' keys do not change."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"method {spec!r}: expected 'package.module:attr'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"method {spec!r}: cannot import {module_name!r} ({e}); is its folder on sys.path "
                         "(PYTHONPATH)?") from e
    obj = getattr(module, attr, None)
    if isinstance(obj, Method):
        return obj
    if not callable(obj):
        raise ValueError(f"method {spec!r}: {module_name} has no Method or step function named {attr!r}")
    params = list(inspect.signature(obj).parameters.values())
    if [p.name for p in params[:4]] != list(_STEP_ARGS):
        raise ValueError(f"method {spec!r}: a step function's first arguments must be {', '.join(_STEP_ARGS)}; "
                         f"got ({', '.join(p.name for p in params)})")
    hparams = {}
    for p in params[4:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if isinstance(p.default, bool) or isinstance(p.default, (int, float)) and math.isfinite(p.default):
            hparams[p.name] = Hparam(p.default)
        else:
            raise ValueError(f"method {spec!r}: hyperparameter {p.name!r} needs a bool, int or float default, "
                             f"got {p.default!r} (or register a Method with its own Hparam)")
    return Method(spec, obj, hparams)


def check_method(name: str, hparams: dict, *, classification: bool = True) -> dict:
    """Validate a method name and its hyperparameters; returns them with defaults filled in."""
    method = get_method(name)
    if method.classification_only and not classification:
        raise ValueError(f"method {name!r} needs a classification (cross-entropy) loss")
    return method.resolve(dict(hparams))



# ---------------------------------------------------------------------------------------- the registry

register(Method("sgd", sgd_step))
register(Method("sam", sam_step, {"rho": Hparam(0.05, 0.0)}))
register(Method("asam", asam_step, {"rho": Hparam(0.5, 0.0), "eta": Hparam(0.01, 0.0)}))  # η: ASAM's ε on |w|
register(Method("rsam", rsam_step, {"rho": Hparam(0.05, 0.0), "sigma": Hparam(0.01, 0.0)}))
_RHO = Hparam(0.1, 0.0)
register(Method("gradient_penalty", gradient_penalty_step, {"rho": _RHO, "p": Hparam(1, choices=(1, 2))}))
register(Method("psam", psam_step, {"rho": _RHO}))
register(Method("pusam", pusam_step, {"rho": _RHO}))
register(Method("gn_psam", gn_psam_step, {"rho": _RHO}))
_SIGMA2 = Hparam(1e-4, 0.0)
_PROBES = Hparam(1, 1)
register(Method("weight_noise", weight_noise_step, {"sigma": Hparam(0.01, 0.0)}))
register(Method("hessian_trace", hessian_trace_step, {"sigma2": _SIGMA2, "n_probes": _PROBES}))
register(Method("gn_trace", gn_trace_step, {"sigma2": _SIGMA2}, classification_only=True))
register(Method("gn_trace_hutchinson", gn_trace_hutchinson_step, {"sigma2": _SIGMA2, "n_probes": _PROBES},
                classification_only=True))
register(Method("nso", nso_step, {
    "sigma": Hparam(0.01, 0.0),  # noise std σ of U ∼ N(0, σ²I)
    "k": Hparam(1, 1),  # noise draws per step
    "two_sided": Hparam(True),  # average ∇L(θ ± U) (else only θ + U)
    "lam": Hparam(0.0, 0.0, 1.0),  # weight λ of the clean gradient
}))
register(Method("label_smoothing", label_smoothing_step, {"alpha": Hparam(0.2, 0.0, 1.0)}, classification_only=True))
