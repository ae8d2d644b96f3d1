"""Job log messages in the caller's language: getJobLogDetails and getAssetJobLogs render each
row's message id in the operation locale, else the job's locale, else English (on real runs,
SQLite and PostgreSQL); hostile names are never interpreted; the catalogs hold every message."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text, update

import jobengine
from jobengine import get_asset_job_logs, get_job_log_details, i18n, submit
from jobengine.i18n import (
    CATALOG_MESSAGES,
    LOG_MESSAGES,
    english,
    fill,
    log_message,
    operation_locale,
    translator,
)
from jobengine.locales import LOCALE_DIR, catalogs, parse_po, template_of
from jobengine.operations import JobLog
from jobengine.runtime import get_runtime
from jobengine.store import migrate
from jobengine.store.db import Store
from jobengine.store.schema import Asset, LogDetail, Run
from tests.support.helpers import export_request, publish_request
from tests.support.stack import Stack, store_url

ROOT = Path(__file__).resolve().parent.parent
# Braces of every kind str.format would act on, a rich markup tag and a printf placeholder.
HOSTILE = "{0}{path}{__class__}{path.__class__}{}{{x}}}{[b]%s"


def _placeholders(template: str) -> set[str]:
    return {p.split("}")[0] for p in template.replace("{{", "").split("{")[1:]}


# --- formatting and locales (no store) ------------------------------------------------------


def test_fill_replaces_plain_fields_and_never_interprets_arguments() -> None:
    assert fill("published {path}", {"path": HOSTILE}) == f"published {HOSTILE}"
    assert fill("{{literal}} {path}", {"path": "p"}) == "{literal} p"
    assert fill("no fields", {}) == "no fields"
    for bad in (
        "{path.__class__}",
        "{path[0]}",
        "{0}",
        "{}",
        "{path!r}",
        "{path:>10}",
        "{path:{path}}",
        "{other}",
        "{__class__}",
        "unbalanced {path",
        "unbalanced path}",
    ):
        assert fill(bad, {"path": "p"}) is None, bad


def test_progress_message_follows_the_locale_and_falls_back_to_english() -> None:
    assert i18n.progress_message(3, 10) == "3 of 10 file(s) processed"
    assert i18n.progress_message(3, 10, "de-AT") == "3 von 10 Datei(en) verarbeitet"
    assert i18n.progress_message(3, 10, "fr") == "3 fichier(s) traité(s) sur 10"
    assert i18n.progress_message(0, 2, "ja_JP") == "2 件中 0 件のファイルを処理しました"
    for other in ("xx", "", None, "../de", "de\x00"):
        assert i18n.progress_message(1, 1, other) == "1 of 1 file(s) processed", other


def test_english_text_is_the_filled_message_id() -> None:
    assert english("published {path}", {"path": HOSTILE}) == f"published {HOSTILE}"
    # a call site that misses an argument still stores everything it has, and never raises
    assert english("cannot read {name}: {error}", {"name": "a.jpg"}) == (
        "cannot read {name}: {error} name=a.jpg"
    )


def test_log_message_falls_back_to_the_stored_english(monkeypatch) -> None:
    args = {"path": HOSTILE}
    assert log_message("old row", None, None, "de") == "old row"
    assert log_message("stored", "published {path}", args, "de") == f"Veröffentlicht: {HOSTILE}"
    assert log_message("stored", "published {path}", args, "en") == "stored"
    assert log_message("stored", "published {path}", args, None) == "stored"
    assert log_message("stored", "a retired message {x}", {"x": "1"}, "de") == "stored"
    assert log_message("stored", "published {path}", ["not", "a", "dict"], "de") == "stored"
    assert log_message("stored", "published {path}", {}, "de") == "stored"  # argument missing
    assert log_message("stored", "published {path}", {"path": 7}, "ja") == "公開しました: 7"
    for template in (
        "{path.__class__.__mro__}",
        "{path!r}",
        "{0}",
        "{__class__}",
        "Veröffentlicht: {path",
        "{path:>{path}}",
    ):
        monkeypatch.setattr(i18n, "translator", lambda locale, t=template: lambda msgid: t)
        assert log_message("stored", "published {path}", args, "de") == "stored", template


def test_translator_fallbacks() -> None:
    msgid = "published {path}"
    assert translator("de")(msgid) == "Veröffentlicht: {path}"
    assert translator("de-CH")(msgid) == "Veröffentlicht: {path}"
    assert translator("fr-CA")(msgid) == "Publié : {path}"
    assert translator("ja-JP")(msgid) == "公開しました: {path}"
    for unknown in ("xx", "xx-YY", "en-US", "", None, "../../etc", "de\n", "d" * 100):
        assert translator(unknown)(msgid) == msgid, unknown


@pytest.mark.parametrize(
    ("header", "accept", "expected"),
    [
        ("de-CH", "fr", "de-CH"),  # authHeader/locale wins
        ("xx", "fr", "xx"),  # ... even an unknown one (which renders English)
        ("  ", "fr-CA, de;q=0.5", "fr-CA"),
        (None, "xx, ja;q=0.8, de;q=0.9", "de"),
        (None, "*, en;q=0.1", "en"),
        (None, "de;q=0, fr;q=0.2", "fr"),
        (None, "de;q=abc, ja", "ja"),
        (None, "zh-Hant-TW, ../../etc, ja", "ja"),
        (None, "xx-YY, zz", None),
        (None, "", None),
        (None, None, None),
    ],
)
def test_operation_locale(header: str | None, accept: str | None, expected: str | None) -> None:
    assert operation_locale(header, accept) == expected


# --- catalogs ------------------------------------------------------------------------------


def test_every_log_message_is_translated_in_every_catalog() -> None:
    languages = {
        po.parent.parent.name: parse_po(po.read_text(encoding="utf-8")) for po in catalogs()
    }
    assert {"en", "de", "fr", "ja"} <= set(languages)
    for language, messages in languages.items():
        for msgid in LOG_MESSAGES:
            msgstr = messages.get(msgid)
            assert msgstr, f"{language}: no translation of {msgid!r}"
            assert _placeholders(msgstr) == _placeholders(msgid), (language, msgid)
            assert fill(msgstr, dict.fromkeys(_placeholders(msgid), "x")) is not None
            # the compiled catalog has it too (a stale .mo would answer the msgid itself)
            assert translator(language)(msgid) == msgstr, (language, msgid)


def test_the_template_is_generated_and_every_catalog_agrees_with_the_message_type() -> None:
    english_po = (LOCALE_DIR / "en" / "LC_MESSAGES" / "jobengine.po").read_text(encoding="utf-8")
    pot = (LOCALE_DIR / "jobengine.pot").read_text(encoding="utf-8")
    assert pot == template_of(english_po), "jobengine.pot is stale: run python -m jobengine.locales"
    template = set(parse_po(pot)) - {""}
    assert set(CATALOG_MESSAGES) <= template  # every LogMessage (and the progress message)
    for po in catalogs():  # each language holds exactly the template's messages
        assert set(parse_po(po.read_text(encoding="utf-8"))) - {""} == template, po


# where a call gives its message id: write_log(session, run, type, message), ctx.log(type, message)
_MESSAGE_AT = {"write_log": 3, "ItemOutcome": 2, "_fail": 2, "log": 1, "LogEntry": 1}
_ASSET_KEYWORDS = {"asset_name", "asset_type", "asset_handle", "asset", "args", "message_id"}


def _name_of(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id if func.id in _MESSAGE_AT else None
    if isinstance(func, ast.Attribute) and func.attr == "log":
        owner = func.value
        return "log" if isinstance(owner, ast.Name) and owner.id in ("ctx", "self") else None
    return None


def _assigned(scope: ast.AST, name: str) -> list[ast.expr]:
    """Every value bound to ``name`` in ``scope`` (plain, annotated and tuple assignments)."""
    values: list[ast.expr] = []
    for node in ast.walk(scope):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id == name and node.value is not None:
                values.append(node.value)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == name:
                    values.append(node.value)
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for part, value in zip(target.elts, node.value.elts, strict=False):
                        if isinstance(part, ast.Name) and part.id == name:
                            values.append(value)
    return values


def _literals(node: ast.expr, scope: ast.AST) -> list[str] | None:
    """The message ids an expression can be; None for a forwarded parameter or attribute."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _literals(node.body, scope), _literals(node.orelse, scope)
        return None if body is None or orelse is None else body + orelse
    if isinstance(node, ast.Name):
        values = _assigned(scope, node.id)
        found = [_literals(v, scope) for v in values]
        if values and all(f is not None for f in found):
            return [m for f in found if f for m in f]
    return None


def _dict_keys(node: ast.expr | None, scope: ast.AST) -> set[str] | None:
    if isinstance(node, ast.Dict):
        if all(isinstance(k, ast.Constant) for k in node.keys):
            return {str(k.value) for k in node.keys if isinstance(k, ast.Constant)}
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return _dict_keys(node.args[0], scope) if len(node.args) == 1 else None
    if isinstance(node, ast.Name):
        found = [_dict_keys(v, scope) for v in _assigned(scope, node.id)]
        if found and all(f is not None for f in found):
            return set.intersection(*(f for f in found if f is not None))
    return None


def _arguments(call: ast.Call, name: str, scope: ast.AST) -> set[str] | None:
    """The argument names a call gives its message; None when they cannot be told."""
    keywords = {k.arg: k.value for k in call.keywords}
    if None in keywords:  # **args forwarded
        return None
    if name in ("ItemOutcome", "LogEntry"):  # their arguments: a dict, by position or keyword
        at = 6 if name == "ItemOutcome" else 2
        given = keywords.get("args", call.args[at] if len(call.args) > at else None)
        return set() if given is None else _dict_keys(given, scope)
    return {k for k in keywords if k is not None and k not in _ASSET_KEYWORDS}


def _log_calls() -> list[tuple[str, list[str], set[str] | None]]:
    """Every job log message written in jobengine/ and tasks/: (where, ids, argument names)."""
    found = []
    for path in sorted([*ROOT.glob("jobengine/**/*.py"), *ROOT.glob("tasks/**/*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        for scope in scopes:
            for call in ast.walk(scope):
                if not isinstance(call, ast.Call) or (name := _name_of(call)) is None:
                    continue
                keywords = {k.arg: k.value for k in call.keywords}
                position = _MESSAGE_AT[name]
                node = call.args[position] if len(call.args) > position else None
                node = keywords.get("message_id", node)
                if node is None:
                    continue
                ids = _literals(node, scope)
                if ids is None:  # a parameter passed on (write_log inside ctx.log, _fail)
                    continue
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                found.append((where, ids, _arguments(call, name, scope)))
    return found


def test_every_message_written_in_code_is_registered_with_its_arguments() -> None:
    calls = _log_calls()
    assert len(calls) >= 15, calls  # the scanner sees the call sites
    used: set[str] = set()
    for where, ids, names in calls:
        for msgid in ids:
            assert msgid in LOG_MESSAGES, f"{where}: {msgid!r} is not in jobengine.i18n.LogMessage"
            assert names is not None, f"{where}: cannot tell the arguments of {msgid!r}"
            missing = _placeholders(msgid) - names
            assert not missing, f"{where}: {msgid!r} lacks {sorted(missing)}"
            used.add(msgid)
    assert used == set(LOG_MESSAGES), f"registered but never written: {set(LOG_MESSAGES) - used}"


# --- real runs ------------------------------------------------------------------------------

ENGLISH = {
    "BeginGet": ["job {job} started"],
    "OriginalJobName": ["{job}"],  # data: the name as submitted, never translated
    "ReturnSuccess": ["exported pics/img000.jpg", "exported pics/img001.jpg"],
    "FileCancel": ["skipped set0: ImageSet assets cannot be exported"],
    "EndGet": ["job done: 2 succeeded, 0 failed, 1 warnings of 3 file(s)"],
}
GERMAN = {
    "BeginGet": ["Job {job} gestartet"],
    "OriginalJobName": ["{job}"],  # data: the name as submitted, never translated
    "ReturnSuccess": ["Exportiert: pics/img000.jpg", "Exportiert: pics/img001.jpg"],
    "FileCancel": ["set0 übersprungen: Assets vom Typ ImageSet können nicht exportiert werden"],
    "EndGet": ["Job abgeschlossen: 2 erfolgreich, 0 fehlgeschlagen, 1 Warnungen von 3 Datei(en)"],
}
FRENCH = {
    "BeginGet": ["Tâche {job} démarrée"],
    "OriginalJobName": ["{job}"],  # data: the name as submitted, never translated
    "ReturnSuccess": ["Exporté : pics/img000.jpg", "Exporté : pics/img001.jpg"],
    "FileCancel": ["set0 ignoré : les ressources de type ImageSet ne peuvent pas être exportées"],
    "EndGet": ["Tâche terminée : 2 réussis, 0 en échec, 1 avertissements sur 3 fichier(s)"],
}
JAPANESE = {
    "BeginGet": ["ジョブ {job} を開始しました"],
    "OriginalJobName": ["{job}"],  # data: the name as submitted, never translated
    "ReturnSuccess": ["書き出しました: pics/img000.jpg", "書き出しました: pics/img001.jpg"],
    "FileCancel": ["set0 をスキップしました: ImageSet アセットは書き出せません"],
    "EndGet": ["ジョブ完了: 全 3 ファイル中 成功 2 件、失敗 0 件、警告 1 件"],
}


def _by_type(log: JobLog) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = defaultdict(list)
    for detail in log.details:
        rows[detail.log_type].append(detail.log_message)
    return {log_type: sorted(messages) for log_type, messages in rows.items()}


def _expected(table: dict[str, list[str]], job: str) -> dict[str, list[str]]:
    return {t: sorted(m.replace("{job}", job) for m in ms) for t, ms in table.items()}


def _details(company: str, handle: str, locale: str | None) -> dict[str, list[str]]:
    [log] = get_job_log_details(company, job_handle=handle, locale=locale)
    return _by_type(log)


def _run_id(log: JobLog) -> int:
    with get_runtime().store.read() as session:
        run_id = session.scalar(select(Run.id).where(Run.run_name == log.job_name))
    assert run_id is not None
    return run_id


def test_details_come_back_in_the_operation_locale(stack: Stack) -> None:
    company, assets = stack.company(2, sets=1)
    handle = submit(export_request(company, assets, "Localized"))
    done = stack.wait(company, handle)
    assert done.state == "Done"
    assert _by_type(done) == _expected(ENGLISH, "Localized")  # no locale anywhere: English
    cases = {
        "de": GERMAN,
        "de-CH": GERMAN,  # ll-CC falls back to ll
        "de_AT": GERMAN,
        "fr": FRENCH,
        "fr-CA": FRENCH,
        "ja": JAPANESE,
        "ja-JP": JAPANESE,
        "en": ENGLISH,
        "en-GB": ENGLISH,
        "xx": ENGLISH,  # unknown: the server default
        "xx-YY": ENGLISH,
        "../de": ENGLISH,
        "": ENGLISH,
        None: ENGLISH,
    }
    for locale, table in cases.items():
        assert _details(company, handle, locale) == _expected(table, "Localized"), locale
    # the web layer's choice of locale feeds straight in
    wired = operation_locale(None, "xx, ja;q=0.9, de;q=0.5")
    assert _details(company, handle, wired) == _expected(JAPANESE, "Localized")
    # the stored row keeps its English text, its message id and its arguments
    with get_runtime().store.read() as session:
        rows = session.scalars(
            select(LogDetail).where(
                LogDetail.run_id == _run_id(done), LogDetail.log_type == "EndGet"
            )
        ).all()
    [end] = rows
    assert end.message == "job done: 2 succeeded, 0 failed, 1 warnings of 3 file(s)"
    assert end.message_id is not None and end.message_id.startswith("job done: {success}")
    assert end.message_args == {"success": "2", "errors": "0", "warnings": "1", "total": "3"}


def test_without_an_operation_locale_the_jobs_own_locale_applies(stack: Stack) -> None:
    company, assets = stack.company(2, sets=1)
    handle = submit(export_request(company, assets, "Lokal", locale="fr-CA"))
    done = stack.wait(company, handle)
    assert _by_type(done) == _expected(FRENCH, "Lokal")  # stack.wait asks without a locale
    assert _details(company, handle, None) == _expected(FRENCH, "Lokal")
    assert _details(company, handle, "") == _expected(FRENCH, "Lokal")
    assert _details(company, handle, "ja") == _expected(JAPANESE, "Lokal")  # the caller's wins
    assert _details(company, handle, "xx") == _expected(ENGLISH, "Lokal")
    [mine] = get_asset_job_logs(company, assets[0])
    assert mine.log_message == "Exporté : pics/img000.jpg"
    [mine] = get_asset_job_logs(company, assets[0], locale="de-CH")
    assert mine.log_message == "Exportiert: pics/img000.jpg"
    [mine] = jobengine.get_asset_job_logs(company, assets[0], locale="en")
    assert mine.log_message == "exported pics/img000.jpg"


def test_hostile_names_render_literally(stack: Stack) -> None:
    company, assets = stack.company(1, sets=1)
    image, image_set = assets
    with get_runtime().store.write() as session:
        for asset_handle, name in ((image, f"{HOSTILE}.jpg"), (image_set, HOSTILE)):
            session.execute(update(Asset).where(Asset.handle == asset_handle).values(name=name))
    job_name = f"Job {HOSTILE}"
    handle = submit(export_request(company, assets, job_name, locale="de"))
    done = stack.wait(company, handle)
    assert done.state == "Done"
    expected_de = {
        "BeginGet": [f"Job {job_name} gestartet"],
        "OriginalJobName": [job_name],
        "ReturnSuccess": [f"Exportiert: pics/{HOSTILE}.jpg"],
        "FileCancel": [
            f"{HOSTILE} übersprungen: Assets vom Typ ImageSet können nicht exportiert werden"
        ],
        "EndGet": [
            "Job abgeschlossen: 1 erfolgreich, 0 fehlgeschlagen, 1 Warnungen von 2 Datei(en)"
        ],
    }
    assert _by_type(done) == expected_de
    english_rows = _details(company, handle, "en")
    assert english_rows["BeginGet"] == [f"job {job_name} started"]
    assert english_rows["FileCancel"] == [f"skipped {HOSTILE}: ImageSet assets cannot be exported"]
    [row] = get_asset_job_logs(company, image, locale="fr")
    assert row.log_message == f"Exporté : pics/{HOSTILE}.jpg"
    # a publish of the same image: "published {path}" with the name inside the path
    published = submit(publish_request(company, "Publish {path}", locale="ja"))
    log = stack.wait(company, published)
    assert log.state == "Done"
    assert _by_type(log)["ImageServingPublishSuccess"] == [f"公開しました: /pics/{HOSTILE}.jpg"]
    assert _details(company, published, "de")["ImageServingPublishSuccess"] == [
        f"Veröffentlicht: /pics/{HOSTILE}.jpg"
    ]


def test_old_rows_and_rows_the_catalogs_cannot_render_keep_their_english(stack: Stack) -> None:
    company, assets = stack.company(1)
    handle = submit(export_request(company, assets, "Old rows"))
    done = stack.wait(company, handle)
    run_id = _run_id(done)
    with get_runtime().store.write() as session:
        run = session.get(Run, run_id)
        assert run is not None
        row = {"run_id": run_id, "company_id": run.company_id, "log_type": "FileCancel"}
        session.add_all(
            [
                # as written before message ids existed
                LogDetail(**row, message="an old row {0} {path}"),
                # by a release whose message the catalogs no longer (or do not yet) hold
                LogDetail(
                    **row,
                    message="retired message 1",
                    message_id="retired message {n}",
                    message_args={"n": "1"},
                ),
                # a known message without its arguments
                LogDetail(**row, message="published odd args", message_id="published {path}"),
            ]
        )
    for locale in ("de", "ja", None):
        rows = _details(company, handle, locale)["FileCancel"]
        assert rows == sorted(["an old row {0} {path}", "retired message 1", "published odd args"])


def test_cli_details_take_a_locale(stack: Stack) -> None:
    company, assets = stack.company(1)
    handle = submit(export_request(company, assets, "Cli [/b] {0}"))
    stack.wait(company, handle)

    def details(*extra: str) -> str:
        argv = [sys.executable, "-m", "jobengine.cli", "jobs", "details", "-c", company, handle]
        done = subprocess.run(
            [*argv, *extra],
            env={**os.environ, **stack.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    german = details("--locale", "de-CH")
    assert "Job Cli [/b] {0} gestartet" in german
    assert "Exportiert: pics/img000.jpg" in german
    assert "Job abgeschlossen: 1 erfolgreich" in german
    english_out = details()
    assert "job Cli [/b] {0} started" in english_out and "exported pics/img000.jpg" in english_out
    assert "書き出しました: pics/img000.jpg" in details("--locale", "ja")


# --- stores made before the message columns ---------------------------------------------------


def test_an_older_store_gets_the_message_columns(
    store_only: dict[str, str], tmp_path: Path
) -> None:
    backend = "postgres" if "postgresql" in store_only["DATABASE_URL"] else "sqlite"
    url = store_url(backend, tmp_path)
    old = Store(url)
    migrate.prepare(old)
    with old.engine.begin() as conn:  # a store made before migrations, log_details as it was
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("ALTER TABLE log_details DROP COLUMN message_args"))
        conn.execute(text("ALTER TABLE log_details DROP COLUMN message_id"))
    old.dispose()
    probe = Store(url)
    columns = {c["name"] for c in inspect(probe.engine).get_columns("log_details")}
    probe.dispose()
    assert "message_id" not in columns
    stores = [Store(url), Store(url)]
    for store in stores:  # twice: the second finds them there
        migrate.prepare(store)
    columns = {c["name"] for c in inspect(stores[0].engine).get_columns("log_details")}
    assert {"message_id", "message_args"} <= columns
    for store in stores:
        store.dispose()
