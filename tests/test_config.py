"""Config: loading the application, resolving implementations, logging, pickling for workers."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fulmen import Config
from fulmen.importer import ImportFromStringError, import_from_string
from fulmen.logging import LOGGING_CONFIG
from tests import apps


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Config() applies logging configuration process-wide: put fulmen's loggers back afterwards."""
    yield
    for name in ("fulmen", "fulmen.error", "fulmen.access", "fulmen.asgi"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def _config(app: Any = "tests.apps:hello", **kwargs: Any) -> Config:
    kwargs.setdefault("log_config", None)
    return Config(app, **kwargs)


def test_import_from_string() -> None:
    assert import_from_string("tests.apps:hello") is apps.hello
    assert import_from_string(apps.hello) is apps.hello
    assert import_from_string("os.path:join") is os.path.join
    for bad in ("tests.apps", ":hello", "tests.apps:", "no_such_module_x:app", "tests.apps:nope.deeper"):
        with pytest.raises(ImportFromStringError):
            import_from_string(bad)


@pytest.mark.parametrize(
    "target", ["no_such_module_x:app", "tests.apps:nope", "tests.apps", "tests.apps:not_callable"]
)
def test_bad_app_exits_3(target: str) -> None:
    with pytest.raises(SystemExit) as info:
        _config(target).load()
    assert info.value.code == 3


def test_factory_and_interfaces() -> None:
    config = _config("tests.apps:factory", factory=True)
    config.load()
    assert config.interface == "asgi3"
    # Proxy headers are applied by the protocols, not by wrapping the application.
    assert config.loaded_app is apps.hello
    assert config.proxy_trust is not None and "127.0.0.1" in config.proxy_trust
    config = _config("tests.apps:hello", proxy_headers=False)
    config.load()
    assert config.loaded_app is apps.hello
    assert config.proxy_trust is None


def test_app_dir_is_put_on_sys_path(tmp_path: Path) -> None:
    (tmp_path / "app_dir_module_x.py").write_text("async def app(scope, receive, send):\n    pass\n")
    config = _config("app_dir_module_x:app", app_dir=str(tmp_path), proxy_headers=False)
    try:
        config.load()
        assert config.loaded_app.__module__ == "app_dir_module_x"
    finally:
        sys.path.remove(str(tmp_path))


def test_headers_from_strings_and_pairs() -> None:
    config = _config(headers=["X-A: 1", "X-B:two:parts", ("X-C", "3")])
    assert config.headers == [("X-A", "1"), ("X-B", "two:parts"), ("X-C", "3")]
    config.load()
    assert config.encoded_headers == [
        (b"server", b"fulmen"),
        (b"x-a", b"1"),
        (b"x-b", b"two:parts"),
        (b"x-c", b"3"),
    ]
    config = _config(server_header=False)
    config.load()
    assert config.encoded_headers == []


def test_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("FULMEN_CONFIG_TEST_VALUE=42\n")
    monkeypatch.delenv("FULMEN_CONFIG_TEST_VALUE", raising=False)
    _config(env_file=str(env))
    assert os.environ["FULMEN_CONFIG_TEST_VALUE"] == "42"
    monkeypatch.delenv("FULMEN_CONFIG_TEST_VALUE")


def test_implementations() -> None:
    config = _config(http="h11", ws="none", lifespan="off")
    config.load()
    assert config.http_protocol_class.__name__ == "H11Protocol"
    assert config.ws_protocol_class is None
    assert config.lifespan_class.__name__ == "LifespanOff"
    config = _config(http="fulmen.http.h11_impl:H11Protocol")
    config.load()
    assert config.http_protocol_class.__name__ == "H11Protocol"
    with pytest.raises(SystemExit):
        _config(http="no_such_module_x:Protocol").load()


def test_loop_factories() -> None:
    assert _config(loop="none").get_loop_factory() is None
    assert _config(loop="asyncio").get_loop_factory() is asyncio.new_event_loop
    factory = _config(loop="auto").get_loop_factory()
    assert factory is not None
    loop = factory()
    loop.close()
    assert _config(loop="asyncio:new_event_loop").get_loop_factory() is asyncio.new_event_loop
    with pytest.raises(SystemExit):
        _config(loop="no_such_module_x:loop").get_loop_factory()


def test_pickles_for_worker_processes() -> None:
    config = _config(headers=["X-A: 1"], workers=2)
    config.load()
    copy = pickle.loads(pickle.dumps(config))
    assert copy.loaded is False and copy.loaded_app is None
    assert copy.headers == config.headers and copy.workers == 2
    copy.load()
    assert copy.loaded


def test_default_log_config_and_colours() -> None:
    fulmen_loggers = {"fulmen", "fulmen.error", "fulmen.access"}
    assert set(LOGGING_CONFIG["loggers"]) == fulmen_loggers | {"uvicorn", "uvicorn.error", "uvicorn.access"}
    Config(apps.hello, use_colors=True)
    handler = logging.getLogger("fulmen").handlers[0]
    assert getattr(handler.formatter, "use_colors", None) is True
    Config(apps.hello, use_colors=False)
    handler = logging.getLogger("fulmen").handlers[0]
    assert getattr(handler.formatter, "use_colors", None) is False
    assert LOGGING_CONFIG["formatters"]["default"]["use_colors"] is None  # the default is not modified


def test_no_access_log_removes_the_handlers() -> None:
    Config(apps.hello, access_log=False)
    assert logging.getLogger("fulmen.access").handlers == []
    Config(apps.hello)  # and the default configuration brings them back
    assert logging.getLogger("fulmen.access").handlers


def test_reload_options_without_reload_warn(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("fulmen.error")
    logger.addHandler(caplog.handler)
    try:
        _config(reload_dirs=["."])
    finally:
        logger.removeHandler(caplog.handler)
    assert "will not reload" in caplog.text


def test_properties() -> None:
    assert _config().is_ssl is False
    assert _config(ssl_certfile="x.pem").is_ssl is True
    assert _config(reload=True).should_reload is True
    assert _config(apps.hello, reload=True).should_reload is False
    assert _config(interface="asgi2").asgi_version == "2.0"
