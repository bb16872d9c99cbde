"""The one place an image file is decoded: Pillow restricted to JPEG and PNG.

``Image.open`` with no format list tries about 40 decoders by content, and one of them (EPS)
runs Ghostscript on the file: a PostScript program named ``photo.jpg`` would run. Every image
fcn-port reads (``infer``'s photos, the official datasets' readers, Caffe's Data and ImageData
layers) comes in through :func:`open_image`, and a source scan (tests/port/test_no_code.py)
keeps every ``Image.open`` here.
"""
import io
import os

from PIL import Image

from ..errors import CaffeFormatError

FORMATS = ("JPEG", "PNG")  # the only decoders Pillow may run
HINT = "a JPEG or PNG image"


def open_image(source, expected=HINT, *, decode=True, name=None, gray_jpeg=False):
    """Open ``source`` (a path, the bytes of an encoded image, or a PIL image) as JPEG or PNG
    only and fully decode it (``decode=False``: the header only, for its size before any pixel
    is inflated); bad data raises CaffeFormatError naming ``name`` (default: the path).
    ``gray_jpeg``: a JPEG comes out as libjpeg's own grayscale (its Y plane), as OpenCV's
    ``IMREAD_GRAYSCALE`` asks libjpeg for it."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        where, stream = name or "<image bytes>", io.BytesIO(bytes(source))
    else:
        where = stream = os.fspath(source)
        where = name or where
    try:
        with Image.open(stream, formats=FORMATS) as im:
            if gray_jpeg and im.format == "JPEG":
                im.draft("L", im.size)
            if decode:
                im.load()
            return im
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise CaffeFormatError(where, "", f"cannot open ({e.strerror}); expected {expected}") \
            from None
    except Image.UnidentifiedImageError:
        raise CaffeFormatError(where, "", f"not a JPEG or PNG image (fcn-port decodes no other "
                               f"format); expected {expected}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CaffeFormatError(where, "", f"cannot decode ({e}); expected {expected}") from None
