"""The ``fulmen`` command, generated from the option table."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from typing import Any

import click

from fulmen._version import __version__
from fulmen.options import OPTIONS, OPTIONS_BY_NAME, Option


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
        self.fail(
            f"{value!r} is not one of {', '.join(map(repr, self.choices))} nor an import string.", param, ctx
        )


def _click_option(option: Option) -> click.Option:
    envvar = option.envvars if len(option.envvars) > 1 else option.envvar
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
    elif option.kind is not str:
        kwargs["type"] = option.kind
    if option.multiple:
        kwargs["multiple"] = True
        default = ()
    kwargs["default"] = default
    kwargs["show_default"] = default not in (None, (), "")
    return click.Option([option.cli_name, option.name], **kwargs)


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(
        f"Running fulmen {__version__} with {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()}"
    )
    ctx.exit()


def _command(callback: Callable[..., Any]) -> click.Command:
    params: list[click.Parameter] = [click.Argument(["app"], envvar="FULMEN_APP")]
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
    return click.Command(
        "fulmen",
        callback=callback,
        params=params,
        help="Serve the ASGI application APP, given as 'module:attribute'.",
        context_settings={"auto_envvar_prefix": "FULMEN", "max_content_width": 120},
    )


def _main(app: str, **kwargs: Any) -> None:
    from fulmen.main import run

    options: dict[str, Any] = {}
    for name, value in kwargs.items():
        option = OPTIONS_BY_NAME[name]
        if option.multiple:
            value = list(value) or None
        if value is None and option.default is not None:
            continue  # not given: the API's default applies
        options[name] = value
    run(app, **options)


main = _command(_main)


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
