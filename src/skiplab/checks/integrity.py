"""Guarding the grading kernel: did the submission change the checkers or what they use?

A submission runs in the same Python process as the checks that grade it, so it can
rebind ``skiplab.checks.check_gated_head`` or ``torch.allclose`` before the checks run.
:class:`Snapshot` records, before any submitted cell runs, the identity of every function,
class and constant of the ``skiplab`` modules (with each function's code and defaults),
of the public callables of ``torch``, ``torch.nn.functional``, ``torch.autograd`` and a few
standard modules, and of the attributes of ``torch.Tensor`` and every ``torch.nn`` module
class; :meth:`Snapshot.changes` lists what no longer matches.

:func:`install_grading_guard` is what ``tools/assignments.py grade`` runs in each grading
kernel before the notebook (an IPython startup file). It patches otter-grader's test runner
so that each test file

- is refused (all its cases fail with ``IntegrityError: ...``) when the snapshot no longer
  matches, before or after it runs, and the final results say so;
- costs only its own points when the code it runs raises ``SystemExit``,
  ``GeneratorExit`` or ``KeyboardInterrupt`` (otter catches ``Exception`` only, so one
  ``sys.exit()`` used to lose the whole notebook's results).

This raises the bar; it is not a sandbox. Code in the same process can reach the snapshot
itself (through ``gc``) and undo the guard; ``book/teachers.md`` states the trust model.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from builtins import hash as _hash
from builtins import id as _id
from builtins import isinstance as _isinstance
from collections.abc import Iterator
from typing import Any

__all__ = ["GUARD_REPORT_PREFIX", "Snapshot", "install_grading_guard"]

GUARD_REPORT_PREFIX = "skiplab grading guard:"

_STANDARD = ("builtins", "copy", "math", "numbers", "functools", "torch", "torch.nn",
             "torch.nn.functional", "torch.nn.init", "torch.autograd", "torch.random",
             "torch.optim", "torch.linalg", "torch.overrides")
# attributes Python itself adds to a class as caches (pickling adds __slotnames__)
_CACHES = frozenset({"__slotnames__", "__annotations__", "_abc_impl"})
# the builtins the checkers use (IPython and ipykernel rebind others, e.g. input, display)
_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "callable", "dict", "enumerate", "float", "getattr", "hasattr",
    "hash", "id", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min",
    "next", "object", "range", "repr", "reversed", "round", "set", "setattr", "sorted", "str",
    "sum", "super", "tuple", "type", "vars", "zip"})


def _watched_modules() -> Iterator[tuple[str, types.ModuleType, bool]]:
    """(name, module, every attribute?) for the modules whose attributes are recorded."""
    for name in _STANDARD:
        module = sys.modules.get(name) or importlib.import_module(name)
        yield name, module, False
    for name in sorted(sys.modules):
        module = sys.modules[name]
        if (name == "skiplab" or name.startswith("skiplab.")) and isinstance(module,
                                                                              types.ModuleType):
            # the checkers' own modules: everything, constants included; the rest of the
            # library (whose modules may cache state): its functions and classes
            yield name, module, name.startswith("skiplab.checks")


def _settle_torch() -> None:
    """Let torch make the changes it makes to itself on first use, before the snapshot: the
    first optimizer of a class wraps its ``step`` (profiling hooks), and creating one imports
    ``torch._dynamo``, which wraps ``torch.manual_seed``."""
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    for value in list(vars(torch.optim).values()):
        if isinstance(value, type) and issubclass(value, torch.optim.Optimizer) and (
                value is not torch.optim.Optimizer):
            try:
                value([param])
            except Exception:  # noqa: BLE001 - some need arguments; they are settled by others
                pass


def _watched_classes() -> Iterator[type]:
    import torch
    from torch import nn

    yield from (torch.Tensor, torch._C.TensorBase, nn.Module, nn.Parameter,
                torch.overrides.TorchFunctionMode)
    for value in vars(nn).values():
        if isinstance(value, type) and issubclass(value, nn.Module):
            yield value
    for value in vars(torch.optim).values():
        if isinstance(value, type):
            yield value


def _fingerprint(value: Any, depth: int = 0) -> tuple[Any, ...]:
    """What must stay the same: the object, and for a function its code, defaults, the
    contents of its closure and the function it wraps (a checker's body sits in the closure
    of its :func:`~skiplab.checks.core.guarded` wrapper).

    (The builtins used here are bound when this module is imported, before a submission
    runs, so rebinding ``builtins.isinstance`` does not blind the guard.)"""
    if _isinstance(value, types.FunctionType):
        cells = []
        for cell in value.__closure__ or ():
            try:
                cells.append(_fingerprint(cell.cell_contents, depth + 1) if depth < 2
                             else _id(cell.cell_contents))
            except ValueError:              # an empty cell
                cells.append(None)
        wrapped = value.__dict__.get("__wrapped__")
        return (_id(value), _id(value.__code__), _id(value.__defaults__),
                _id(value.__kwdefaults__), tuple(cells),
                _fingerprint(wrapped, depth + 1) if wrapped is not None and depth < 2 else None)
    try:
        return (_id(value), _hash(value))
    except TypeError:
        return (_id(value),)


class Snapshot:
    """The identities of the objects the checkers rely on, taken at one moment."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[Any, ...]] = {}
        self.keep: list[Any] = []   # holds every recorded object, so no id is reused
        self.modules: dict[str, types.ModuleType] = {}
        self.classes: dict[str, type] = {}
        self.names: dict[str, frozenset[str]] = {}   # a class's own attribute names

    @classmethod
    def take(cls) -> Snapshot:
        importlib.import_module("skiplab.checks")
        _settle_torch()
        snap = cls()
        for name, module, everything in _watched_modules():
            snap.modules[name] = module
            for attr, value in list(vars(module).items()):
                if name == "builtins" and attr not in _BUILTINS:
                    continue
                if not everything and (not callable(value) or isinstance(value, types.ModuleType)
                                       or (attr.startswith("_") and not name.startswith(
                                           "skiplab"))):
                    continue
                if everything and attr.startswith("__") and attr.endswith("__"):
                    continue
                snap._record(f"{name}.{attr}", value)
                if isinstance(value, type) and value.__module__ == name and name.startswith(
                        "skiplab"):
                    snap._record_class(f"{name}.{attr}", value)
        for cls_ in _watched_classes():
            snap._record_class(f"{cls_.__module__}.{cls_.__qualname__}", cls_)
        return snap

    def _record(self, key: str, value: Any) -> None:
        self.entries[key] = _fingerprint(value)
        self.keep.append(value)

    def _record_class(self, key: str, cls: type) -> None:
        self.classes[key] = cls
        self.names[key] = frozenset(vars(cls))
        for attr in list(vars(cls)):
            if attr in ("__dict__", "__weakref__", "__doc__", "__annotations__"):
                continue
            self._record(f"{key}.{attr}", inspect.getattr_static(cls, attr))

    def add_class(self, cls: type) -> None:
        """Record a further class (the guard records its own patches of otter this way)."""
        self._record_class(f"{cls.__module__}.{cls.__qualname__}", cls)

    def changes(self) -> list[str]:
        """What differs from the snapshot, e.g. 'torch.allclose replaced'."""
        found = [f"sys.modules[{name!r}] replaced" for name, module in self.modules.items()
                 if sys.modules.get(name) is not module]
        for key, names in self.names.items():   # a new name shadows an inherited one
            added = set(vars(self.classes[key])) - names - _CACHES
            found += [f"{key}.{attr} added" for attr in sorted(added)]
        for key, fingerprint in self.entries.items():
            owner, _, attr = key.rpartition(".")
            present, value = _lookup(self.modules.get(owner) or self.classes.get(owner), attr)
            if not present:
                found.append(f"{key} deleted")
                continue
            now = _fingerprint(value)
            if now[0] != fingerprint[0]:
                found.append(f"{key} replaced")
            elif now != fingerprint:
                found.append(f"{key} changed (its code, defaults or value)")
        return found


def _lookup(owner: Any, attr: str) -> tuple[bool, Any]:
    """(found, value) of attribute ``attr`` of a module or class, without running code."""
    if _isinstance(owner, types.ModuleType):
        namespace = owner.__dict__
        return (attr in namespace, namespace.get(attr))
    if _isinstance(owner, type):
        try:
            return True, inspect.getattr_static(owner, attr)
        except AttributeError:
            return False, None
    return False, None


def _failure(error: BaseException) -> str:
    """The exception as the last line of a failed test case in otter's report. Not
    :func:`~skiplab.checks.core.say`: this line also covers KeyboardInterrupt, names the
    exit code as ``sys.exit(code)``, and ``tools/assignments.py`` reads it back."""
    if isinstance(error, SystemExit):
        return (f"SystemExit: the code called sys.exit({error.code!r}) (or exit(), quit()) "
                "during this check")
    if isinstance(error, (GeneratorExit, KeyboardInterrupt)):
        return f"{type(error).__name__}: raised by the code during this check"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def install_grading_guard() -> Snapshot:
    """Snapshot the checkers' world and patch otter's test runner (see the module docstring).

    Call it in the grading kernel before any submitted code runs. Returns the snapshot.
    """
    from otter.test_files import GradingResults
    from otter.test_files.abstract_test import TestCaseResult
    from otter.test_files.exception_test import ExceptionTestFile

    snapshot = Snapshot.take()
    changed_during: list[str] = []

    def refuse(test_file: ExceptionTestFile, changes: list[str]) -> None:
        text = "; ".join(changes[:4]) + (f" (and {len(changes) - 4} more)"
                                         if len(changes) > 4 else "")
        test_file.test_case_results = [
            TestCaseResult(test_case=tc, passed=False, message=(
                "❌ Test case failed\nIntegrityError: the submission changed the grading "
                f"environment: {text}")) for tc in test_file.test_cases]

    def run(self: ExceptionTestFile, global_environment: dict[str, Any]) -> None:
        changes = snapshot.changes()
        if changes:
            refuse(self, changes)
            return
        self.test_case_results = []
        for tc in self.test_cases:
            try:
                tc.body.call_func(global_environment)
                passed, message = True, "✅ Test case passed"
            except Exception as error:  # noqa: BLE001 - as otter does
                passed = False
                try:
                    message = "❌ Test case failed\n" + self._generate_error_message(error)
                except Exception:  # noqa: BLE001 - otter's message needs a deeper traceback
                    message = "❌ Test case failed\n" + _failure(error)
            except BaseException as error:  # noqa: BLE001 - SystemExit & co. cost this test
                passed, message = False, "❌ Test case failed\n" + _failure(error)
            self.test_case_results.append(
                TestCaseResult(test_case=tc, message=message, passed=passed))
        changes = snapshot.changes()
        if changes:
            changed_during.append(self.name)
            refuse(self, changes)

    original_init = GradingResults.__init__

    def init(self: GradingResults, test_files: list[Any], *args: Any, **kwargs: Any) -> None:
        original_init(self, test_files, *args, **kwargs)
        changes = snapshot.changes()
        if changes:
            for test_file in test_files:
                refuse(test_file, changes)
            self.output = f"{GUARD_REPORT_PREFIX} changed: " + "; ".join(changes[:4])
        elif changed_during:
            self.output = (f"{GUARD_REPORT_PREFIX} changed while {', '.join(changed_during)} "
                           "ran")
        else:
            self.output = f"{GUARD_REPORT_PREFIX} verified"

    ExceptionTestFile.run = run  # type: ignore[method-assign]
    GradingResults.__init__ = init  # type: ignore[method-assign]
    for cls in (ExceptionTestFile, GradingResults, TestCaseResult):
        snapshot.add_class(cls)
    return snapshot

