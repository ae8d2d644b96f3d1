"""``jobengine companies|users|tokens``: operators administer the catalog's accounts.

The commands call :mod:`jobengine.access.accounts`. A failure is one line and exit code 2, as in the
rest of the CLI. A password is never an argument (argv is visible to every local user in ``ps``): it
is read from a prompt that does not echo it, asked twice, or with ``--password-stdin`` from the
first line of standard input. A token's secret is printed once, when it is created.
"""

from __future__ import annotations

import getpass
import sys
from datetime import datetime
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobengine.access import accounts
from jobengine.errors import JobEngineError

__all__ = ["companies_app", "tokens_app", "users_app"]

companies_app = typer.Typer(help="Companies of the catalog.", no_args_is_help=True)
users_app = typer.Typer(help="Users (IPS user types) and their companies.", no_args_is_help=True)
tokens_app = typer.Typer(
    help="API tokens (Bearer or authHeader/accessToken).", no_args_is_help=True
)
console = Console()
errors = Console(stderr=True)

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input (for scripts).",
    ),
]


def _fail(exc: Exception) -> NoReturn:
    # One line whatever the terminal's width: scripts and logs read it whole.
    console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _table(columns: list[str], rows: list[list[str]]) -> None:
    table = Table(*columns)
    for row in rows:  # as plain text: names and e-mails are data, never rich markup
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def _read_password(from_stdin: bool) -> str:
    """The password, from stdin's first line or a prompt that does not echo (asked twice)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        _fail(ValueError("no terminal to ask the password on: use --password-stdin"))
    # getpass itself, not typer.prompt: typer writes the prompt before getpass turns echo off,
    # so a password typed ahead would be shown.
    try:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat for confirmation: ") != password:
            _fail(ValueError("the two passwords differ"))
    except (EOFError, KeyboardInterrupt):
        _fail(ValueError("no password was given"))
    return password


@companies_app.command("add")
def companies_add(
    handle: Annotated[str, typer.Argument(help="The company handle, e.g. 47 (letters, digits).")],
    name: Annotated[str, typer.Argument(help="The company's name.")],
) -> None:
    """Create a company; prints its handle."""
    try:
        company = accounts.add_company(handle, name)
    except JobEngineError as exc:
        _fail(exc)
    console.print(company.handle, markup=False, highlight=False)


@companies_app.command("list")
def companies_list() -> None:
    """Every company, with its number of users."""
    try:
        companies = accounts.list_companies()
    except JobEngineError as exc:
        _fail(exc)
    rows = [[c.handle, c.name, str(c.users), _when(c.created_at)] for c in companies]
    _table(["handle", "name", "users", "created"], rows)


@users_app.command("add")
def users_add(
    email: Annotated[str, typer.Argument(help="The user's e-mail (its sign-in name).")],
    *,
    user_type: Annotated[
        str,
        typer.Option("--type", "-t", help=f"The IPS user type: {', '.join(accounts.USER_TYPES)}."),
    ],
    company: Annotated[
        list[str] | None,
        typer.Option("--company", "-c", help="A company of the user (repeat for several)."),
    ] = None,
    first_name: Annotated[str, typer.Option(help="First name.")] = "",
    last_name: Annotated[str, typer.Option(help="Last name.")] = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user of an IPS user type in one or more companies; prints its handle."""
    password = _read_password(password_stdin)
    try:
        user = accounts.add_user(
            email,
            password,
            user_type,
            company or [],
            first_name=first_name,
            last_name=last_name,
        )
    except JobEngineError as exc:
        _fail(exc)
    console.print(user.handle, markup=False, highlight=False)


@users_app.command("list")
def users_list(
    company: Annotated[
        str | None, typer.Option("--company", "-c", help="Only the members of this company.")
    ] = None,
) -> None:
    """Users by e-mail, with their type and companies (never a password)."""
    try:
        users = accounts.list_users(company)
    except JobEngineError as exc:
        _fail(exc)
    rows = [
        [u.handle, u.email, u.user_type, f"{u.first_name} {u.last_name}".strip(),
         ",".join(u.companies), _when(u.created_at)]
        for u in users
    ]  # fmt: skip
    _table(["handle", "email", "type", "name", "companies", "created"], rows)


@users_app.command("passwd")
def users_passwd(
    user: Annotated[str, typer.Argument(help="The user's e-mail or handle.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a user's password."""
    password = _read_password(password_stdin)
    try:
        accounts.set_password(user, password)
    except JobEngineError as exc:
        _fail(exc)
    console.print(f"password of {user} changed", markup=False, highlight=False)


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Argument(help="The owner's e-mail or handle.")],
    name: Annotated[str, typer.Option("--name", "-n", help="What the token is for.")],
) -> None:
    """Create an API token and print it: the only time it is shown (only its hash is kept)."""
    try:
        secret = accounts.create_token(user, name)
    except JobEngineError as exc:
        _fail(exc)
    errors.print("the token is shown only now: store it", style="yellow", markup=False,
                 soft_wrap=True)  # fmt: skip
    typer.echo(secret)  # alone on stdout, for scripts


@tokens_app.command("list")
def tokens_list(
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Only this user's tokens.")
    ] = None,
) -> None:
    """API tokens (id, owner, name, dates); never their secrets."""
    try:
        tokens = accounts.list_tokens(user)
    except JobEngineError as exc:
        _fail(exc)
    rows = [
        [str(t.token_id), t.user, t.name, _when(t.created_at), _when(t.last_used_at),
         _when(t.revoked_at)]
        for t in tokens
    ]  # fmt: skip
    _table(["id", "user", "name", "created", "last used", "revoked"], rows)


@tokens_app.command("revoke")
def tokens_revoke(
    token: Annotated[str, typer.Argument(help="The token's id (tokens list), or the token.")],
) -> None:
    """Revoke an API token (revoking it again does nothing)."""
    try:
        if token.isascii() and token.isdigit():
            accounts.revoke_token_id(int(token))
        else:
            accounts.revoke_token(token)
    except JobEngineError as exc:
        _fail(exc)
    console.print("token revoked", markup=False, highlight=False)
