"""prepare's pixel budget: an image over it is refused from its header, never decoded."""

from storage.files import MAX_PIXELS
from tasks.prepare.render import inspect_file
from tests.http_server import bilevel_png, picture


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
