"""The `tessera` command line.

Connector commands live here; other packages (broker, policies) plug their command groups in through
the `tessera.commands` entry point, so this package never imports them. Each entry point is a function
`register(app: typer.Typer) -> None`.

Exit codes: 0 success, 1 a check failed (test failure, broken audit chain, denied request),
2 usage or input error, 3 a service could not be reached.
"""

from importlib.metadata import entry_points

import typer

app = typer.Typer(
    name="tessera",
    help="Tessera: a trusted data space connector, broker and policy toolkit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _load_plugins() -> None:
    for entry in entry_points(group="tessera.commands"):
        entry.load()(app)


def main() -> None:
    _load_plugins()
    app()
