"""The pure rules of the upload kinds, without a network or a store: the address policy against
server-side request forgery, destination names and paths, the options refused at submit."""

from __future__ import annotations

import ipaddress

import pytest

from jobengine.assets.ingest import (
    MAX_NAME_CHARS,
    BadPath,
    UploadRules,
    clean_folder,
    clean_name,
    join_folder,
    split_dest_path,
)
from jobengine.errors import ConfigurationError, NotSupported
from jobengine.kinds.processing_options import refuse_unsupported, unsupported_fields
from jobengine.kinds.upload_directory import UploadDirectoryKind, clean_server_dir, upload_root
from jobengine.kinds.upload_urls import UploadUrlsKind
from jobengine.model import UploadDirectoryJob, UploadUrlsJob
from jobengine.net.fetch import FetchLimits, display_url
from jobengine.net.policy import AddressPolicy, address_refusal
from jobengine.settings import Settings

# --- the address policy ------------------------------------------------------------------------

REFUSED = {
    # IPv4
    "0.0.0.0": "unspecified",
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",  # cloud metadata
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "100.64.0.1": "not public",  # carrier-grade NAT
    "192.0.2.10": "private",  # documentation
    "198.18.0.1": "private",  # benchmarking
    # IPv6
    "::": "unspecified",
    "::1": "loopback",
    "fe80::1": "link-local",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "ff02::1": "multicast",
    "ff0e::1": "multicast",
    "fec0::1": "site-local",
    "2001:db8::1": "private",  # documentation
    "100::1": "reserved",
    "::127.0.0.1": "reserved",  # IPv4-compatible (deprecated)
}
# IPv4 addresses carried inside IPv6 ones are judged by the IPv4 address
EMBEDDED = {
    "::ffff:127.0.0.1": "loopback",  # IPv4-mapped
    "::ffff:10.0.0.1": "private",
    "::ffff:169.254.169.254": "link-local",
    "::ffff:0.0.0.0": "unspecified",
    "2002:7f00:1::": "loopback",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::": "link-local",  # 6to4 of 169.254.169.254
    "64:ff9b::a00:1": "private",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1": "loopback",
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001::200e"]


@pytest.mark.parametrize(("address", "why"), sorted(REFUSED.items()))
def test_every_non_public_range_is_refused(address: str, why: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize(("address", "why"), sorted(EMBEDDED.items()))
def test_ipv4_inside_ipv6_is_judged_by_the_ipv4_address(address: str, why: str) -> None:
    refusal = address_refusal(ipaddress.ip_address(address))
    assert refusal is not None and refusal.startswith(f"{why} (IPv4 ")


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None
    assert AddressPolicy().refusal("example.com", 443, ipaddress.ip_address(address)) is None


def test_no_allow_list_refuses_loopback_whatever_the_host_name() -> None:
    policy = AddressPolicy()
    loop = ipaddress.ip_address("127.0.0.1")
    assert policy.refusal("localhost", 80, loop) == "loopback"
    assert policy.refusal("public.example.com", 80, loop) == "loopback"  # a rebinding answer


def test_allow_list_entries() -> None:
    policy = AddressPolicy.parse(
        ["127.0.0.1", "intranet.example:8443", "10.20.0.0/16", "[::1]:8080", "fd00::/8", " "]
    )
    ip = ipaddress.ip_address
    assert policy.refusal("localhost", 1234, ip("127.0.0.1")) is None  # the address is listed
    assert policy.refusal("x", 80, ip("127.0.0.2")) == "loopback"  # only that address
    assert policy.refusal("INTRANET.example.", 8443, ip("10.9.9.9")) is None  # name and port
    assert policy.refusal("intranet.example", 443, ip("10.9.9.9")) == "private"  # other port
    assert policy.refusal("x", 80, ip("10.20.255.1")) is None  # in the CIDR
    assert policy.refusal("x", 80, ip("10.21.0.1")) == "private"
    assert policy.refusal("x", 8080, ip("::1")) is None
    assert policy.refusal("x", 8081, ip("::1")) == "loopback"
    assert policy.refusal("x", 80, ip("fd12::1")) is None
    assert str(policy.refusal("x", 80, ip("::ffff:10.20.0.1"))).startswith("private")


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "host:port", "host:99999", "[::1", "a:b:c/x"])
def test_a_malformed_allow_list_is_a_configuration_error(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="JOBENGINE_UPLOAD_ALLOWED_HOSTS"):
        AddressPolicy.parse([entry])
    with pytest.raises(ConfigurationError):
        Settings.from_env({"JOBENGINE_UPLOAD_ALLOWED_HOSTS": f"127.0.0.1,{entry}"})


def test_upload_settings_and_limits() -> None:
    settings = Settings.from_env(
        {
            "JOBENGINE_UPLOAD_ALLOWED_HOSTS": "127.0.0.1, files.example:8080 ,",
            "JOBENGINE_UPLOAD_MAX_BYTES": "1000",
            "JOBENGINE_UPLOAD_DEADLINE": "5000",
            "JOBENGINE_TASK_TIME_LIMIT": "100",
        }
    )
    assert settings.upload_allowed_hosts == ("127.0.0.1", "files.example:8080")
    limits = FetchLimits.from_settings(settings)
    assert limits.max_bytes == 1000
    assert limits.deadline == 80  # kept inside the task's time limit
    defaults = Settings.from_env({})
    assert defaults.upload_allowed_hosts == ()
    assert defaults.upload_max_bytes == 512 * 1024 * 1024


def test_display_url_hides_credentials_and_query() -> None:
    url = "https://user:s3cret@files.example:8443/a/b.jpg?X-Amz-Signature=abc#frag"
    shown = display_url(url)
    assert shown == "https://files.example:8443/a/b.jpg?..."
    assert "s3cret" not in shown and "user" not in shown and "abc" not in shown
    assert display_url("http://[::1]:80/x") == "http://[::1]:80/x"
    assert display_url("http://host:notaport/x") == "(an invalid URL)"


# --- destination names and paths ---------------------------------------------------------------


def test_dest_paths() -> None:
    assert split_dest_path("a.jpg") == ("/", "a.jpg")
    assert split_dest_path("pics/2024/a.jpg") == ("/pics/2024", "a.jpg")
    assert split_dest_path("/pics//./2024/a.jpg") == ("/pics/2024", "a.jpg")
    assert split_dest_path("pics/wéird name?.jpg") == ("/pics", "w_ird name_.jpg")  # safe_name
    assert split_dest_path("Fotos für 2024/a b.jpg") == ("/Fotos für 2024", "a b.jpg")


@pytest.mark.parametrize(
    ("dest", "reason"),
    [
        ("../../etc/passwd", "'..'"),
        ("pics/../../x.jpg", "'..'"),
        ("pics/..", "'..'"),
        ("/../x.jpg", "'..'"),
        ("C:/Windows/x.jpg", "absolute"),
        ("//server/share/x.jpg", "absolute"),
        ("pics\\..\\x.jpg", "backslash"),
        ("pics/a\x00.jpg", "NUL"),
        ("pics/a\nb.jpg", "control character"),
        ("pics\t/a.jpg", "control character"),
        ("a\x7f.jpg", "control character"),
        ("pics/", "folder"),
        ("pics/.", "no file"),
        ("pics/ . ", "no file"),
        ("x" * (MAX_NAME_CHARS + 1) + ".jpg", "longer than"),
        ("/".join(["d" * 150] * 8) + "/a.jpg", "longer than"),
        ("pics/ ./a.jpg", "folder named"),
    ],
)
def test_hostile_dest_paths_are_refused(dest: str, reason: str) -> None:
    with pytest.raises(BadPath) as caught:
        split_dest_path(dest)
    assert reason in caught.value.reason


def test_folders_names_and_server_dirs() -> None:
    assert clean_folder("") == clean_folder("/") == clean_folder("./") == "/"
    assert clean_folder("a/b/") == "/a/b"
    assert join_folder("/in", "sub/deeper") == "/in/sub/deeper"
    assert join_folder("/", "") == "/"
    with pytest.raises(BadPath):
        join_folder("/in", "../escape")
    assert clean_name("a b.jpg") == "a b.jpg"
    for bad in ("", ".", "..", "a/b", "x\r.jpg"):
        with pytest.raises(BadPath):
            clean_name(bad)
    assert clean_server_dir("") == clean_server_dir(".") == ""
    assert clean_server_dir("incoming/2024/") == "incoming/2024"
    for bad in ("/etc", "~root", "../x", "a/../../b", "C:/x", "a\\b", "a\x00b", "//x"):
        with pytest.raises(BadPath):
            clean_server_dir(bad)
    assert upload_root("c|47") == "ftp/c_47"


def test_publish_state_rules() -> None:
    keep = UploadRules(overwrite=True, ready_for_publish=True)
    assert keep.publish_state(None) == "MarkedForPublish"  # created
    assert keep.publish_state("Published") == "Published"  # unset: the default keeps it
    assert UploadRules(True, True, True).publish_state("NotMarkedForPublish") == (
        "NotMarkedForPublish"
    )
    assert UploadRules(True, True, False).publish_state("Published") == "MarkedForPublish"
    assert UploadRules(True, False, False).publish_state("Published") == "NotMarkedForPublish"
    assert UploadRules(False, False).publish_state(None) == "NotMarkedForPublish"


# --- options refused at submit -----------------------------------------------------------------


def _urls_job(**options: object) -> UploadUrlsJob:
    return UploadUrlsJob.model_validate(
        {
            "urlArray": {"items": [{"sourceUrl": "https://x.example/a.jpg", "destPath": "a.jpg"}]},
            "overwrite": True,
            "readyForPublish": False,
            "createMask": False,
            "emailSetting": "None",
            **options,
        }
    )


REFUSED_OPTIONS = {
    "createMask": True,
    "knockoutBackgroundOptions": {"corner": "UpperLeft", "fillMethod": "FloodFill"},
    "autoSmartCropOptionsArray": {"items": [{"name": "sq", "width": 1, "height": 1, "type": "x"}]},
    "photoshopOptions": {"process": "MaintainLayers"},
    "postScriptOptions": {"process": "Rasterize"},
    "pdfOptions": {},  # no process: IPS's default, Rasterize
    "illustratorOptions": {"resolution": 150},
    "inDesignOptions": {"process": "Rasterize"},
    "colorManagementOptions": {"colorManagement": "Convert"},
    "cssOptions": {"forceStaticImages": True},
    "autoSetCreationOptions": {"autoSetsArray": {"items": ["s|1"]}},
    "projectHandleArray": {"items": ["p|1"]},
    "mediaOptions": {"generateThumbnail": True},
    "xmpKeywords": "red,blue",
    "unsharpMaskOptions": {"amount": 1.0},
    "unCompressOptions": {"process": "UnCompress"},
    "metadataOptions": {"updateArray": {"items": [{"fieldHandle": "f|1", "value": "v"}]}},
    "jwtToken": "t",
    "imsOrg": "o",
    "apikey": "k",
}
ACCEPTED_OPTIONS = {
    "postHttpUrl": "https://hooks.example/done",  # called when the run ends (test_callbacks.py)
    "manualCropOptions": {"left": 0, "right": 0, "top": 0, "bottom": 0},
    # (the other crop options are honoured: tests/assets/test_upload_crops.py; at most one per job)
    "photoshopOptions": {"process": "None"},
    "pdfOptions": {"process": "None"},
    "postScriptOptions": {"process": "None"},
    "illustratorOptions": {"process": "None"},
    "colorManagementOptions": {"colorManagement": "Default"},
    "unCompressOptions": {"process": "None"},
    "xmpKeywords": "  ",
    "preservePublishState": True,
    "synchronizationComplete": True,
    "preserveCrop": False,
    "excludeMasterVideoFromAVS": True,
    "ignoreSmartCropGeneration": True,
    "preserveSmartCrop": True,
    "postJobOnlyIfFiles": True,
    "numUrls": 1,
}


@pytest.mark.parametrize(("name", "value"), sorted(REFUSED_OPTIONS.items()))
def test_options_asking_for_work_are_refused_naming_the_field(name: str, value: object) -> None:
    job = _urls_job(**{name: value})
    with pytest.raises(NotSupported) as caught:
        refuse_unsupported("uploadUrlsJob", job, UploadUrlsKind.honoured)
    assert caught.value.field == f"uploadUrlsJob/{name}"
    assert caught.value.reason.startswith(f"uploadUrlsJob/{name} is not supported")
    assert caught.value.code == 30001


def test_options_asking_for_nothing_are_accepted() -> None:
    job = _urls_job(**ACCEPTED_OPTIONS)
    assert unsupported_fields("uploadUrlsJob", job, UploadUrlsKind.honoured) == []


def test_every_refused_field_is_listed_in_order() -> None:
    job = _urls_job(createMask=True, xmpKeywords="k", apikey="a")
    found = [path for path, _ in unsupported_fields("uploadUrlsJob", job, UploadUrlsKind.honoured)]
    assert found == [
        "uploadUrlsJob/createMask",
        "uploadUrlsJob/xmpKeywords",
        "uploadUrlsJob/apikey",
    ]


def test_directory_job_fields() -> None:
    base = {
        "serverDir": "in",
        "overwrite": False,
        "readyForPublish": False,
        "includeSubfolders": True,
        "createMask": False,
        "processMetadataFiles": False,
        "emailSetting": "None",
        "destFolder": "/x",
    }
    job = UploadDirectoryJob.model_validate(base)
    assert unsupported_fields("uploadDirectoryJob", job, UploadDirectoryKind.honoured) == []
    job = UploadDirectoryJob.model_validate({**base, "processMetadataFiles": True})
    assert unsupported_fields("uploadDirectoryJob", job, UploadDirectoryKind.honoured)[0][0] == (
        "uploadDirectoryJob/processMetadataFiles"
    )
