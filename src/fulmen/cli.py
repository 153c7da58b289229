"""The ``fulmen`` command, generated from the option table."""

from __future__ import annotations

import logging
import os
import platform
import sys
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from fulmen._version import __version__
from fulmen.checks import UVICORN_ONLY_VALUES
from fulmen.config import Config
from fulmen.options import OPTIONS, OPTIONS_BY_NAME, STARTUP_FAILURE, Option
from fulmen.runner import run, run_config

logger = logging.getLogger("fulmen.error")


class ChoiceOrImportString(click.ParamType):  # type: ignore[type-arg]
    """One of the named choices, or a ``module:attribute`` import string."""

    name = "choice"

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(self.choices) + "|<module>:<attribute>]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in self.choices or (isinstance(value, str) and ":" in value):
            return value
        hint = UVICORN_ONLY_VALUES.get((param.name or "", value)) if param is not None else None
        if hint is not None:
            self.fail(f"{hint}.", param, ctx)
        self.fail(
            f"{value!r} is not one of {', '.join(map(repr, self.choices))} nor an import string.", param, ctx
        )


def _click_option(option: Option) -> click.Option:
    envvar = [*option.envvars, option.uvicorn_envvar]
    kwargs: dict[str, Any] = {"help": option.help, "envvar": envvar, "show_envvar": False}
    default = option.default
    if isinstance(default, dict):
        default = None  # log_config: the built-in configuration
    if option.choices:
        kwargs["type"] = (
            ChoiceOrImportString(option.choices) if option.open_choices else click.Choice(option.choices)
        )
    elif option.kind is bool and option.flag is None and default is False:
        kwargs["is_flag"] = True
    elif option.existing_path:
        kwargs["type"] = click.Path(exists=True)
    elif option.bounds is not None and option.kind in (int, float):
        bounds = option.bounds
        range_type = click.IntRange if option.kind is int else click.FloatRange
        kwargs["type"] = range_type(bounds.minimum, bounds.maximum, min_open=bounds.above)  # type: ignore[arg-type]
    elif option.kind is not str:
        kwargs["type"] = option.kind
    if option.multiple:
        kwargs["multiple"] = True
        default = ()
    kwargs["default"] = default
    kwargs["show_default"] = default not in (None, (), "")
    if option.shown_default is not None:  # click would show a string default in parentheses
        kwargs["help"] = f"{option.help}  [default: {option.shown_default}]"
    return click.Option([option.cli_name, option.name], **kwargs)


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(
        f"Running fulmen {__version__} with {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()}"
    )
    ctx.exit()


class FulmenCommand(click.Command):
    """The ``fulmen`` command. As ``fulmen.main`` it stands where the module of that name would, as
    ``uvicorn.main`` does, so it also carries the module's ``run`` and ``STARTUP_FAILURE``."""

    run = staticmethod(run)
    STARTUP_FAILURE = STARTUP_FAILURE


def _command(callback: Callable[..., Any]) -> click.Command:
    params: list[click.Parameter] = [click.Argument(["app"], envvar=["FULMEN_APP", "UVICORN_APP"])]
    params += [_click_option(option) for option in OPTIONS if option.cli]
    params.append(
        click.Option(
            ["--version"],
            is_flag=True,
            callback=_print_version,
            expose_value=False,
            is_eager=True,
            help="Display the fulmen version and exit.",
        )
    )
    return FulmenCommand(
        "fulmen",
        callback=callback,
        params=params,
        help="Serve the ASGI application APP, given as 'module:attribute'.",
        context_settings={"auto_envvar_prefix": "FULMEN", "max_content_width": 120},
    )


def uvicorn_variables_used(ctx: click.Context) -> list[str]:
    """The ``UVICORN_*`` variables that gave a parameter its value (no ``FULMEN_*`` one was set)."""
    used = []
    for param in ctx.command.params:
        if param.name is None or ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
            continue
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
        chosen = next((name for name in names if os.environ.get(name)), None)  # click's choice
        if chosen is not None and chosen.startswith("UVICORN_"):
            used.append(chosen)
    return used


def _main(app: str, **kwargs: Any) -> None:
    options: dict[str, Any] = {}
    for name, value in kwargs.items():
        option = OPTIONS_BY_NAME[name]
        if option.multiple:
            value = list(value) or None
        if value is None and option.default is not None:
            continue  # not given: the API's default applies
        options[name] = value
    config = Config(app, **options)
    if config.problems:
        problem = config.problems[0]
        raise click.BadParameter(problem.message, param_hint=repr(problem.flag))
    uvicorn_variables = uvicorn_variables_used(click.get_current_context())
    if uvicorn_variables:
        logger.info(
            "Read uvicorn's environment variables %s (a FULMEN_ variable of the same option wins).",
            ", ".join(uvicorn_variables),
        )
    run_config(config)


main = _command(_main)


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
