"""Job log rows speak to the user: the asset's name and what was wrong, in words. Storage keys,
local paths, exception classes and absurd numbers stay out (the worker log has the details)."""

from __future__ import annotations

import re

import pytest

from jobengine import submit
from jobengine.errors import InvalidParameter, log_reason
from jobengine.imaging.geometry import MAX_SIDE, check_plan, plan
from jobengine.imaging.limits import Limits
from jobengine.imaging.modifiers import parse_modifiers
from jobengine.kinds.uploading import _reason
from jobengine.storage import LeadsOut, StorageError, StorageFull
from tests.support.helpers import export_request
from tests.support.stack import Stack


@pytest.mark.parametrize("scale", ["1e-300", "1e-320", "4.9e-324", "1e-6"])
def test_absurd_scales_are_refused_in_a_sentence(scale: str) -> None:
    request = parse_modifiers(f"scl={scale}")
    with pytest.raises(InvalidParameter) as caught:  # LimitExceeded, never OverflowError
        check_plan(plan(4000, 3000, request), Limits())
    assert len(caught.value.reason) < 200 and not re.search(r"\d{20}", caught.value.reason)
    assert MAX_SIDE == 1_000_000_000


def test_a_failure_is_told_without_keys_paths_or_classes() -> None:
    hidden = "_staging/run-64/a_47_6/x.jpg"
    cases = [
        (StorageError(f"storage key escapes the root: {hidden!r}"), "an unexpected error"),
        (FileNotFoundError(2, "No such file or directory", f"/srv/storage/{hidden}"), "missing"),
        (PermissionError(13, "Permission denied", f"/srv/storage/{hidden}"), "may not be read"),
        (OSError(28, "No space left on device", f"/srv/{hidden}"), "no space left on the storage"),
        (OSError(5, "Input/output error", f"/srv/{hidden}"), "(input/output error)"),
        (ZeroDivisionError("division by zero"), "an unexpected error"),
        (InvalidParameter("wid=0: is not an integer in 1..65535"), "wid=0"),
    ]
    for exc, expected in cases:
        said = log_reason(exc)
        assert expected in said, (exc, said)
        assert hidden not in said and "Error" not in said and "/srv" not in said
    full = StorageFull(f"{hidden.rpartition('/')[0]}/exports/Nightly.zip")
    assert log_reason(full) == "no space left on device writing Nightly.zip"  # its name only
    assert _reason(LeadsOut("'ftp/47/in/x' leads out of 'ftp/47/in'")) == (
        "it is a link that leads out of the folder"
    )
    assert "ftp/47" not in _reason(PermissionError("'ftp/47/in/fifo' is not a regular file"))
    assert _reason(StorageError(f"invalid storage key {hidden!r}")) == "its name cannot be stored"


def test_an_export_with_an_absurd_scale_fails_each_asset_in_words(stack: Stack) -> None:
    company, assets = stack.company(2)
    for scale in ("1e-300", "1e-320"):
        request = export_request(company, assets, f"Scale {scale}")
        request["exportJob"].update(fmt="convert", is_modifier=f"scl={scale}")
        log = stack.wait(company, submit(request))
        assert (log.state, log.file_error_count) == ("Done", 2)
        rows = sorted(d.log_message for d in log.details if d.log_type == "GetFailure")
        assert rows == [
            f"cannot convert img00{n}.jpg: the scaled image would be over 1000000000 pixels "
            "wide or high"
            for n in range(2)
        ]
