"""The submitJob request: SubmitJobRequest and to_ips_dict
(:func:`jobengine.model.ipsxml.parse_submit_job` reads one from any input)."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator, model_validator

from jobengine.model.base import (
    IpsModel,
    JsonSchemaHint,
    NonEmptyText,
    Text,
    XsdDateTime,
    ips_error,
    show,
)
from jobengine.model.constants import JobKind
from jobengine.model.jobs import (
    AutomatedSetGenerationJob,
    CreateVideoSitemapJob,
    ExportJob,
    ImageRenderingPublishJob,
    ImageServingPublishJob,
    MetadataPublishJob,
    OptimizeImagesJob,
    ServerDirectoryPublishJob,
    VideoPublishJob,
)
from jobengine.model.upload import ReprocessAssetsJob, RipPdfsJob, UploadDirectoryJob, UploadUrlsJob

__all__ = [
    "BIDI_CONTROLS",
    "JOB_MODELS",
    "MAX_JOB_NAME_LENGTH",
    "MAX_SCHEDULE_LENGTH",
    "SUBMIT_JOB_ROOT",
    "JobPayload",
    "SubmitJobRequest",
    "SubmitJobReturn",
    "invisible",
    "to_ips_dict",
    "to_ips_json",
]

SUBMIT_JOB_ROOT = "submitJobParam"
MAX_JOB_NAME_LENGTH = 255
MAX_SCHEDULE_LENGTH = 255  # what the job store keeps of an execSchedule
_LOCALE = re.compile(r"[a-z]{2}(-[A-Z]{2})?")
# _job_name's rules as a JSON Schema pattern: no control character, no bidi embedding, override
# or isolate (a name shown reversed: "invoice\u202egnp.exe"), no '|', not blank.
_NAME_CHAR = "[^|\\u0000-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069\\uFFFE\\uFFFF]"
_NAME_SOLID = "[^|\\s\\u0000-\\u001F\\u007F-\\u009F\\u202A-\\u202E\\u2066-\\u2069\\uFFFE\\uFFFF]"
_JOB_NAME_SCHEMA = JsonSchemaHint(
    pattern=f"^{_NAME_CHAR}*{_NAME_SOLID}{_NAME_CHAR}*$", maxLength=MAX_JOB_NAME_LENGTH
)
# Bidi embeddings, overrides and isolates: they make a name display as something else.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Unicode's control characters (category Cc), all of them: C0, DEL and C1 (a regex, not a
# category lookup per character of every job name)
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def invisible(text: str) -> bool:
    """Whether ``text`` shows nothing: only spaces, dots and format characters (zero-width
    space, joiners...), so that it cannot be told from another name, or from none."""
    return all(c in " ." or c.isspace() or unicodedata.category(c) == "Cf" for c in text)


_RESTRICTED = ("metadata_publish_job", "create_video_sitemap_job")

JobPayload = (
    ImageServingPublishJob
    | ImageRenderingPublishJob
    | VideoPublishJob
    | ServerDirectoryPublishJob
    | UploadDirectoryJob
    | UploadUrlsJob
    | OptimizeImagesJob
    | RipPdfsJob
    | ReprocessAssetsJob
    | ExportJob
    | AutomatedSetGenerationJob
)

JOB_MODELS: dict[JobKind, type[JobPayload]] = {
    JobKind.IMAGE_SERVING_PUBLISH: ImageServingPublishJob,
    JobKind.IMAGE_RENDERING_PUBLISH: ImageRenderingPublishJob,
    JobKind.VIDEO_PUBLISH: VideoPublishJob,
    JobKind.SERVER_DIRECTORY_PUBLISH: ServerDirectoryPublishJob,
    JobKind.UPLOAD_DIRECTORY: UploadDirectoryJob,
    JobKind.UPLOAD_URLS: UploadUrlsJob,
    JobKind.OPTIMIZE_IMAGES: OptimizeImagesJob,
    JobKind.RIP_PDFS: RipPdfsJob,
    JobKind.REPROCESS_ASSETS: ReprocessAssetsJob,
    JobKind.EXPORT: ExportJob,
    JobKind.AUTOMATED_SET_GENERATION: AutomatedSetGenerationJob,
}


def _job_name(value: str) -> str:
    if invisible(value.replace(".", "x")):  # dots are visible in a job name
        raise ips_error("invalid", "must not be empty (or only invisible characters)")
    if len(value) > MAX_JOB_NAME_LENGTH:
        raise ips_error(
            "invalid", f"is {len(value)} characters long; at most {MAX_JOB_NAME_LENGTH} allowed"
        )
    if "|" in value:
        raise ips_error("invalid", "must not contain '|', the job handle separator")
    control = CONTROLS.search(value)
    if control is not None:
        raise ips_error("invalid", f"must not contain control characters; got {control[0]!r}")
    bidi = BIDI_CONTROLS.search(value)
    if bidi is not None:
        raise ips_error(
            "invalid", f"must not contain bidi controls (text shown reordered); got {bidi[0]!r}"
        )
    return value


def _locale(value: str) -> str:
    if not _LOCALE.fullmatch(value):
        raise ips_error(
            "invalid",
            f"must be ll or ll-CC (ISO-639 lower case, ISO-3166 upper case), e.g. en-US; "
            f"got {show(value)}",
        )
    return value


def _cron(value: str) -> str:
    from jobengine.cron import CronError, validate

    expression = value.strip()
    if len(expression) > MAX_SCHEDULE_LENGTH:
        raise ips_error(
            "invalid",
            f"is {len(expression)} characters long; at most {MAX_SCHEDULE_LENGTH} allowed",
        )
    try:
        validate(expression)
    except CronError as exc:
        raise ips_error(
            "invalid", f"{expression!r} is not a valid Quartz cron expression: {exc.reason}"
        ) from exc
    return expression


def _one_job_schema(schema: dict[str, Any]) -> None:
    """_one_job_and_one_time's rules in the JSON schema: one job type, not both times."""
    jobs = [name for name in schema.get("properties", {}) if name.endswith("Job")]
    schema["oneOf"] = [
        {"required": [name], "properties": {name: {"type": "object"}}} for name in jobs
    ]
    schema["not"] = {"required": ["execTime", "execSchedule"]}


class SubmitJobRequest(IpsModel):
    """submitJobParam: who, when and exactly one job-type payload."""

    model_config = ConfigDict(json_schema_extra=_one_job_schema)

    company_handle: NonEmptyText
    user_handle: Text | None = None
    job_name: Annotated[Text, AfterValidator(_job_name), _JOB_NAME_SCHEMA]
    locale: (
        Annotated[Text, AfterValidator(_locale), JsonSchemaHint(pattern=f"^{_LOCALE.pattern}$")]
        | None
    ) = None
    exec_time: XsdDateTime | None = None
    exec_schedule: (
        Annotated[Text, AfterValidator(_cron), JsonSchemaHint(maxLength=MAX_SCHEDULE_LENGTH)] | None
    ) = None
    description: Text | None = None
    image_serving_publish_job: ImageServingPublishJob | None = None
    image_rendering_publish_job: ImageRenderingPublishJob | None = None
    video_publish_job: VideoPublishJob | None = None
    server_directory_publish_job: ServerDirectoryPublishJob | None = None
    metadata_publish_job: MetadataPublishJob | None = None
    upload_directory_job: UploadDirectoryJob | None = None
    upload_urls_job: UploadUrlsJob | None = None
    optimize_images_job: OptimizeImagesJob | None = None
    rip_pdfs_job: RipPdfsJob | None = None
    reprocess_assets_job: ReprocessAssetsJob | None = None
    create_video_sitemap_job: CreateVideoSitemapJob | None = None
    export_job: ExportJob | None = None
    automated_set_generation_job: AutomatedSetGenerationJob | None = None

    @field_validator("exec_schedule", mode="before")
    @classmethod
    def _blank_schedule_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _one_job_and_one_time(self) -> Self:
        # the job fields given (a job field left out is None): looked for among the few given
        values = self.__dict__
        given = sorted(
            (n for n in _JOB_FIELD_SET.intersection(self.__pydantic_fields_set__)
             if values[n] is not None),
            key=_JOB_FIELDS.index,
        )  # fmt: skip
        names = [_JOB_ALIASES[n] for n in given]
        if not given:
            allowed = ", ".join(kind.element for kind in JobKind)
            raise ips_error("missing", f"a job type element is required, one of {allowed}")
        if len(given) > 1:
            raise ips_error(
                "invalid", f"give exactly one job type element; got {' and '.join(names)}", names[1]
            )
        if given[0] in _RESTRICTED:
            raise ips_error(
                "not_supported", "is a restricted IPS job type this server does not run", names[0]
            )
        if self.exec_time is not None and self.exec_schedule is not None:
            raise ips_error(
                "invalid", "give at most one of execTime and execSchedule", "execSchedule"
            )
        return self

    @property
    def kind(self) -> JobKind:
        """The job type of this request."""
        values = self.__dict__
        given = [a for a in _KIND_OF.keys() & self.__pydantic_fields_set__ if values[a] is not None]
        if len(given) == 1:  # a validated request's one job type, among the few fields given
            return _KIND_OF[given[0]]
        for kind, attribute in _KIND_ATTRIBUTES:  # model_construct(): the first, as ever
            if getattr(self, attribute) is not None:
                return kind
        raise ValueError("the request holds no job type")  # only a model_construct() can

    @property
    def job(self) -> JobPayload:
        """The job-type payload of this request (e.g. the ExportJob)."""
        payload: JobPayload = getattr(self, self.kind.attribute)
        return payload


# Computed once: every request's validation and ``kind`` look through these (submit's hot path).
_JOB_FIELDS = tuple(n for n in SubmitJobRequest.model_fields if n.endswith("_job"))
_JOB_FIELD_SET = frozenset(_JOB_FIELDS)
_JOB_ALIASES = {n: SubmitJobRequest.model_fields[n].alias or n for n in _JOB_FIELDS}
_KIND_ATTRIBUTES = tuple((kind, kind.attribute) for kind in JobKind)
_KIND_OF = {attribute: kind for kind, attribute in _KIND_ATTRIBUTES}


class SubmitJobReturn(IpsModel):
    """submitJobReturn: the new job's handle."""

    job_handle: NonEmptyText


def to_ips_dict(model: BaseModel) -> dict[str, Any]:
    """The model as JSON-safe data under IPS names; None left out, arrays as ``{"items": []}``."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def to_ips_json(model: BaseModel) -> str:
    """:func:`to_ips_dict` as JSON text, written by pydantic in one call (``json.loads`` of it
    is ``to_ips_dict(model)``): a bulk submission stores each request's payload so, without
    the dict and a ``json.dumps`` of it."""
    return model.model_dump_json(by_alias=True, exclude_none=True)
