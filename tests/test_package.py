from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import ratemw
from ratemw import _deps
from ratemw.errors import MissingDependency


def test_public_names_exist() -> None:
    for name in ratemw.__all__:
        assert hasattr(ratemw, name), name


def test_every_module_imports() -> None:
    for mod in pkgutil.walk_packages(ratemw.__path__, "ratemw."):
        importlib.import_module(mod.name)


def test_core_import_loads_no_optional_dependency() -> None:
    code = (
        "import sys, ratemw, ratemw.cli, ratemw.limiter; "
        "print(sorted(m for m in ('redis', 'watchdog', 'prometheus_client', 'jwt', "
        "'starlette', 'django', 'flask') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_require_names_the_extra() -> None:
    with pytest.raises(MissingDependency, match=r"pip install 'ratemw\[nope\]'") as info:
        _deps.require("ratemw_no_such_module", extra="nope", purpose="testing")
    assert isinstance(info.value, ImportError)
    assert _deps.require("json", extra="x").dumps([]) == "[]"


def test_py_typed_is_shipped() -> None:
    from importlib import resources

    assert resources.files("ratemw").joinpath("py.typed").is_file()
    assert resources.files("ratemw.resources").joinpath("demo.yaml").is_file()
