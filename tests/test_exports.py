"""Every public name: exported once, at home where its ``__module__`` says, and every error of
the SDK a :class:`golem_trio.GolemError`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import golem_trio
from golem_trio import GolemError

#: LocalNet is a separate system: its errors are its own.
SEPARATE = "golem_trio.localnet"


def public_modules() -> list[str]:
    """Every module and package of golem_trio whose dotted name has no private part."""
    names = ["golem_trio"]
    for info in pkgutil.walk_packages(golem_trio.__path__, "golem_trio."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


PUBLIC = public_modules()


def test_the_public_modules_are_the_ones_users_know() -> None:
    assert {
        "golem_trio",
        "golem_trio.cli",
        "golem_trio.events",
        "golem_trio.golem",
        "golem_trio.terms",
        "golem_trio.yagna",
        "golem_trio.market",
        "golem_trio.market.vm",
        "golem_trio.payment",
        "golem_trio.work",
        "golem_trio.gsb",
        "golem_trio.network",
        "golem_trio.services",
        "golem_trio.testing",
        "golem_trio.localnet",
        "golem_trio.localnet.emulator",
        "golem_trio.localnet.providers",
        "golem_trio.localnet.yagna",
    } <= set(PUBLIC)


def exported(module: ModuleType) -> list[tuple[str, object]]:
    return [(name, getattr(module, name)) for name in module.__all__]


@pytest.mark.parametrize("name", PUBLIC)
def test_all_lists_each_name_once_and_each_exists(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    assert len(set(module.__all__)) == len(module.__all__)
    missing = [item for item in module.__all__ if not hasattr(module, item)]
    assert missing == []


@pytest.mark.parametrize("name", PUBLIC)
def test_exported_names_show_a_public_home_that_holds_them(name: str) -> None:
    module = importlib.import_module(name)
    wrong = []
    for item, obj in exported(module):
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # modules, constants, aliases of typing constructs
        home = obj.__module__
        if any(part.startswith("_") for part in home.split(".")) and home.startswith("golem_trio"):
            wrong.append(f"{name}.{item}: __module__ is {home}")
            continue
        if home.startswith("golem_trio"):
            holder = importlib.import_module(home)
            if getattr(holder, obj.__qualname__.split(".")[0], None) is not obj:
                wrong.append(f"{name}.{item}: {home}.{obj.__qualname__} is not this object")
    assert wrong == []


@pytest.mark.parametrize("name", [n for n in PUBLIC if not n.startswith(SEPARATE)])
def test_every_error_of_the_sdk_is_a_golem_error(name: str) -> None:
    module = importlib.import_module(name)
    strays = [
        f"{name}.{item}"
        for item, obj in exported(module)
        if isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__.startswith("golem_trio")
        and not issubclass(obj, GolemError)
    ]
    assert strays == []


def test_errors_keep_the_standard_bases_callers_catch() -> None:
    from golem_trio.market import ConstraintError
    from golem_trio.services import ClusterClosed, ServiceDefinitionError
    from golem_trio.terms import TermsError

    assert issubclass(TermsError, ValueError)
    assert issubclass(ConstraintError, ValueError)
    assert issubclass(ClusterClosed, RuntimeError)
    assert issubclass(ServiceDefinitionError, TypeError)
    assert GolemError.__module__ == "golem_trio"


def test_a_re_exported_class_names_its_public_path() -> None:
    from golem_trio.services import Cluster

    assert repr(Cluster) == "<class 'golem_trio.services.Cluster'>"
    assert Cluster.wait_running.__module__ == "golem_trio.services"
    assert Cluster.wait_running.__qualname__ == "Cluster.wait_running"
