"""The yardstick for start-up: a minimal typer app with one command, in portinspect's venv.

The command has one option, like every portinspect command: typer 0.29 builds a pydantic
TypeAdapter for each parameter of the command it runs, so a command with any parameter pays
for pydantic. `--bare` runs the same app with a parameterless command, to show that cost.
"""

import sys

import typer

app = typer.Typer()

if "--bare" in sys.argv:
    sys.argv.remove("--bare")

    @app.command()
    def bare() -> None:
        sys.stdout.write("[]\n")

else:

    @app.command()
    def main(as_json: bool = typer.Option(False, "--json")) -> None:
        sys.stdout.write("[]\n" if as_json else "nothing\n")


if __name__ == "__main__":
    app()
