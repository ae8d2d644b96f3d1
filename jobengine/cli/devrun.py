"""What ``make run`` / ``jobengine dev`` does, step by step, printed for a person."""

from __future__ import annotations

import signal
from types import FrameType

from rich.console import Console

from jobengine.cli.demo import DEMO_COMPANY, SEED_EXAMPLE_XML, seed_demo
from jobengine.cli.devstack import DevStack, wait_for_runs
from jobengine.runtime import get_runtime

__all__ = ["run_dev"]

console = Console()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_dev(*, demo: bool = True, exit_after_demo: bool = False) -> int:
    """Start the stack, run the demo jobs end to end, then serve until Ctrl-C."""
    settings = get_runtime().settings
    stack = DevStack(settings)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        where = settings.redis_url or settings.broker_url or "embedded Redis"
        console.print(f"[bold]jobengine[/bold] broker: {where}; store: {settings.database_url}")
        console.print(f"storage: {settings.storage_url}; logs: {settings.home / 'logs'}")
        if demo:
            _demo(settings.demo_user, settings.demo_password)
        if not exit_after_demo:
            console.print("worker and beat are running; press Ctrl-C to stop")
            stack.wait_forever()
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        stack.stop()
    return 0


def _demo(user: str, password: str) -> None:
    from jobengine import submit

    handles = seed_demo(user, password)
    console.print(
        f"demo company {DEMO_COMPANY}: user [bold]{user}[/bold] "
        f"password [bold]{password}[/bold]; {len(handles)} sample images"
    )
    console.print("submitting the IPS documentation's example (ImageServingPublishJob):")
    console.print(SEED_EXAMPLE_XML)
    publish = submit(SEED_EXAMPLE_XML, user=user)
    console.print(f"-> jobHandle [bold]{publish}[/bold]")
    export = submit(
        {
            "companyHandle": DEMO_COMPANY,
            "jobName": "Demo Export",
            "exportJob": {
                "assetHandleArray": {"items": handles},
                "fmt": "orig",
                "emailSetting": "None",
            },
        },
        user=user,
    )
    console.print(f"-> ExportJob jobHandle [bold]{export}[/bold]")
    convert = submit(
        {
            "companyHandle": DEMO_COMPANY,
            "jobName": "Demo Convert",
            "exportJob": {
                "assetHandleArray": {"items": handles[:2]},
                "fmt": "convert",
                "is_modifier": "&fmt=png&wid=400",
                "macro": "$test$",
                "emailSetting": "None",
            },
        },
        user=user,
    )
    console.print(
        "-> ExportJob fmt=convert with is_modifier=&fmt=png&wid=400 and macro=$test$ "
        f"(preset fmt=tif; the macro decides the format): jobHandle [bold]{convert}[/bold]"
    )
    logs = wait_for_runs(DEMO_COMPANY, [publish, export, convert], timeout=120)
    for log in logs:
        console.print(
            f"\n[bold]{log.job_name}[/bold] ({log.job_handle}) {log.state}: "
            f"{log.file_success_count} succeeded, {log.file_error_count} failed, "
            f"{log.file_warning_count} warnings; output {log.output}"
        )
        for d in log.details:
            console.print(f"  {d.date_created:%H:%M:%S}  {d.log_type:<28} {d.log_message}")
