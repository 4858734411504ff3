"""PNG figures for the QC pages and reports, drawn without a display (matplotlib's Agg
backend, imported only when a figure is made) and embedded in self-contained HTML."""
import base64
import io


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def png_bytes(figure, dpi: int) -> bytes:
    """The figure as PNG; the figure is closed (long runs draw hundreds)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(figure)
    return buffer.getvalue()


def image_png_bytes(array, **imsave_options) -> bytes:
    buffer = io.BytesIO()
    pyplot().imsave(buffer, array, format="png", **imsave_options)
    return buffer.getvalue()


def base64_text(png: bytes) -> str:
    """For <img src="data:image/png;base64,...">."""
    return base64.b64encode(png).decode()
