"""The inputs of the IPS job operations as models: IPS names as aliases, fields in XSD order.

submitJob's input is :class:`~jobengine.model.SubmitJobRequest` itself; every other operation's
``<op>Param`` is one of the small models below. They are read from SOAP with
:func:`jobengine.model.ipsxml.parse_element` and from JSON with
:func:`jobengine.model.validate_model`, so a bad value is the same fault on both surfaces.
"""

from __future__ import annotations

from typing import Annotated

from jobengine.model.base import (
    Array,
    IpsModel,
    JsonSchemaHint,
    NonEmptyText,
    Text,
    XsdBool,
    XsdDateTime,
    XsdInt,
)
from jobengine.operations.presets import MAX_DEFINITION, NAME_PATTERN

__all__ = [
    "DeleteImageFormatParam",
    "GetActiveJobsParam",
    "GetAssetJobLogsParam",
    "GetImageFormatsParam",
    "GetJobLogDetailsParam",
    "GetJobLogsParam",
    "GetScheduledJobsParam",
    "JobControlParam",
    "SaveImageFormatParam",
]


class GetActiveJobsParam(IpsModel):
    """getActiveJobsParam: every filter optional; includeWaitingJobs is XSD-only."""

    company_handle: Text | None = None
    job_handle: Text | None = None
    original_name: Text | None = None
    include_waiting_jobs: XsdBool | None = None


class GetScheduledJobsParam(IpsModel):
    """getScheduledJobsParam."""

    company_handle: Text | None = None
    job_handle: Text | None = None
    original_name: Text | None = None


class GetJobLogsParam(IpsModel):
    """getJobLogsParam: summary rows, filtered and sorted."""

    company_handle: Text | None = None
    user_handle: Text | None = None
    sort_by: Text | None = None
    sort_direction: Text | None = None
    start_date: XsdDateTime | None = None
    end_date: XsdDateTime | None = None
    num_rows: XsdInt | None = None


class GetJobLogDetailsParam(IpsModel):
    """getJobLogDetailsParam: the job logs of one job, each with a page of detail rows."""

    company_handle: NonEmptyText
    job_handle: Text | None = None
    original_name: Text | None = None
    log_type_array: Array[Text] | None = None
    records_per_page: XsdInt | None = None
    results_page: XsdInt | None = None
    sort_by: Text | None = None
    sort_direction: Text | None = None


class GetAssetJobLogsParam(IpsModel):
    """getAssetJobLogsParam."""

    company_handle: NonEmptyText
    asset_handle: NonEmptyText


class JobControlParam(IpsModel):
    """stopJobParam, pauseJobParam, resumeJobParam, deleteJobParam and executeJobParam."""

    company_handle: NonEmptyText
    job_handle: NonEmptyText


class SaveImageFormatParam(IpsModel):
    """saveImageFormatParam: a new preset, or a change to ``imageFormatHandle``."""

    company_handle: NonEmptyText
    image_format_handle: Text | None = None
    name: Annotated[NonEmptyText, JsonSchemaHint(pattern=NAME_PATTERN)]
    url_modifier: Annotated[Text, JsonSchemaHint(maxLength=MAX_DEFINITION)]


class GetImageFormatsParam(IpsModel):
    """getImageFormatsParam."""

    company_handle: NonEmptyText


class DeleteImageFormatParam(IpsModel):
    """deleteImageFormatParam."""

    company_handle: NonEmptyText
    image_format_handle: NonEmptyText
