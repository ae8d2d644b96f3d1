"""IPS string constants as StrEnums, spelled exactly as IPS spells them (case-sensitive).

Member names are Python; values are the IPS spellings that go over the wire.
"""

from __future__ import annotations

import re
from enum import StrEnum

__all__ = [
    "ActiveJobState",
    "AssetOverwriteMode",
    "ColorManagement",
    "ColorSpace",
    "Corner",
    "DetailSortField",
    "EmailSetting",
    "ExportFormat",
    "FillMethod",
    "JobKind",
    "JobLogSortField",
    "JobSubType",
    "JobType",
    "LayerAnchor",
    "LayerNaming",
    "PdfProcess",
    "PhotoshopProcess",
    "PublishType",
    "RasterizeProcess",
    "SortDirection",
    "TaskState",
    "TriggerState",
    "UnCompressProcess",
]


class JobKind(StrEnum):
    """The eleven submitJob job-type payloads, by type name, in submitJobParam's XSD order."""

    IMAGE_SERVING_PUBLISH = "ImageServingPublishJob"
    IMAGE_RENDERING_PUBLISH = "ImageRenderingPublishJob"
    VIDEO_PUBLISH = "VideoPublishJob"
    SERVER_DIRECTORY_PUBLISH = "ServerDirectoryPublishJob"
    UPLOAD_DIRECTORY = "UploadDirectoryJob"
    UPLOAD_URLS = "UploadUrlsJob"
    OPTIMIZE_IMAGES = "OptimizeImagesJob"
    RIP_PDFS = "RipPdfsJob"
    REPROCESS_ASSETS = "ReprocessAssetsJob"
    EXPORT = "ExportJob"
    AUTOMATED_SET_GENERATION = "AutomatedSetGenerationJob"

    @property
    def element(self) -> str:
        """The submitJobParam element name, e.g. ``exportJob``."""
        return _ELEMENTS[self]

    @property
    def attribute(self) -> str:
        """The SubmitJobRequest attribute name, e.g. ``export_job``."""
        return _ATTRIBUTES[self]

    @classmethod
    def from_element(cls, element: str) -> JobKind:
        """The kind of a submitJobParam element name; ValueError for any other name."""
        return cls(element[:1].upper() + element[1:])


# Computed once: ``kind`` and ``job`` of every request ask for these (submit's hot path).
_ELEMENTS = {kind: kind.value[:1].lower() + kind.value[1:] for kind in JobKind}
_ATTRIBUTES = {kind: re.sub(r"(?<=[a-z])(?=[A-Z])", "_", kind.value).lower() for kind in JobKind}


class JobType(StrEnum):
    """Job Types constants (ActiveJob/type, ScheduledJob/type); the last five are our names."""

    IMAGE_SERVING_PUBLISH = "ImageServingPublish"
    IMAGE_RENDERING_PUBLISH = "ImageRenderingPublish"
    SERVER_DIRECTORY_PUBLISH = "ServerDirectoryPublish"
    SERVER_DIRECTORY_PUBLISH_WITH_TEMPLATE = "ServerDirectoryPublishWithTemplate"
    VIDEO_PUBLISH = "VideoPublish"
    UPLOAD_FROM_SERVER_DIRECTORY = "UploadFromServerDirectory"
    URL_UPLOAD = "UrlUpload"
    METADATA_UPLOAD = "MetadataUpload"
    IMAGE_OPTIMIZATION = "ImageOptimization"
    CLEANUP = "Cleanup"
    # IPS documents no values for these; the names are this server's choice.
    EXPORT = "Export"
    REPROCESS_ASSETS = "ReprocessAssets"
    RIP_PDFS = "RipPdfs"
    AUTOMATED_SET_GENERATION = "AutomatedSetGeneration"
    UPLOAD_POST = "UploadPost"


class EmailSetting(StrEnum):
    """Which job e-mails are sent (every job type's emailSetting)."""

    ALL = "All"
    ERROR = "Error"
    ERROR_AND_WARNING = "ErrorAndWarning"
    JOB_COMPLETION = "JobCompletion"
    NONE = "None"


class PublishType(StrEnum):
    """ImageServingPublishJob/publishType."""

    FULL = "Full"
    FULL_WITH_SEARCH = "FullWithSearch"
    INCREMENTAL = "Incremental"


class ExportFormat(StrEnum):
    """ExportJob/fmt: the original files, or converted through Image Serving."""

    ORIG = "orig"
    CONVERT = "convert"


class ActiveJobState(StrEnum):
    """Active Job States (ActiveJob/state)."""

    UNKNOWN = "Unknown"
    NEW = "New"
    WAITING_CLIENT = "WaitingClient"
    WAITING_COORDINATOR = "WaitingCoordinator"
    RUNNING = "Running"
    STOPPING = "Stopping"
    DONE = "Done"


class TaskState(StrEnum):
    """TaskProgress/taskState."""

    UNKNOWN = "Unknown"
    NEW = "New"
    PROCESSING = "Processing"
    STOPPING = "Stopping"
    DONE = "Done"
    FAILED = "Failed"


class TriggerState(StrEnum):
    """Job Trigger States (ScheduledJob/triggerState), Quartz terms."""

    BLOCKED = "Blocked"
    COMPLETE = "Complete"
    ERROR = "Error"
    NONE = "None"
    NORMAL = "Normal"
    PAUSED = "Paused"


class JobSubType(StrEnum):
    """JobLog/jobSubType, used by Image Serving publish only."""

    FULL = "full"
    INCREMENT = "increment"
    FULL_WITH_SEARCH = "fullwithsearch"
    FULL_OVERRIDE = "fulloverride"


class JobLogSortField(StrEnum):
    """Job Log Sort Fields (getJobLogs/sortBy)."""

    JOB_NAME = "JobName"
    LOG_TYPE = "LogType"
    START_DATE = "StartDate"
    COMPANY_NAME = "CompanyName"
    USER_ID = "UserId"
    EMAIL = "Email"
    FILE_ERROR_COUNT = "FileErrorCount"
    FILE_WARNING_COUNT = "FileWarningCount"
    FILE_SUCCESS_COUNT = "FileSuccessCount"


class DetailSortField(StrEnum):
    """getJobLogDetails/sortBy."""

    DATE = "Date"
    LOG_TYPE = "LogType"


class SortDirection(StrEnum):
    """Sort Directions."""

    ASCENDING = "Ascending"
    DESCENDING = "Descending"


class AssetOverwriteMode(StrEnum):
    """Asset Overwrite Modes (a company setting that decides what ``overwrite`` replaces)."""

    OVERWRITE_FULL_NAME = "OverwriteFullName"
    OVERWRITE_ANY_EXT = "OverwriteAnyExt"
    OVERWRITE_FULL_NAME_ANY_FOLDER = "OverwriteFullNameAnyFolder"
    OVERWRITE_ANY_EXT_ANY_FOLDER = "OverwriteAnyExtAnyFolder"


class Corner(StrEnum):
    """The corner sampled by auto color crop and knockout background."""

    UPPER_LEFT = "UpperLeft"
    UPPER_RIGHT = "UpperRight"
    BOTTOM_LEFT = "BottomLeft"
    BOTTOM_RIGHT = "BottomRight"


class FillMethod(StrEnum):
    """KnockoutBackgroundOptions/fillMethod."""

    FLOOD_FILL = "FloodFill"
    MATCH_PIXEL = "MatchPixel"


class PhotoshopProcess(StrEnum):
    """PhotoshopOptions/process."""

    NONE = "None"
    MAINTAIN_LAYERS = "MaintainLayers"


class LayerNaming(StrEnum):
    """PhotoshopLayerOptions/layerNaming."""

    LAYER_NAME = "LayerName"
    APPEND_NUMBER = "AppendNumber"
    APPEND_NAME = "AppendName"
    FOLDERS = "Folders"


class LayerAnchor(StrEnum):
    """PhotoshopLayerOptions/anchor."""

    CENTER = "Center"
    NORTH = "North"
    NORTHWEST = "Northwest"
    WEST = "West"
    SOUTHWEST = "Southwest"
    SOUTH = "South"
    SOUTHEAST = "Southeast"
    EAST = "East"
    NORTHEAST = "Northeast"


class PdfProcess(StrEnum):
    """PDFOptions/process; Rasterize is the IPS default."""

    NONE = "None"
    RASTERIZE = "Rasterize"
    THUMBNAIL = "Thumbnail"


class RasterizeProcess(StrEnum):
    """IllustratorOptions/process and PostScriptOptions/process; Rasterize is the default."""

    NONE = "None"
    RASTERIZE = "Rasterize"


class ColorSpace(StrEnum):
    """The colorspace of PDF, Illustrator and PostScript rasterization."""

    AUTO = "Auto"
    RGB = "Rgb"
    CMYK = "Cmyk"
    GRAY = "Gray"


class ColorManagement(StrEnum):
    """ColorManagementOptions/colorManagement."""

    DEFAULT = "Default"
    MAINTAIN_ORIGINAL = "MaintainOriginal"
    CONVERT = "Convert"


class UnCompressProcess(StrEnum):
    """UnCompressOptions/process: keep an archive as an asset, or extract it."""

    NONE = "None"
    UN_COMPRESS = "UnCompress"
