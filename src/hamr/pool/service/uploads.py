"""Reading uploads: raw bodies or multipart parts, and .npy arrays (never unpickled)."""

from __future__ import annotations

import io

import numpy as np
from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

NPY_MAGIC = b"\x93NUMPY"
MAX_PARTS = 256
BINARY = {"type": "string", "format": "binary"}


def request_body(description: str, content: dict[str, dict]) -> dict:
    """`openapi_extra` for a route that reads its body itself: media type -> schema."""
    return {"requestBody": {"required": True, "description": description,
                            "content": {media: {"schema": schema} for media, schema in content.items()}}}  # fmt: skip


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_form(request: Request) -> FormData:
    if not is_multipart(request):
        raise HTTPException(400, "expected a multipart/form-data body")
    return await request.form(max_files=MAX_PARTS, max_fields=MAX_PARTS)


async def read_file_or_body(request: Request, field: str) -> bytes:
    """A multipart body's part `field`, or else the raw body."""
    if not is_multipart(request):
        return await request.body()
    form = await read_form(request)
    part = form.get(field)
    if not isinstance(part, UploadFile):
        raise HTTPException(400, f"the multipart body has no file part '{field}'")
    return await part.read()


def parse_npy(name: str, data: bytes, what: str = "input") -> np.ndarray:
    """A raw .npy file as an array: no .npz, no pickle (object arrays are refused)."""
    if not data.startswith(NPY_MAGIC):
        raise HTTPException(400, f"{what} '{name}' is not a .npy file (it does not start with \\x93NUMPY)")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, EOFError, OSError... on malformed files
        raise HTTPException(400, f"{what} '{name}' is a malformed .npy file: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise HTTPException(400, f"{what} '{name}' is not a single .npy array")
    return array


async def read_fields_and_arrays(request: Request, form: type[BaseModel] | None, what: str) -> tuple[BaseModel | None, dict]:
    """A multipart body of `form`'s fields and one .npy file part per array (`what`: input, output).

    Without `form`, every part must be a file part. Fields are validated by `form` (422 with
    the first error's line); duplicates, unknown fields and misplaced parts are 400.
    """
    names = form.model_fields if form is not None else {}
    fields, arrays = {}, {}
    for key, value in (await read_form(request)).multi_items():
        if key in fields or key in arrays:
            raise HTTPException(400, f"the multipart body has '{key}' twice")
        if isinstance(value, UploadFile):
            if key in names:
                raise HTTPException(400, f"'{key}' is a field, not a file part")
            arrays[key] = parse_npy(key, await value.read(), what=what)
        elif key in names:
            fields[key] = value
        elif names:
            raise HTTPException(400, f"unknown field '{key}' (fields: {', '.join(names)}; {what}s are file parts)")
        else:
            raise HTTPException(400, f"'{key}' is a field; every part here is a .npy file part")
    if form is None:
        return None, arrays
    try:
        return form.model_validate(fields), arrays
    except ValidationError as exc:
        first = exc.errors()[0]
        raise HTTPException(422, f"{'.'.join(map(str, first['loc']))}: {' '.join(str(first['msg']).split())}") from None


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
