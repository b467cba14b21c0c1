"""The root `tessera` command.

Every package plugs its command groups in through the `tessera.commands` entry point (see
`pyproject.toml`), so the kernel imports none of them. Each entry point is a function
`register(app: typer.Typer) -> None`.

Exit codes: 0 success, 1 a check failed (test failure, broken audit chain, denied request),
2 usage or input error, 3 a service could not be reached.
"""

from importlib.metadata import entry_points

import typer


def create_app() -> typer.Typer:
    """The root command with every installed package's commands plugged in."""
    app = typer.Typer(
        name="tessera",
        help="Tessera: a trusted data space connector, broker and policy toolkit.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    for entry in sorted(entry_points(group="tessera.commands"), key=lambda entry: entry.name):
        entry.load()(app)
    return app


def main() -> None:
    create_app()()
