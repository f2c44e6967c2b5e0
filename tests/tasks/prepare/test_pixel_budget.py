"""prepare's pixel budget: an image over it is refused from its header, never decoded."""

from storage.files import MAX_PIXELS
from tasks.prepare.render import RenderSettings, inspect_file, render_file
from tests.http_server import bilevel_png, picture
from tests.image_attacks import hostile_jpeg, lying_ico, lying_webp, pillow_decodes


def test_an_image_over_the_pixel_budget_is_unsupported_from_its_header(tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(bilevel_png(9400, 9400))  # 88 MP in 23 KB: under Pillow's own limit
    info = inspect_file(str(huge))
    assert MAX_PIXELS == 50_000_000 and info["status"] == "unsupported"
    assert (info["width"], info["height"]) == (9400, 9400) and "9400x9400" in info["error"]
    small = tmp_path / "small.png"
    small.write_bytes(picture(1, (100, 100), "PNG"))
    assert "status" not in inspect_file(str(small))
    assert inspect_file(str(small), max_pixels=9_999)["status"] == "unsupported"


def test_costly_images_are_unsupported_in_inspect_and_render_and_never_decoded(tmp_path):
    files = {
        "scans.jpg": (hostile_jpeg(repeats=800), "more than 100 scans"),
        "favicon.ico": (lying_ico(12000), "ICO frame 12000x12000"),
        "canvas.webp": (lying_webp((13000, 13000)), "13000x13000"),
    }
    settings = RenderSettings(image_size=32)
    for name, (data, reason) in files.items():
        (tmp_path / name).write_bytes(data)
        with pillow_decodes() as loads:
            info = inspect_file(str(tmp_path / name))
            rendered = render_file(str(tmp_path / name), str(tmp_path / "out.jpg"), settings)
        assert loads == [], name
        assert info["status"] == "unsupported" and reason in info["error"], info
        assert rendered[0] == "unsupported" and reason in rendered[1], rendered
    assert not (tmp_path / "out.jpg").exists()
