"""Downloads of stored blobs, streamed a piece at a time (a 1 GiB output costs the pool one piece of memory)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.responses import StreamingResponse


def blob_response(chunks: tuple[int, Iterator[bytes]], filename: str) -> StreamingResponse:
    """`chunks`: BlobStore.read_chunks's size and pieces. A blob found corrupt while it is sent is cut
    short, so the client sees fewer bytes than Content-Length says."""
    size, pieces = chunks
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "Content-Length": str(size)}
    return StreamingResponse(pieces, media_type="application/octet-stream", headers=headers)
