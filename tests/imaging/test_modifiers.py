"""The Image Serving modifier parser, rule by rule (no ImageMagick needed)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jobengine.errors import InvalidParameter, NotSupported
from jobengine.imaging import (
    ImageRequest,
    default_presets,
    export_request,
    format_query,
    output_name,
    page_name,
    parse_modifiers,
)
from jobengine.imaging.modifiers import MAX_MACRO_DEPTH
from jobengine.imaging.request import (
    Align,
    Color,
    Crop,
    Fit,
    Icc,
    OutputFormat,
    Quality,
    Quantize,
    Rect,
    Usm,
)

PRESETS = {
    "view": "wid=300&hei=200&fmt=png",
    "Test": "fmt=tif",
    "outer": "$view$&qlt=70",
    "a": "$b$",
    "b": "$c$",
    "c": "$a$",
    "self": "wid=1&$SELF$",
    "sized": "wid=$size$",
}


def test_defaults_are_jpeg_rgb() -> None:
    req = parse_modifiers("")
    assert req == ImageRequest()
    assert req.fmt == OutputFormat("jpeg", "rgb", None)
    assert req.qlt == Quality(80, False)
    assert req.fit == Fit("fit", False)
    assert req.bgc == Color(255, 255, 255)
    assert format_query(req) == ""


def test_separators_leading_marks_and_empty_parts() -> None:
    assert parse_modifiers("?wid=10&&hei=20&") == parse_modifiers("&wid=10&hei=20")
    assert parse_modifiers("?&wid=10").wid == 10


# Adobe's saveImageFormat example, urlModifier as its XML holds it (wrapped, qlt=750).
ADOBE_URL_MODIFIER = (
    "wid=400&hei=400&fmt=jpeg&qlt=750&op_sharpen=0&\n"
    "   resMode=bicub&op_usm=0.0,0.0,0,0&iccEmbed=0\n"
    "   "
)


@pytest.mark.parametrize(
    ("query", "quality"),
    [("qlt=750", 100), ("qlt=101", 100), ("qlt=100", 100), ("qlt=1", 1), ("qlt=0", 1),
     ("qlt=-5", 1), ("qlt=+60", 60)],
)  # fmt: skip
def test_qlt_out_of_range_is_clamped_as_the_jpeg_encoder_does(query: str, quality: int) -> None:
    req = parse_modifiers(query)
    assert req.qlt.quality == quality
    assert parse_modifiers(format_query(req)) == req  # the canonical form holds the clamped value


def test_adobes_save_image_format_example_parses() -> None:
    req = parse_modifiers(ADOBE_URL_MODIFIER)
    assert (req.wid, req.hei, req.fmt, req.qlt) == (400, 400, OutputFormat("jpeg"), Quality(100))
    assert (req.op_sharpen, req.res_mode, req.icc_embed) == (False, "bicub", False)
    assert req.op_usm == Usm(0.0, 0.0, 0, False)


def test_white_space_around_modifiers_is_layout() -> None:
    assert parse_modifiers(" wid=10 &\n\thei=20\r\n& fmt=png ") == parse_modifiers(
        "wid=10&hei=20&fmt=png"
    )
    with pytest.raises(InvalidParameter, match="'1 0'"):  # inside a value it is content
        parse_modifiers("wid=1 0")


def test_preset_names_are_free_text() -> None:
    presets = {"My Image Format Name": ADOBE_URL_MODIFIER, "Web · groß": "wid=5"}
    assert parse_modifiers("$my image format NAME$", presets).wid == 400
    assert parse_modifiers("$Web · groß$&hei=3", presets).wid == 5
    assert export_request(None, "$My Image Format Name$", presets).qlt == Quality(100)
    assert export_request(None, "My Image Format Name", presets).wid == 400  # bare name too
    assert parse_modifiers("$v=x$&wid=7", presets).wid == 7  # still a variable definition
    with pytest.raises(InvalidParameter, match="unknown macro"):
        parse_modifiers("$No Such Preset$", presets)


def test_last_command_wins() -> None:
    assert parse_modifiers("wid=10&wid=20").wid == 20


def test_command_and_keyword_names_are_case_insensitive() -> None:
    req = parse_modifiers("WID=10&ResMode=BiCub&FMT=PNG-Alpha&IccEmbed=1")
    assert (req.wid, req.res_mode, req.fmt.format, req.icc_embed) == (
        10,
        "bicub",
        "png-alpha",
        True,
    )


def test_values_keep_their_case() -> None:
    assert parse_modifiers("icc=MyProfile").icc == Icc("MyProfile")


def test_comments_are_ignored() -> None:
    assert parse_modifiers("wid=10&.this is=a comment&hei=5") == parse_modifiers("wid=10&hei=5")


def test_values_are_url_decoded_exactly_once() -> None:
    assert parse_modifiers("bgc=%66f0000").bgc == Color(255, 0, 0)
    # %2566 decodes once to "%66": not a colour, and the error shows the once-decoded token
    with pytest.raises(InvalidParameter, match="'%66'"):
        parse_modifiers("bgc=%2566")
    assert parse_modifiers("icc=my%20profile").icc == Icc("my profile")


def test_encoded_ampersand_stays_inside_the_value() -> None:
    with pytest.raises(InvalidParameter, match="'a&b'"):
        parse_modifiers("icc=a%26b")


def test_macro_positional_override() -> None:
    # a command before the macro is overridden by the macro; one after it wins
    assert parse_modifiers("wid=480&$view$", PRESETS).wid == 300
    assert parse_modifiers("$view$&wid=480", PRESETS).wid == 480
    req = parse_modifiers("fmt=jpeg&$view$&hei=50", PRESETS)
    assert (req.fmt.format, req.wid, req.hei) == ("png", 300, 50)


def test_macro_names_are_case_insensitive() -> None:
    assert parse_modifiers("$VIEW$", PRESETS).wid == 300
    assert parse_modifiers("$test$", PRESETS).fmt.format == "tif"


def test_nested_macros() -> None:
    req = parse_modifiers("$outer$", PRESETS)
    assert (req.wid, req.fmt.format, req.qlt.quality) == (300, "png", 70)


def test_macro_cycle_is_refused() -> None:
    with pytest.raises(InvalidParameter, match=r"macro cycle .*\$a\$ -> \$b\$ -> \$c\$ -> \$a\$"):
        parse_modifiers("$a$", PRESETS)
    with pytest.raises(InvalidParameter, match="macro cycle"):
        parse_modifiers("$self$", PRESETS)


def test_macro_depth_limit() -> None:
    chain = {f"m{i}": f"$m{i + 1}$" for i in range(MAX_MACRO_DEPTH + 2)}
    chain[f"m{MAX_MACRO_DEPTH + 2}"] = "wid=1"
    with pytest.raises(InvalidParameter, match="nests deeper than"):
        parse_modifiers("$m0$", chain)
    shallow = {f"m{i}": f"$m{i + 1}$" for i in range(MAX_MACRO_DEPTH - 1)}
    shallow[f"m{MAX_MACRO_DEPTH - 1}"] = "wid=1"
    assert parse_modifiers("$m0$", shallow).wid == 1


def test_macro_expansion_size_is_bounded() -> None:
    presets = {f"x{i}": "&".join([f"$x{i + 1}$"] * 4) for i in range(7)} | {"x7": "wid=1"}
    with pytest.raises(InvalidParameter, match="more than"):
        parse_modifiers("$x0$", presets)


def test_unknown_macro() -> None:
    with pytest.raises(InvalidParameter, match=r"unknown macro .*'\$nope\$'"):
        parse_modifiers("$nope$", PRESETS)
    assert parse_modifiers("$nope$&wid=3", {}, allow_unresolved_macros=True).wid == 3


def test_variables() -> None:
    assert parse_modifiers("$size=120&wid=$size$").wid == 120
    assert parse_modifiers("$SIZE=120&wid=$size$").wid == 120  # names are case-insensitive
    assert parse_modifiers("$size=64&$sized$", PRESETS).wid == 64  # a macro reads a variable
    assert parse_modifiers("$w=1&$h=2&crop=0,0,1$w$,2$h$").crop == Crop(0, 0, 11, 22)


def test_variables_must_be_defined_first_and_do_not_nest() -> None:
    with pytest.raises(InvalidParameter, match=r"'\$size\$'"):
        parse_modifiers("wid=$size$&$size=5")
    with pytest.raises(InvalidParameter, match=r"'my\$a\$'"):
        parse_modifiers("$a=1&$b=my$a$&icc=$b$")


def test_variable_value_is_decoded_once() -> None:
    assert parse_modifiers("$c=%66f0000&bgc=$c$").bgc == Color(255, 0, 0)
    with pytest.raises(InvalidParameter, match="'%66f0000'"):  # not decoded a second time
        parse_modifiers("$c=%2566f0000&bgc=$c$")


@pytest.mark.parametrize(
    ("query", "token"),
    [
        ("foo=1", "'foo'"),
        ("wid=abc", "'abc'"),
        ("wid=0", "'0'"),
        ("wid=-5", "'-5'"),
        ("wid=1.5", "'1.5'"),
        ("wid=", "''"),
        ("wid", "''"),
        ("hei=99999999", "'99999999'"),
        ("scl=0", "'0'"),
        ("scl=-1", "'-1'"),
        ("scl=nan", "'nan'"),
        ("qlt=high", "'high'"),
        ("qlt=7.5", "'7.5'"),
        ("qlt=9999999999", "'9999999999'"),
        ("qlt=80,2", "'2'"),
        ("qlt=80,1,1", "'1'"),
        ("fmt=tiff", "'tiff'"),
        ("fmt=png,cmyk", "'cmyk'"),
        ("fmt=png,rgb,lzw", "'lzw'"),
        ("fmt=jpeg,rgb,none", "'none'"),
        ("fmt=tif-alpha,rgb,jpeg", "'jpeg'"),
        ("fmt=tif,rgb,lossy", "'lossy'"),
        ("fmt=webp,rgb,lzw", "'lzw'"),
        ("fmt=webp,gray", "'gray'"),
        ("fmt=tif,rgb,zip,x", "'x'"),
        ("fit=squash", "'squash'"),
        ("fit=crop,2", "'2'"),
        ("crop=0,0,10", "''"),
        ("crop=0,0,0,10", "'0'"),
        ("crop=a,0,10,10", "'a'"),
        ("cropN=0,0,1.5x,1", "'1.5x'"),
        ("cropN=0,0,0,1", "'0'"),
        ("rect=0,0,10,10,0", "'0'"),
        ("align=2,0", "'2'"),
        ("align=0", "''"),
        ("bgc=red", "'red'"),
        ("bgc=fffff", "'fffff'"),
        ("bgc=0xfffffff", "'0xfffffff'"),
        ("bgc=256,0,0", "'256'"),
        ("bgc=1,2", "'1,2'"),
        ("resMode=nearest", "'nearest'"),
        ("flip=diag", "'diag'"),
        ("rotate=400", "'400'"),
        ("op_usm=6,1,0", "'6'"),
        ("op_usm=1,300,0", "'300'"),
        ("op_usm=1,1,256", "'256'"),
        ("op_usm=1,1,0,2", "'2'"),
        ("op_usm=1,1", "''"),
        ("op_sharpen=2", "'2'"),
        ("op_blur=101", "'101'"),
        ("op_brightness=101", "'101'"),
        ("op_contrast=-101", "'-101'"),
        ("op_saturation=abc", "'abc'"),
        ("op_hue=181", "'181'"),
        ("op_invert=yes", "'yes'"),
        ("printRes=0", "'0'"),
        ("quantize=octree", "'octree'"),
        ("quantize=adaptive,maybe", "'maybe'"),
        ("quantize=adaptive,off,1", "'1'"),
        ("quantize=adaptive,off,257", "'257'"),
        ("quantize=adaptive,off,8,red", "'red'"),
        ("icc=../etc/passwd", "'../etc/passwd'"),
        ("icc=/abs/path", "'/abs/path'"),
        ("icc=sRGB,sideways", "'sideways'"),
        ("iccEmbed=true", "'true'"),
        ("pscan=6", "'6'"),
        ("jpegSize=-1", "'-1'"),
        ("$bad name=1", "'bad name'"),
    ],
)
def test_bad_values_name_the_exact_token(query: str, token: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_modifiers(query)
    assert info.value.code == 30001
    assert token in info.value.reason, info.value.reason
    assert not isinstance(info.value, NotSupported)


def test_known_but_unsupported_commands() -> None:
    with pytest.raises(NotSupported, match="'layer'"):
        parse_modifiers("layer=1")
    assert NotSupported.code == 30001


def test_query_length_is_bounded() -> None:
    with pytest.raises(InvalidParameter, match="characters"):
        parse_modifiers("wid=1&" * 5000)


def test_every_command_parses() -> None:
    query = (
        "fmt=tif,cmyk,lzw&qlt=90,1&wid=100&hei=50&fit=crop,1&crop=-5,-5,300,200&rect=1,2,30,40"
        "&align=-1,0.5&bgc=0x102030&resMode=bisharp&flip=lrud&rotate=-12.5"
        "&op_usm=1.5,2,3,1&op_sharpen=1&op_blur=0.5&op_brightness=-5&op_contrast=7"
        "&op_saturation=-100&op_hue=45&op_invert=1&printRes=300&quantize=web,off,16,ff0000,00ff00"
        "&icc=sRGB,relative,1,1&iccEmbed=1&pscan=4&jpegSize=120"
    )
    req = parse_modifiers(query)
    assert req.fmt == OutputFormat("tif", "cmyk", "lzw")
    assert req.qlt == Quality(90, True)
    assert (req.wid, req.hei, req.fit) == (100, 50, Fit("crop", True))
    assert req.crop == Crop(-5, -5, 300, 200)
    assert req.rect == Rect(1, 2, 30, 40)
    assert req.align == Align(-1.0, 0.5)
    assert req.bgc == Color(0x10, 0x20, 0x30)
    assert (req.res_mode, req.flip, req.rotate) == ("bisharp", "lrud", -12.5)
    assert req.op_usm == Usm(1.5, 2.0, 3, True)
    assert (req.op_sharpen, req.op_blur, req.op_invert) == (True, 0.5, True)
    assert (req.op_brightness, req.op_contrast, req.op_saturation, req.op_hue) == (-5, 7, -100, 45)
    assert req.print_res == 300
    assert req.quantize == Quantize("web", False, 16, (Color(255, 0, 0), Color(0, 255, 0)))
    assert req.icc == Icc("sRGB", "relative", True, True)
    assert (req.icc_embed, req.pscan, req.jpeg_size) == (True, "4", 120)
    assert parse_modifiers(format_query(req)) == req


@pytest.mark.parametrize(
    ("text", "color"),
    [
        ("ff0000", Color(255, 0, 0)),
        ("FF000080", Color(255, 0, 0, 128)),
        ("0x00b1c2", Color(0, 177, 194)),
        ("0x80", Color(128, 128, 128)),
        ("128", Color(128, 128, 128)),
        ("0,100,200", Color(0, 100, 200)),
    ],
)
def test_colors(text: str, color: Color) -> None:
    assert parse_modifiers(f"bgc={text}").bgc == color


@pytest.mark.parametrize(
    "query",
    [
        "fmt=png",
        "fmt=jpg",
        "fmt=pjpeg&qlt=85,1&wid=1200",
        "fmt=webp-alpha,rgb,lossless&scl=2.5",
        "fmt=pdf,gray,zip&printRes=150.5",
        "cropN=0.1,0.2,0.5,0.25&align=1,-1&bgc=ff000080",
        "quantize=adaptive,diffuse,64&fmt=gif-alpha",
        "icc=My Profile,perceptual&bgc=0,0,0",
        "op_usm=0.5,1,4,0&rect=0,0,100,100,1",
        "$v=7&wid=$v$",
    ],
)
def test_format_query_round_trips(query: str) -> None:
    req = parse_modifiers(query)
    text = format_query(req)
    assert parse_modifiers(text) == req
    assert format_query(parse_modifiers(text)) == text


def test_round_trip_of_a_built_request() -> None:
    req = replace(ImageRequest(), icc=Icc("My Profile+1.icc"), wid=5, scl=1 / 3, rotate=1e-3)
    assert parse_modifiers(format_query(req)) == req


def test_jpg_is_an_alias_of_jpeg() -> None:
    assert parse_modifiers("fmt=jpg").fmt == OutputFormat("jpeg")


# --- ExportJob rule ---------------------------------------------------------------------------


def test_seed_example_macro_decides_the_format() -> None:
    req = export_request("&fmt=png", "$test$", {"test": "fmt=tif"})
    assert req.fmt.format == "tif"
    assert output_name("fileToExport.jpg", req) == "fileToExport.tif"


def test_macro_format_wins_whatever_the_order() -> None:
    presets = {"Web": "wid=100&fmt=webp&qlt=50"}
    req = export_request("fmt=png&wid=300&qlt=90", "$WEB$", presets)
    assert (req.fmt.format, req.wid, req.qlt.quality) == ("webp", 300, 90)
    req = export_request("wid=300&$web$&fmt=png", "$web$", presets)
    assert (req.fmt.format, req.wid) == ("webp", 100)


def test_export_without_macro_format_keeps_is_modifier_format() -> None:
    req = export_request("fmt=png", "$sized$", {"sized": "wid=64"})
    assert (req.fmt.format, req.wid) == ("png", 64)


def test_export_with_one_of_them() -> None:
    assert export_request(None, "$test$", {"TEST": "fmt=tif"}).fmt.format == "tif"
    assert export_request("&fmt=gif", None, {}).fmt.format == "gif"
    assert export_request(None, None, {}).fmt.format == "jpeg"
    assert export_request("", "test", {"test": "fmt=png"}).fmt.format == "png"  # no dollars


def test_export_unknown_macro_and_unproducible_format() -> None:
    with pytest.raises(InvalidParameter, match="unknown macro"):
        export_request("&fmt=png", "$missing$", {})
    with pytest.raises(NotSupported, match="'eps'"):
        export_request("fmt=eps", None, {})
    assert parse_modifiers("fmt=eps").fmt.format == "eps"  # valid in a preset definition


def test_default_presets_parse() -> None:
    presets = default_presets()
    assert {"thumbnail", "web", "print", "png-alpha", "test"} <= set(presets)
    for definition in presets.values():
        parse_modifiers(definition, presets)
    assert export_request("&fmt=png", "$test$", presets).fmt.format == "tif"


# --- output names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "query", "name"),
    [
        ("fileToExport.jpg", "fmt=tif", "fileToExport.tif"),
        ("photo.JPEG", "fmt=png-alpha", "photo.png"),
        ("photo", "fmt=webp", "photo.webp"),
        ("report.v2", "fmt=pjpeg", "report.v2.jpg"),
        ("doc.pdf", "fmt=gif", "doc.gif"),
        ("a/b/c.tif", "fmt=jpeg", "c.jpg"),
        ("..\\evil.png", "fmt=pdf", "evil.pdf"),
        ("..", "fmt=jpeg", "image.jpg"),
        ("tab\there.png", "fmt=heic", "tab_here.heic"),
        ("pic.avif", "fmt=jpeg2000", "pic.jp2"),
    ],
)
def test_output_name(source: str, query: str, name: str) -> None:
    assert output_name(source, parse_modifiers(query)) == name


def test_page_name() -> None:
    assert page_name("brochure.png", 3) == "brochure-3.png"
    assert page_name("noext", 1) == "noext-1"
