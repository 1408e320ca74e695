"""QR codes as PNG images, to print or forward (segno does the encoding)."""

from __future__ import annotations

import io

import segno


def qr_png(content: str, *, scale: int = 8) -> bytes:
    """A PNG of a QR code for ``content`` with a quiet border, readable from a phone screen."""
    buffer = io.BytesIO()
    segno.make(content, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()
