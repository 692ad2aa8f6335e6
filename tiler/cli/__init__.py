"""Thin click commands over the Python API: the `tiler` group and its entry point.

Every error a user can fix prints one line on stderr and exits non-zero; no
traceback, and no ``run.json`` that could make the output look complete.
The commands live by family: `runs` (run, demo), `results` (report, export), `stand` (rows),
`evaluate`, `prepare` (pipeline, presets, validate), `synthetic` (fields with their truth),
`train`, `yield_` (features, calibrate, predict, potential); `options` and `output` are
what they share.
"""

from __future__ import annotations

import click

from tiler.cli.evaluate import evaluate
from tiler.cli.output import echo
from tiler.cli.prepare import list_presets, pipeline, validate
from tiler.cli.results import export, report
from tiler.cli.runs import demo, run
from tiler.cli.stand import rows
from tiler.cli.synthetic import synthetic
from tiler.cli.train import train
from tiler.cli.yield_ import yield_
from tiler.errors import TilerError

__all__ = [
    "cli",
    "demo",
    "evaluate",
    "export",
    "list_presets",
    "main",
    "pipeline",
    "report",
    "rows",
    "run",
    "synthetic",
    "train",
    "validate",
    "yield_",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tiler")
def cli() -> None:
    """Exact, out-of-core segmentation of huge GeoTIFF orthomosaics."""


_COMMANDS = (
    run,
    demo,
    report,
    rows,
    export,
    evaluate,
    train,
    synthetic,
    yield_,
    pipeline,
    list_presets,
    validate,
)
for _command in _COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command; user errors become one line on stderr."""
    try:
        cli.main(args=argv, prog_name="tiler", standalone_mode=False)
    except TilerError as exc:
        echo(f"tiler: error: {exc}")
        return exc.exit_code
    except click.exceptions.Abort:  # click's name for a KeyboardInterrupt
        echo("tiler: interrupted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        echo("tiler: interrupted")
        return 130
    return 0
