"""The ``jobengine`` command line. With no configuration it uses the embedded defaults."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from jobengine.cli.admin import companies_app, tokens_app, users_app
from jobengine.cli.db import db_app, require_store
from jobengine.errors import IpsFault, JobEngineError

app = typer.Typer(help="jobengine: IPS-compatible jobs on Celery.", no_args_is_help=True)
jobs_app = typer.Typer(help="Read job state and logs.", no_args_is_help=True)
assets_app = typer.Typer(help="The asset catalog.", no_args_is_help=True)
cron_app = typer.Typer(help="Quartz cron schedules.", no_args_is_help=True)
presets_app = typer.Typer(help="Image presets (IPS image formats).", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(assets_app, name="assets")
app.add_typer(cron_app, name="cron")
app.add_typer(presets_app, name="presets")
set_presets_app = typer.Typer(
    help="Batch set presets (the scripts of AutomatedSetGenerationJob).", no_args_is_help=True
)
app.add_typer(set_presets_app, name="set-presets")
app.add_typer(db_app, name="db")
app.add_typer(companies_app, name="companies")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
console = Console()

CompanyOpt = Annotated[str, typer.Option("--company", "-c", help="Company handle.")]


def _fail(exc: Exception) -> None:
    console.print(f"[red]{exc}[/red]")
    raise typer.Exit(2)


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console.print(table)


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="IPS submitJobParam XML, or a JSON file.")],
    user: Annotated[str | None, typer.Option(help="Submitting user (handle or e-mail).")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the job and print its log.")] = False,
) -> None:
    """Submit a job and print its jobHandle."""
    from jobengine import submit as do_submit
    from jobengine.assets.localfiles import read_capped
    from jobengine.errors import InvalidRequestXml
    from jobengine.model.ipsxml import MAX_DOCUMENT_BYTES

    try:  # a regular file of at most the XML reader's limit: no FIFO, no /dev/zero
        data = read_capped(file, MAX_DOCUMENT_BYTES, too_large=InvalidRequestXml)
        request: Any = _json_request(data) if file.suffix == ".json" else data
        handle = do_submit(request, user=user)
    except (JobEngineError, OSError) as exc:
        _fail(exc)
    console.print(handle)
    if wait:
        from jobengine.cli.devstack import wait_for_runs
        from jobengine.store.states import RunState

        company = handle.split("|", 1)[0]
        _follow_progress(company, handle)
        logs = wait_for_runs(company, [handle], timeout=3600)
        _show_logs(logs)
        if any(log.state != RunState.DONE or log.file_error_count for log in logs):
            raise typer.Exit(1)


def _json_request(data: bytes) -> Any:
    """A submitJob request from a JSON file; InvalidRequestXml (30003) when it is not JSON."""
    from jobengine.errors import InvalidRequestXml

    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestXml(f"the file is not a JSON document: {exc}") from None


def _follow_progress(company: str, handle: str, poll: float = 0.5, timeout: float = 3600.0) -> None:
    """A live progress bar per run of the job while it is queued or running (getActiveJobs)."""
    import time

    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

    from jobengine.operations import get_active_jobs

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[message]}"),
    )
    bars: dict[str, TaskID] = {}
    deadline = time.monotonic() + timeout
    with Progress(*columns, console=console) as progress:
        while time.monotonic() < deadline:
            active = get_active_jobs(company, job_handle=handle, include_waiting_jobs=True)
            for job in active:
                label = escape(f"{job.name} ({job.state})")
                if job.name not in bars:
                    bars[job.name] = progress.add_task(label, total=100, message="")
                progress.update(
                    bars[job.name],
                    description=label,
                    completed=job.progress,
                    message=escape(job.progress_message or ""),
                )
            if not active:  # every run ended (or none is due yet): the job log tells the rest
                for name, bar in bars.items():
                    progress.update(
                        bar, description=escape(f"{name} (ended)"), completed=100, message=""
                    )
                return
            time.sleep(poll)


def _show_logs(logs: list[Any]) -> None:
    from rich.markup import escape  # names and messages are data, never rich markup

    for log in logs:
        output = json.dumps(log.output) if log.output else ""
        console.print(
            f"[bold]{escape(log.job_name)}[/bold] {log.state}: {log.file_success_count} ok, "
            f"{log.file_error_count} errors, {log.file_warning_count} warnings "
            f"of {log.total_file_count} {escape(output)}"
        )
        for d in log.details:
            line = f"{d.date_created:%H:%M:%S} {d.log_type:<28} {d.log_message}"
            console.print(f"  {escape(line)}")


LocaleOpt = Annotated[
    str | None,
    typer.Option(help="Language of the messages (ll or ll-CC); default: each job's own."),
]


@jobs_app.command("active")
def jobs_active(company: CompanyOpt, waiting: bool = False, locale: LocaleOpt = None) -> None:
    """getActiveJobs."""
    from jobengine.operations import get_active_jobs

    jobs = get_active_jobs(company, include_waiting_jobs=waiting, locale=locale)
    rows = [j.to_dict() for j in jobs]
    _print_table(rows, ["job_handle", "name", "type", "state", "progress", "progress_message"])


@jobs_app.command("scheduled")
def jobs_scheduled(company: CompanyOpt) -> None:
    """getScheduledJobs."""
    from jobengine.operations import get_scheduled_jobs

    rows = [j.to_dict() for j in get_scheduled_jobs(company)]
    _print_table(
        rows,
        ["job_handle", "type", "exec_schedule", "next_fire_time", "time_zone", "trigger_state"],
    )


@jobs_app.command("logs")
def jobs_logs(company: CompanyOpt, rows: int = 20) -> None:
    """getJobLogs (newest first)."""
    from jobengine.operations import get_job_logs

    logs = [j.to_dict() for j in get_job_logs(company, num_rows=rows)]
    _print_table(
        logs,
        [
            "job_handle",
            "state",
            "start_date",
            "file_success_count",
            "file_error_count",
            "file_warning_count",
            "total_file_count",
        ],
    )


@jobs_app.command("details")
def jobs_details(
    company: CompanyOpt,
    handle: str,
    locale: LocaleOpt = None,
) -> None:
    """getJobLogDetails of a job or run handle."""
    from jobengine.operations import get_job_log_details

    try:
        _show_logs(get_job_log_details(company, job_handle=handle, locale=locale))
    except IpsFault as exc:
        _fail(exc)


def _control(name: str) -> None:
    def command(company: CompanyOpt, handle: str) -> None:
        from jobengine import operations

        try:
            result = getattr(operations, f"{name}_job")(company, handle)
        except IpsFault as exc:
            _fail(exc)
        console.print(result if result else f"{name}Job {handle}: ok")

    command.__doc__ = f"{name}Job."
    app.command(name)(command)


for _op in ("stop", "pause", "resume", "delete", "execute"):
    _control(_op)


@assets_app.command("import")
def assets_import(
    company: CompanyOpt,
    paths: list[Path],
    folder: str = "/",
    ready_for_publish: bool = False,
) -> None:
    """Import files (or folders) as assets of a company: regular files of at most
    JOBENGINE_UPLOAD_MAX_BYTES each; in a folder, symlinks only to files inside it."""
    from rich.markup import escape

    from jobengine.assets.catalog import add_asset, company_by_handle, import_folder
    from jobengine.assets.localfiles import plan_files
    from jobengine.runtime import get_runtime

    runtime = get_runtime()
    limit = runtime.settings.upload_max_bytes
    rows: list[dict[str, Any]] = []
    try:
        with _signals_end_cleanly():
            files, skipped = plan_files(paths, limit)
            for left in skipped:
                console.print(f"[yellow]skipped {escape(str(left.path))}: {left.reason}[/yellow]")
            for file in files:  # one transaction each: an interrupt leaves whole assets only
                with runtime.store.write() as session:
                    target = company_by_handle(session, company)
                    sub = import_folder(folder, file.subfolder)
                    a = add_asset(session, runtime.storage, target, file.path, folder=sub,
                                  name=file.name, ready_for_publish=ready_for_publish,
                                  max_bytes=limit)  # fmt: skip
                    rows.append(
                        {"handle": a.handle, "name": a.name, "type": a.type, "size": a.size}
                    )
    except (JobEngineError, OSError) as exc:
        if rows:  # what was imported before the failure stays imported
            _print_table(rows, ["handle", "name", "type", "size"])
        _fail(exc)
    _print_table(rows, ["handle", "name", "type", "size"])


@contextlib.contextmanager
def _signals_end_cleanly() -> Iterator[None]:
    """SIGTERM and SIGHUP end the command as Ctrl-C does: by an exception, so the file being
    stored is removed and its transaction rolled back (SIGKILL cannot be caught)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@cron_app.command("preview")
def cron_preview(
    expression: str,
    count: int = 5,
    tz: Annotated[str | None, typer.Option(help="Zone (default: the server's).")] = None,
) -> None:
    """Show the next fire times of a Quartz cron expression."""
    from jobengine.cron import CronError, next_fire_times
    from jobengine.settings import get_settings

    zone = tz or get_settings().timezone
    try:
        times = next_fire_times(expression, zone, datetime.now(UTC), count)
    except (CronError, ValueError) as exc:
        _fail(exc)
    for t in times:
        console.print(t.isoformat())
    if not times:
        console.print("never fires again")


@app.command()
def janitor(
    dry_run: Annotated[bool, typer.Option(help="Only print what would be deleted.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Files deleted at most.")] = 1000,
) -> None:
    """Delete stored uploads, PDF pages and pyramids no asset refers to, older than
    JOBENGINE_ORPHAN_GRACE, stale temporary files of interrupted writes, and the staging of
    ended runs (what beat does every hour), printing each key."""
    from jobengine.engine.janitor import sweep

    try:
        report = sweep(dry_run=dry_run, limit=limit)
    except (JobEngineError, OSError) as exc:
        _fail(exc)
    verb = "would delete" if dry_run else "deleted"
    for key in [*report.temp_files, *report.staging, *report.deleted]:
        typer.echo(f"{verb} {key}")  # not rich: a long key must stay on one line
    more = " (limit reached: run again for more)" if report.capped else ""
    removed = len(report.deleted) + len(report.temp_files) + len(report.staging)
    typer.echo(f"{verb} {removed} file(s){more}")


@presets_app.command("list")
def presets_list(company: CompanyOpt) -> None:
    """getImageFormats: the company's presets, by name."""
    from jobengine import get_image_formats

    try:
        presets = get_image_formats(company)
    except JobEngineError as exc:
        _fail(exc)
    rows = [
        {"handle": p.image_format_handle, "name": p.name, "url_modifier": p.url_modifier}
        for p in presets
    ]
    _print_table(rows, ["handle", "name", "url_modifier"])


@presets_app.command("save")
def presets_save(
    company: CompanyOpt,
    name: Annotated[str, typer.Argument(help="Preset name (free text, e.g. 'Web Large').")],
    url_modifier: Annotated[str, typer.Argument(help="The modifier definition, e.g. wid=200.")],
    handle: Annotated[
        str | None, typer.Option("--handle", help="Update this preset (rename it).")
    ] = None,
) -> None:
    """saveImageFormat: create or update a preset; prints its handle."""
    from jobengine import save_image_format

    try:
        saved = save_image_format(company, name, url_modifier, image_format_handle=handle)
    except JobEngineError as exc:
        _fail(exc)
    console.print(saved)


@presets_app.command("delete")
def presets_delete(company: CompanyOpt, handle: str) -> None:
    """deleteImageFormat."""
    from jobengine import delete_image_format

    try:
        delete_image_format(company, handle)
    except JobEngineError as exc:
        _fail(exc)
    console.print(f"deleteImageFormat {handle}: ok")


@set_presets_app.command("list")
def set_presets_list(company: CompanyOpt) -> None:
    """The company's batch set presets, by name."""
    from jobengine.operations.set_presets import get_set_presets

    try:
        presets = get_set_presets(company)
    except JobEngineError as exc:
        _fail(exc)
    rows = [
        {
            "handle": p.set_preset_handle,
            "name": p.name,
            "type": p.set_type,
            "pattern": p.pattern,
            "order": p.order,
            "views": ",".join(p.views),
            "name_template": p.name_template,
        }
        for p in presets
    ]
    from rich.text import Text

    columns = ["handle", "name", "type", "pattern", "order", "views", "name_template"]
    table = Table(*columns)
    for row in rows:  # as plain text: a pattern's [a-z] is not rich markup
        table.add_row(*(Text(str(row[c])) for c in columns))
    console.print(table)


@set_presets_app.command("save")
def set_presets_save(
    company: CompanyOpt,
    name: Annotated[str, typer.Argument(help="Preset name (letters, digits, - _ .).")],
    set_type: Annotated[str, typer.Argument(help="ImageSet or SpinSet.")],
    pattern: Annotated[
        str, typer.Argument(help="Regular expression with a group 'base', on the name stem.")
    ],
    *,
    order: Annotated[str, typer.Option(help="view, sequence or name.")] = "name",
    views: Annotated[
        str, typer.Option(help="With --order view: the views in order, comma-separated.")
    ] = "",
    name_template: Annotated[str, typer.Option(help="The set's name, e.g. {base}_set.")] = (
        "{base}"
    ),
    handle: Annotated[
        str | None, typer.Option("--handle", help="Update this preset (rename it).")
    ] = None,
) -> None:
    """Create or update a batch set preset; prints its handle."""
    from jobengine.operations.set_presets import save_set_preset

    listed = [v for v in views.split(",") if v.strip()] if views else []
    try:
        saved = save_set_preset(
            company,
            name,
            set_type,
            pattern,
            order=order,
            views=listed,
            name_template=name_template,
            set_preset_handle_=handle,
        )
    except JobEngineError as exc:
        _fail(exc)
    console.print(saved, markup=False, highlight=False)


@set_presets_app.command("delete")
def set_presets_delete(company: CompanyOpt, handle: str) -> None:
    """Delete a batch set preset (the sets it made stay)."""
    from jobengine.operations.set_presets import delete_set_preset

    try:
        delete_set_preset(company, handle)
    except JobEngineError as exc:
        _fail(exc)
    console.print(f"deleted set preset {handle}", markup=False, highlight=False)


@app.command()
def worker(
    *,
    concurrency: int = 2,
    loglevel: str = "info",
    json_logs: Annotated[
        bool, typer.Option(help="Log one JSON object a line (with job, company, run).")
    ] = False,
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated queues to consume (default: jobengine and every queue of "
            "JOBENGINE_QUEUES), e.g. --queues convert for a worker of heavy conversions only."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="The worker's node name (Celery's -n), e.g. w1 or w1@%h: unique in a "
            "fleet, so that Flower tells its workers apart."
        ),
    ] = None,
    prefetch: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="Messages each pool process reserves (Celery's prefetch multiplier). 1: a long "
            "conversion never holds another message. 2 or more only for a worker of small, "
            "quick jobs: its next message is at hand when a process finishes.",
        ),
    ] = 1,
) -> None:
    """Start a Celery worker (events on, for Flower): every job kind, or those of ``--queues``."""
    from jobengine.cli.devstack import worker_command
    from jobengine.logs import JSON_ENV

    if json_logs:
        os.environ[JSON_ENV] = "1"  # read by jobengine.logs in the worker (after exec)
    chosen = [q.strip() for q in (queues or "").split(",") if q.strip()] or None
    require_store()
    _exec(worker_command(concurrency, loglevel, chosen, name, prefetch=prefetch))


@app.command()
def beat(loglevel: str = "info") -> None:
    """Start Celery beat with the store-backed scheduler."""
    from jobengine.cli.devstack import beat_command
    from jobengine.settings import get_settings

    require_store()
    _exec(beat_command(get_settings(), loglevel))


@app.command()
def flower(port: int = 5555, address: str = "127.0.0.1", basic_auth: str | None = None) -> None:
    """Start Flower against the configured broker."""
    from jobengine.cli.devstack import celery_command

    args = ["flower", f"--port={port}", f"--address={address}", "--max_tasks=10000"]
    if basic_auth:
        args.append(f"--basic-auth={basic_auth}")
    _exec(celery_command(*args))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve the IPS SOAP endpoint, its WSDL and the JSON API (uvicorn)."""
    import uvicorn

    from jobengine.embedded import ensure_redis
    from jobengine.settings import get_settings

    ensure_redis(get_settings())
    require_store()
    # No proxy headers from uvicorn (which trusts them from loopback by default): the app reads
    # X-Forwarded-For itself, from JOBENGINE_TRUSTED_PROXIES only (jobengine.web.http).
    uvicorn.run("jobengine.web:create_app", factory=True, host=host, port=port, proxy_headers=False)


def _exec(argv: list[str]) -> None:
    from jobengine.embedded import ensure_redis
    from jobengine.settings import get_settings

    ensure_redis(get_settings())
    os.execv(argv[0], argv)  # noqa: S606 - our own interpreter and arguments


@app.command()
def dev(
    demo: bool = True,
    exit_after_demo: Annotated[bool, typer.Option(help="Stop after the demo job.")] = False,
) -> None:
    """The embedded stack: Redis, a worker and beat; seeds and runs the demo job."""
    from jobengine.cli.devrun import run_dev

    sys.exit(run_dev(demo=demo, exit_after_demo=exit_after_demo))


def main() -> None:
    try:
        app()
    except JobEngineError as exc:  # an outage, or a fault no command caught: one line, no trace
        console.print(str(exc), style="red", markup=False, highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
