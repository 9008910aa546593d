"""Which code the enclave's measurement covers, and hashing exactly the source that runs.

The measured set is fixed and declared here, so the gateway can compute the expected measurement
from its own copy of the files without asking the enclave: every module of the packages in
:data:`MEASURED_PACKAGES` (the verifier and the wire protocol) plus the modules in
:data:`MEASURED_MODULES` (the enclave's own code, which holds the signing key, and what all of it
imports from thirdway). The code measurement is the module names, sorted, each with the SHA-256
of its source bytes: it does not depend on where the package is installed.

Inside the enclave a meta-path hook (:class:`MeasuringFinder`) loads every ``thirdway`` module
from its ``.py`` source, never from cached bytecode, and hashes the very bytes it compiles; a
module it cannot load from source (a lone ``.pyc``, a compiled extension) is refused. The few
bootstrap modules imported before the hook is installed (``thirdway``, ``thirdway.enclave``,
this module and the entry point) are hashed from their files. After start-up the enclave checks
that the thirdway modules it has loaded are exactly the measured set, so no unmeasured thirdway
code can run in it. Third-party libraries (pydantic, rfc8785, z3, cryptography) and the
interpreter are outside the code measurement; on hardware, the platform's own launch measurement
in the quote covers the image they come from.

This module imports only the standard library: it is loaded before the hook exists.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import pkgutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType

ROOT_PACKAGE = "thirdway"

MEASURED_PACKAGES: tuple[str, ...] = ("thirdway.protocol", "thirdway.verify")
"""Every module inside these packages is measured (and loaded by the enclave)."""

MEASURED_MODULES: tuple[str, ...] = (
    "thirdway",
    "thirdway.errors",
    "thirdway.enclave",
    "thirdway.enclave.attestation",
    "thirdway.enclave.measure",
    "thirdway.enclave.server",
    "thirdway.enclave.service",
    "thirdway.enclave.tsm",
    "thirdway.enclave.verdicts",
    "thirdway.enclave.wire",
)
"""Single modules measured: the package root, errors, and the enclave's own code."""


class MeasurementError(Exception):
    """The measured code cannot be listed, read or loaded from source (fail closed).

    Plain ``Exception``: this module may not import thirdway's error types. Callers turn it into
    an :class:`~thirdway.errors.EnclaveError`.
    """


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _in_thirdway(name: str) -> bool:
    return name == ROOT_PACKAGE or name.startswith(ROOT_PACKAGE + ".")


# --------------------------------------------------------------------------- the measured files


def _name_to_path(package_root: Path, name: str) -> Path:
    """Where a measured module's source is under ``package_root`` (the dir holding thirdway/)."""
    parts = name.split(".")
    base = package_root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py")


def _package_modules(package_root: Path, package: str) -> Iterable[str]:
    """``package`` and every module and subpackage below it, found like the import system does."""
    directory = package_root.joinpath(*package.split("."))
    if not (directory / "__init__.py").is_file():
        raise MeasurementError(f"measured package {package} not found under {package_root}")
    yield package
    for info in pkgutil.iter_modules([str(directory)]):
        if info.ispkg:
            yield from _package_modules(package_root, f"{package}.{info.name}")
        else:
            yield f"{package}.{info.name}"


def measured_module_names(package_root: Path) -> list[str]:
    """The sorted names of every module in the measured set, as found under ``package_root``."""
    names = set(MEASURED_MODULES)
    for package in MEASURED_PACKAGES:
        names.update(_package_modules(package_root, package))
    return sorted(names)


def code_digests(package_root: Path | None = None) -> dict[str, str]:
    """``{module name: SHA-256 of its source}`` for the measured set, read from files.

    This is how the gateway computes the code part of the expected measurement from its own
    copy of thirdway; ``package_root`` defaults to the directory holding the imported package.
    """
    root = package_root if package_root is not None else default_package_root()
    digests = {}
    for name in measured_module_names(root):
        path = _name_to_path(root, name)
        if path.suffix != ".py" or not path.is_file():
            raise MeasurementError(f"measured module {name} has no Python source at {path}")
        try:
            digests[name] = sha256_bytes(path.read_bytes())
        except OSError as exc:
            raise MeasurementError(f"cannot read measured module {name}: {exc}") from None
    return digests


def default_package_root() -> Path:
    """The directory that holds the ``thirdway`` package this interpreter imported."""
    root_module = sys.modules.get(ROOT_PACKAGE) or importlib.import_module(ROOT_PACKAGE)
    origin = getattr(root_module, "__file__", None)
    if origin is None:
        raise MeasurementError("the thirdway package has no source file to measure")
    return Path(origin).resolve().parent.parent


# --------------------------------------------------------------------------- the import hook


class MeasuringLoader(importlib.machinery.SourceFileLoader):
    """Loads a module from its ``.py`` source only and records the SHA-256 of those bytes."""

    def __init__(self, fullname: str, path: str, digests: dict[str, str]) -> None:
        super().__init__(fullname, path)
        self._digests = digests

    def get_data(self, path: str) -> bytes:
        # SourceLoader.get_code asks for the cached bytecode first and falls back to the source
        # on OSError: refusing every path but the source makes it compile what we hash.
        if path != self.path:
            raise OSError("measured modules are compiled from source, not bytecode")
        data = super().get_data(path)
        self._digests[self.name] = sha256_bytes(data)
        return data

    def set_data(self, path: str, data: object, *, _mode: int = 0o666) -> None:
        """Write no bytecode: the next enclave compiles from source again."""


class MeasuringFinder(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path``: finds thirdway modules on the path, loads them measured."""

    def __init__(self) -> None:
        self.digests: dict[str, str] = {}
        self.preloaded = frozenset(name for name in sys.modules if _in_thirdway(name))
        """The bootstrap: thirdway modules imported before the hook existed."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not _in_thirdway(fullname):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            raise ImportError(f"enclave: thirdway module {fullname} not found on the path")
        if type(spec.loader) is not importlib.machinery.SourceFileLoader:
            raise ImportError(
                f"enclave: {fullname} is not loadable from Python source ({spec.origin}); refused"
            )
        spec.loader = MeasuringLoader(fullname, spec.origin, self.digests)
        spec.cached = None
        return spec


def install_finder() -> MeasuringFinder:
    """Put a :class:`MeasuringFinder` first on ``sys.meta_path`` and return it."""
    finder = MeasuringFinder()
    sys.meta_path.insert(0, finder)
    return finder


def load_measured_code(finder: MeasuringFinder) -> dict[str, str]:
    """Import the whole measured set in this process and return its code digests.

    Modules loaded before the hook (the bootstrap) are hashed from their files; everything else
    from the bytes the hook compiled. Refuses when a loaded thirdway module is outside the set,
    or a measured module was loaded some other way.
    """
    root = default_package_root()
    names = measured_module_names(root)
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise MeasurementError(f"cannot load measured module {name}: {exc}") from exc
    loaded = sorted(name for name in sys.modules if _in_thirdway(name))
    extra = sorted(set(loaded) - set(names))
    if extra:
        raise MeasurementError(f"unmeasured thirdway modules loaded in the enclave: {extra}")
    digests = {}
    for name in names:
        if name in finder.digests:
            digests[name] = finder.digests[name]
        elif name in finder.preloaded:
            digests[name] = _bootstrap_digest(sys.modules[name], name)
        else:
            raise MeasurementError(f"measured module {name} was loaded around the hook")
    return digests


def _bootstrap_digest(module: ModuleType, name: str) -> str:
    """Hash a module imported before the hook, from its source file."""
    spec = module.__spec__
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise MeasurementError(f"measured module {name} was not loaded from Python source")
    try:
        return sha256_bytes(Path(spec.origin).read_bytes())
    except OSError as exc:
        raise MeasurementError(f"cannot read measured module {name}: {exc}") from None
