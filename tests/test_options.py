"""The one option table against uvicorn's command line and ``Config``, and against docs/settings.md."""

from __future__ import annotations

import inspect
import ssl
import sys
from typing import Any

import click
import pytest

import fulmen
from fulmen import cli
from fulmen.logging import LOGGING_CONFIG
from fulmen.options import API_OPTIONS, OPTIONS, OPTIONS_BY_NAME, render_settings_markdown
from tests.conftest import ROOT

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("uvicorn.main")  # registers the module; the attribute uvicorn.main is the function

#: Options fulmen has and uvicorn does not (documented in the README).
FULMEN_ONLY_CLI = {
    "worker_class",
    "access_log_format",
    "log_format",
    "limit_request_headers",
    "timeout_request_header",
    "timeout_notify",  # API only in uvicorn
    "bind",
    "reuse_port",
    "metrics_bind",
    "ws_compress_min_size",
}
FULMEN_ONLY_API = {
    "worker_class",
    "access_log_format",
    "log_format",
    "limit_request_headers",
    "timeout_request_header",
    "callback_progress",
    "app_dir",  # uvicorn only takes it in run(); fulmen's Config takes it too
    "bind",
    "reuse_port",
    "metrics_bind",
    "ws_compress_min_size",
}


def _uvicorn_command() -> click.Command:
    command = sys.modules["uvicorn.main"].main
    assert isinstance(command, click.Command)
    return command


def _fulmen_params() -> dict[str, click.Parameter]:
    return {str(param.name): param for param in cli.main.params}


def _default(param: click.Parameter) -> Any:
    default = param.default
    if default is None or type(default).__name__ in ("Sentinel", "_Missing") or default == ():
        return None
    return default


def test_every_uvicorn_cli_option_is_spelled_and_defaulted_alike() -> None:
    ours = _fulmen_params()
    for param in _uvicorn_command().params:
        assert param.name in ours, f"fulmen lacks uvicorn's {param.opts}"
        mine = ours[param.name]
        assert mine.opts == param.opts, param.name
        assert mine.secondary_opts == param.secondary_opts, param.name
        assert _default(mine) == _default(param), param.name
        assert getattr(mine, "multiple", False) == getattr(param, "multiple", False), param.name
        assert getattr(mine, "is_flag", False) == getattr(param, "is_flag", False), param.name
        if isinstance(param, click.Option) and param.type is not None and param.name != "version":
            # Both accept the same kinds of values (int, float, bool, path, text or choice); fulmen's
            # numbers have ranges (a port above 65535 is refused, not misread).
            if param.type.name in ("integer", "float", "boolean", "path"):
                assert mine.type.name.removesuffix(" range") == param.type.name, param.name
            if isinstance(param.type, click.Choice):
                assert set(param.type.choices) <= set(mine.type.choices), param.name  # type: ignore[attr-defined]


def test_fulmen_only_cli_options_are_known() -> None:
    uvicorn_names = {param.name for param in _uvicorn_command().params}
    extra = set(_fulmen_params()) - uvicorn_names
    assert extra == FULMEN_ONLY_CLI


def test_config_keywords_and_defaults_match_uvicorn() -> None:
    theirs = {
        name: parameter.default
        for name, parameter in inspect.signature(uvicorn.Config.__init__).parameters.items()
        if name not in ("self", "app")
    }
    ours = {option.name: option.default for option in API_OPTIONS}
    assert set(theirs) - set(ours) == set()
    assert set(ours) - set(theirs) == FULMEN_ONLY_API
    for name, default in theirs.items():
        if name == "log_config":
            assert ours[name] is LOGGING_CONFIG
            # fulmen's loggers of the same roles, and uvicorn's own for applications that log on them.
            theirs_loggers = {key.replace("uvicorn", "fulmen") for key in default["loggers"]}
            assert set(ours[name]["loggers"]) == theirs_loggers | set(default["loggers"])
            continue
        if isinstance(default, (ssl.VerifyMode, ssl._SSLMethod)):
            default = int(default)
        assert ours[name] == default, name


def test_config_and_run_signatures_come_from_the_table() -> None:
    run_parameters = inspect.signature(fulmen.run).parameters
    assert list(run_parameters)[0] == "app"
    assert [name for name in run_parameters if name != "app"] == [option.name for option in API_OPTIONS]
    for option in API_OPTIONS:
        assert run_parameters[option.name].default == option.default
    config_parameters = inspect.signature(fulmen.Config).parameters
    assert [name for name in config_parameters if name != "app"] == [option.name for option in API_OPTIONS]
    config = fulmen.Config("tests.apps:hello", log_config=None)
    for option in API_OPTIONS:
        assert hasattr(config, option.name), option.name
    with pytest.raises(TypeError, match="unexpected keyword"):
        fulmen.Config("tests.apps:hello", log_config=None, no_such_option=1)


def test_every_cli_option_has_an_environment_variable() -> None:
    params = _fulmen_params()
    for option in OPTIONS:
        if option.cli:
            envvar = params[option.name].envvar
            names = envvar if isinstance(envvar, list) else [envvar]
            assert names[0] == "FULMEN_" + option.name.upper()


def test_docs_settings_is_up_to_date() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    assert text == render_settings_markdown(), "docs/settings.md is stale: run `make docs`"
    for option in OPTIONS:
        assert f"`{option.name}`" in text


def test_help_lists_every_option() -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    for option in OPTIONS:
        if option.cli:
            assert option.cli_name.split("/")[0] in result.output, option.name


def test_version_option() -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(cli.main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith(f"Running fulmen {fulmen.__version__} with ")


def test_option_table_is_consistent() -> None:
    assert len(OPTIONS_BY_NAME) == len(OPTIONS)
    for option in OPTIONS:
        if option.choices:
            assert option.default is None or option.default in option.choices
