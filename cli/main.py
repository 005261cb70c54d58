"""The ``farm`` command: the subcommands composed into one Typer app."""

from __future__ import annotations

import typer

from cli import compare, config, devices, lifecycle, results, run, status, submit, worker

app = typer.Typer(
    name="farm",
    help="benchfarm: submit Keras benchmark sweeps to a farm of workers and get honest statistics back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("devices")(devices.devices_cmd)
app.command("worker")(worker.worker_cmd)
app.command("workers")(devices.workers_cmd)
app.command("submit")(submit.submit_cmd)
app.command("status")(status.status_cmd)
app.command("results")(results.results_cmd)
app.command("report")(results.report_cmd)
app.command("compare")(compare.compare_cmd)
app.command("cancel")(lifecycle.cancel_cmd)
app.command("resume")(lifecycle.resume_cmd)
app.command("run")(run.run_cmd)
app.command("config")(config.config_cmd)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
