"""ccxt's packages (`ccxt`, `ccxt.async_support`, `ccxt.pro`) loading an exchange's module only
when its name is first read: the daemon talks to Kraken alone, but each package's `__init__`
imports all of its ~100 exchanges (ccxt/ccxt#29573): about 35 MB for `ccxt`'s REST clients and
20 MB more for the async and websocket ones, none of them used.

Each of the three runs its own `__init__` except for the lines `from <package>.<x> import <x>`,
one per exchange; `<package>.<x>` is then imported on first read (`ccxt.pro.kraken`), as a
module's `__getattr__` may do (PEP 562).

Invariant: a program sees what ccxt's own `__init__` gives, only later: every name it defines
(the error classes, `Exchange`, `exchanges`, `__version__`, `__all__`) and each exchange's name
bound to that exchange's class. Where Python's import binds a package's attribute to the
submodule it just loaded (`from ccxt.pro.binance import binance` in ccxt.pro.binanceus), the
class replaces it, as the `__init__`'s own import of it would have. A package is trimmed only when
its `__init__` has ccxt's layout (the exchange imports are exactly its `exchanges` list);
otherwise (another ccxt version, no source file), it is imported whole, as ccxt ships it, and
`ccxt_imported_whole` is logged. A package already imported stays as it is.

`install()` runs in backend/venues/kraken/__init__.py: before any module of the venue imports ccxt.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

import structlog

PACKAGES = ("ccxt", "ccxt.async_support", "ccxt.pro")

log = structlog.get_logger()


class _LazyExchangesPackage(types.ModuleType):
    """One of ccxt's packages; an exchange's name (listed in its `exchanges`) is its class, its
    module imported on first read."""

    def _lists(self, name: str) -> bool:
        return name in self.__dict__.get("exchanges", ())

    def __getattr__(self, name: str) -> Any:  # called only for a name not (yet) bound
        if not self._lists(name):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        exchange = getattr(importlib.import_module(f"{self.__name__}.{name}"), name)
        setattr(self, name, exchange)
        return exchange

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}" and self._lists(name):
            value = getattr(value, name)  # Python's import binding the exchange's module: its class instead
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *self.__dict__.get("exchanges", ())})


class _TrimmedInitLoader(importlib.abc.Loader):
    def __init__(self, code: types.CodeType) -> None:
        self._code = code

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _LazyExchangesPackage(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        exec(self._code, module.__dict__)


class _LazyCcxtFinder(importlib.abc.MetaPathFinder):
    """Finds ccxt's packages where Python would, and loads them trimmed when their layout allows."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None:
            return None  # not installed: the import fails as it would
        if spec.origin is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            log.warning("ccxt_imported_whole", package=fullname, reason="no source file")
            return None  # the next finder imports it as ccxt ships it
        source = spec.loader.get_source(fullname) or ""
        code = without_exchange_imports(source, fullname, spec.origin)
        if code is None:
            log.warning("ccxt_imported_whole", package=fullname, reason="its __init__ is not laid out as expected")
            return None
        spec.loader = _TrimmedInitLoader(code)
        return spec


def without_exchange_imports(source: str, package: str, filename: str) -> types.CodeType | None:
    """package's `__init__` source compiled without its `from <package>.<x> import <x>` lines;
    None unless those name exactly the exchanges its `exchanges = [...]` lists."""
    import ast  # here: only when a ccxt package is imported

    try:
        tree = ast.parse(source, filename)
    except SyntaxError:
        return None
    kept, imported, listed = [], [], None
    for statement in tree.body:
        if (isinstance(statement, ast.ImportFrom) and len(statement.names) == 1 and statement.names[0].asname is None
                and statement.module == f"{package}.{statement.names[0].name}"):
            imported.append(statement.names[0].name)
            continue
        if isinstance(statement, ast.Assign) and [ast.unparse(target) for target in statement.targets] == ["exchanges"]:
            try:
                listed = ast.literal_eval(statement.value)
            except ValueError:
                return None
        kept.append(statement)
    if not imported or not isinstance(listed, list) or sorted(imported) != sorted(listed):
        return None
    tree.body = kept
    return compile(tree, filename, "exec")


def install() -> None:
    """Loads ccxt's packages imported from now on trimmed (once per process)."""
    if not any(isinstance(finder, _LazyCcxtFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LazyCcxtFinder())
