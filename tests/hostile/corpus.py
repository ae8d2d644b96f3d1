"""The hostile corpus: inputs made at run time, each with the outcome it must get.

Tables, not tests: :mod:`tests.hostile.test_corpus` feeds them to every entry point (Python
``submit()``, SOAP, JSON, the CLI, the workers through real jobs). SECURITY.md lists the classes.
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from jobengine.model.ipsxml import IPS_NAMESPACE

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"

# --- a listener that must never be called ---------------------------------------------------


@dataclass
class Listener:
    """A TCP listener on a loopback address that counts connections: a request forged by an
    XXE, SSRF or coder payload would reach it. ``hits`` must stay 0."""

    host: str = "127.0.0.2"
    hits: int = 0
    port: int = 0
    _sock: socket.socket = field(init=False, repr=False)

    def start(self) -> Listener:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.bind((self.host, 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()

    def stop(self) -> None:
        self._sock.close()


# --- XML documents --------------------------------------------------------------------------


Make = Callable[..., str]


def plain_document(inner: str = "", *, company: str = "c", prologue: str = "",
                   namespace: str = IPS_NAMESPACE) -> str:  # fmt: skip
    """A submitJobParam document around ``inner`` (an ExportJob unless ``inner`` says more)."""
    job = inner or "<exportJob><fmt>orig</fmt><emailSetting>None</emailSetting></exportJob>"
    return (
        f'{prologue}<submitJobParam xmlns="{namespace}"><companyHandle>{company}'
        f"</companyHandle><jobName>Hostile</jobName>{job}</submitJobParam>"
    )


def soap_document(header: str) -> Make:
    """Like :func:`plain_document`, in a SOAP envelope with ``header`` (the prologue first)."""

    def make(inner: str = "", *, company: str = "c", prologue: str = "",
             namespace: str = IPS_NAMESPACE) -> str:  # fmt: skip
        param = plain_document(inner, company=company, namespace=namespace)
        return (
            f'{prologue}<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Header>{header}'
            f"</soapenv:Header><soapenv:Body>{param}</soapenv:Body></soapenv:Envelope>"
        )

    return make


def xml_cases(port: int, make: Make, company: str) -> dict[str, tuple[bytes, int]]:
    """name -> (document bytes, the fault code every surface answers with). ``port`` is a
    :class:`Listener`'s: an entity or DTD that was fetched would reach it."""
    url = f"http://127.0.0.2:{port}/x"
    laughs = '<!ENTITY a "lol">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)
    )
    doc: dict[str, tuple[str, int]] = {
        "xxe-file": (make("<jobName>&x;</jobName>", company=company,
                          prologue='<!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>'),
                     30003),
        "xxe-http": (make(company=company, prologue=f'<!DOCTYPE s [<!ENTITY x SYSTEM "{url}">]>'),
                     30003),
        "xxe-parameter": (make(company=company,
                               prologue=f'<!DOCTYPE s [<!ENTITY % p SYSTEM "{url}"> %p;]>'), 30003),
        "external-dtd": (make(company=company, prologue=f'<!DOCTYPE s SYSTEM "{url}">'), 30003),
        "billion-laughs": (make(company=company, prologue=f"<!DOCTYPE s [{laughs}]>"), 30003),
        "xinclude": (make('<x:include xmlns:x="http://www.w3.org/2001/XInclude" '
                          f'href="{url}"/>', company=company), 30003),
        "deep-nesting": (make("<a>" * 100_000 + "</a>" * 100_000, company=company), 30003),
        "huge": (make("<x>" + "x" * (6 * 1024 * 1024) + "</x>", company=company), 30003),
        "many-attributes": (make("<exportJob " + " ".join(f'a{i}="1"' for i in range(200_000))
                                 + "/>", company=company), 30003),
        "utf7": (make(company=company, prologue='<?xml version="1.0" encoding="UTF-7"?>'), 30003),
        "undecodable": (make("<jobName>\udcff</jobName>", company=company), 30003),
        "nul": (make("<jobName>a\x00b</jobName>", company=company), 30003),
        "bogus-dated-namespace": (make(company=company,
                                       namespace=f"{IPS_NAMESPACE}/2099-99-99"), 30003),
        "no-namespace": (make(company=company, namespace=""), 30003),
        "repeated-element": (make("<jobName>a</jobName><jobName>b</jobName>", company=company),
                             30003),
        "mixed-content": (make("text<exportJob/>", company=company), 30003),
    }  # fmt: skip
    cases = {k: (v.encode("utf-8", "surrogatepass"), code) for k, (v, code) in doc.items()}
    cases["empty"] = (b"", 30003)
    cases["not-xml"] = (b"%PDF-1.4 garbage", 30003)
    return cases


# --- field values (dict and JSON requests, and XML through the same model) ------------------


def field_cases(company: str, asset: str) -> dict[str, tuple[dict[str, Any], int]]:
    """name -> (a submitJob request as a dict, the fault code). Wrong types, out-of-range
    values, cron and time edges, traversal in paths, unicode and zero-width names."""

    def export(**extra: Any) -> dict[str, Any]:
        job = {"assetHandleArray": {"items": [asset]}, "fmt": "orig", "emailSetting": "None"}
        return {"companyHandle": company, "jobName": "Hostile", "exportJob": job, **extra}

    def with_job(**fields: Any) -> dict[str, Any]:
        request = export()
        request["exportJob"].update(fields)
        return request

    def upload_dir(server_dir: str, **fields: Any) -> dict[str, Any]:
        job = {"serverDir": server_dir, "overwrite": False, "readyForPublish": False,
               "includeSubfolders": False, "createMask": False, "processMetadataFiles": False,
               "emailSetting": "None", **fields}  # fmt: skip
        return {"companyHandle": company, "jobName": "Hostile dir", "uploadDirectoryJob": job}

    return {
        "job-name-object": ({**export(), "jobName": {"$gt": ""}}, 30001),
        "job-name-list": ({**export(), "jobName": ["a"]}, 30001),
        "job-name-too-long": ({**export(), "jobName": "x" * 100_000}, 30001),
        "job-name-control": ({**export(), "jobName": "a\x07b"}, 30001),
        "job-name-bidi-override": ({**export(), "jobName": "invoice\u202egnp.exe"}, 30001),
        "fmt-unknown": (with_job(fmt="exe"), 30001),
        "handles-not-a-list": (with_job(assetHandleArray={"items": "a|1"}), 30001),
        "too-many-handles": (with_job(assetHandleArray={"items": [f"{asset}{i}"
                                                                  for i in range(5000)]}), 30001),
        "year-9999": (export(execTime="9999-12-31T23:59:59Z"), 30001),
        "year-0": (export(execTime="0000-01-01T00:00:00Z"), 30001),
        "time-without-zone": (export(execTime="2030-01-01T00:00:00"), 30001),
        "time-garbage": (export(execTime="tomorrow"), 30001),
        "cron-never": (export(execSchedule="0 0 0 30 2 ?"), 30001),
        "cron-past-year": (export(execSchedule="0 0 0 1 1 ? 1999"), 30001),
        "cron-huge-step": (export(execSchedule="0/99999999999 * * * * ?"), 30001),
        "cron-both-days": (export(execSchedule="0 0 0 1 * MON"), 30001),
        "cron-10k": (export(execSchedule="0 " * 5000), 30001),
        "both-times": (export(execTime="2030-01-01T00:00:00Z", execSchedule="0 0 0 * * ?"),
                       30001),
        "locale-injection": (export(locale="en'; DROP TABLE jobs;--"), 30001),
        "macro-10kb": (with_job(fmt="convert", is_modifier="wid=1&" * 1800), 30001),
        "macro-unknown": (with_job(fmt="convert", macro="$nope$"), 30001),
        "server-dir-traversal": (upload_dir("../other"), 30001),
        "server-dir-absolute": (upload_dir("/etc"), 30001),
        "server-dir-backslash": (upload_dir("a\\..\\..\\b"), 30001),
        "server-dir-nul": (upload_dir("a\x00b"), 30001),
        "dest-folder-traversal": (upload_dir("in", destFolder="/a/../../b"), 30001),
        "dest-folder-zero-width": (upload_dir("in", destFolder="/\u200b/"), 30001),
        "no-job-type": ({"companyHandle": company, "jobName": "x"}, 30002),
        "two-job-types": ({**export(), "imageServingPublishJob": {"publishType": "Full",
                                                                  "emailSetting": "None"}}, 30001),
    }  # fmt: skip


# --- files a worker meets -------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + body + _png_chunk(b"IEND", b"")


def gif_bomb(width: int = 65_535, height: int = 65_535) -> bytes:
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00" * 6
    return screen + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00;"


def tiff_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
            (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, 16)]  # fmt: skip
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII", *t[:2], 1, t[2]) for t in tags
    )
    return b"II*\x00" + struct.pack("<I", 24) + b"\x00" * 16 + ifd + struct.pack("<I", 0)


def webp_bomb(width: int = 16_383, height: int = 16_383) -> bytes:
    """A WebP whose VP8X canvas claims ``width`` x ``height`` (268 MP) over a 1x1 image."""
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1)).save(tiny, "WEBP", lossless=True)
    vp8l = tiny.getvalue()[12:]  # the VP8L chunk of a 1x1 image
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + vp8l
    return b"RIFF" + struct.pack("<I", len(body)) + body


def png_decompression_bomb() -> bytes:
    """A real 12000x12000 gray PNG (144 MP, over the 100 MP limit) that compresses to ~150 KB."""
    row = b"\x00" + b"\x00" * 12_000
    ihdr = struct.pack(">IIBBBBB", 12_000, 12_000, 8, 0, 0, 0, 0)
    data = zlib.compress(row * 12_000, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", data)
        + (_png_chunk(b"IEND", b""))
    )


def coder_payloads(sentinel: str, port: int) -> dict[str, bytes]:
    """file name -> bytes: ImageMagick coder payloads, PostScript and PDF that would write
    ``sentinel`` or call the listener at ``port`` if anything interpreted them."""
    url = f"http://127.0.0.2:{port}/x"
    return {
        "rce.jpg": (f"push graphic-context\nviewbox 0 0 64 64\nfill 'url({url}\"|touch "
                    f'"{sentinel}")\'\npop graphic-context\n').encode(),
        "read.png": (b"push graphic-context\nviewbox 0 0 9 9\n"
                     b"image over 0,0 0,0 'text:/etc/passwd'\n"),
        "delete.gif": f"viewbox 0 0 1 1\nimage over 0,0 0,0 'ephemeral:{sentinel}'\n".encode(),
        "script.jpg": (f'<?xml version="1.0"?><image><read filename="{url}"/>'
                       f'<write filename="{sentinel}"/></image>').encode(),
        "vector.jpg": ('<svg xmlns="http://www.w3.org/2000/svg" '
                       'xmlns:xlink="http://www.w3.org/1999/xlink" width="9" height="9">'
                       f'<image xlink:href="{url}" width="9" height="9"/>'
                       '<image xlink:href="text:/etc/passwd" width="9" height="9"/>'
                       "</svg>").encode(),
        "label.jpg": b"label:@/etc/passwd\n",
        "page.ps": f"%!PS-Adobe-3.0\n({sentinel}) (w) file closefile\nshowpage\n".encode(),
        "photo.eps": (f"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n({sentinel}) (w) "
                      "file\n").encode(),
        "js.pdf": (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R/OpenAction 3 0 R>>endobj\n"
                   b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n3 0 obj<</S/Launch/F("
                   + sentinel.encode() + b")>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"),
        "bomb.png": png_bomb(),
        "bomb.gif": gif_bomb(),
        "bomb.tif": tiff_bomb(),
        "bomb.webp": webp_bomb(),
        "zip-bomb.png": png_decompression_bomb(),
        "\u200bzero\u200dwidth.jpg": b"\xff\xd8\xff not really a jpeg",
    }  # fmt: skip


# URLs an UploadUrlsJob must never fetch (the tests allow 127.0.0.1 itself for their servers).
def ssrf_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.2:{port}/a.jpg",
        f"http://2130706434:{port}/a.jpg",  # 127.0.0.2 as one number
        f"http://0x7f000002:{port}/a.jpg",
        f"http://0177.0.0.2:{port}/a.jpg",
        f"http://127.2:{port}/a.jpg",
        f"http://[::ffff:127.0.0.2]:{port}/a.jpg",
        f"http://[::ffff:7f00:2]:{port}/a.jpg",
        f"http://127.0.0.2.nip.io:{port}/a.jpg",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        f"file:///etc/passwd#{port}",
        f"gopher://127.0.0.2:{port}/_x",
        f"http://user:pass@127.0.0.2:{port}/a.jpg",
    ]
