"""The service's exceptions, in one place (as httpx keeps its own): what the index registry and the model uploads
raise, each a :class:`~negminer.NegminerError` naming the parameter at fault. :mod:`negminer.service.errors` maps
each to its HTTP status and problem+json ``code``; a test pins this module's ``__all__``."""

from __future__ import annotations

from negminer._errors import NegminerError
from negminer.client.schemas import OperationError

__all__ = [
    "ChecksumMismatch",
    "IndexBusy",
    "IndexDeleting",
    "IndexExists",
    "IndexNotFound",
    "IndexNotReady",
    "LeaseExpired",
    "UnsafeArchive",
    "UploadNotFound",
    "UploadTooLarge",
]


class IndexNotFound(NegminerError, KeyError):
    """No index of that name (``name``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no index named {name!r}", param="name")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


class IndexExists(NegminerError):
    """An index of that name exists already."""

    def __init__(self, name: str) -> None:
        super().__init__(f"index {name!r} already exists", param="name")
        self.name = name


class IndexBusy(NegminerError):
    """The index is building its next version; one operation at a time."""

    def __init__(self, name: str, operation: str) -> None:
        super().__init__(f"index {name!r} is busy ({operation})", param="name")
        self.name, self.operation = name, operation


class IndexDeleting(NegminerError):
    """The name belongs to an index being deleted (its tombstone); it is free again in a moment."""

    def __init__(self, name: str) -> None:
        super().__init__(f"index {name!r} is being deleted; try again in a moment", param="name")
        self.name = name


class IndexNotReady(NegminerError):
    """The index has no version to serve yet (still building) or its build failed."""

    def __init__(self, name: str, status: str, error: OperationError | None = None) -> None:
        said = f": {error.message} ({error.code})" if error else ""
        super().__init__(f"index {name!r} is {status}{said}", param="name")
        self.name, self.status = name, status


class UploadNotFound(NegminerError, KeyError):
    """No published model upload of that id."""

    def __init__(self, uid: str) -> None:
        super().__init__(f"no model upload {uid!r} (POST /v1/models/uploads publishes one)", param="model")
        self.uid = uid

    def __str__(self) -> str:
        return str(self.args[0])


class ChecksumMismatch(NegminerError):
    """The uploaded bytes do not have the sha256 the client sent (cut short or altered on the way)."""

    def __init__(self, expected: str, received: str) -> None:
        super().__init__(
            f"the bytes received have sha256 {received}, not {expected}: the upload was cut short or altered; "
            "nothing was published",
            param="sha256",
        )


class UnsafeArchive(NegminerError):
    """An upload that is not a complete tar, or with an entry that could write outside its folder."""

    def __init__(self, why: str) -> None:
        super().__init__(f"the archive is refused: {why}; nothing was published", param="file")


class UploadTooLarge(NegminerError):
    """An upload, or what it unpacks to, over the caps (``max_model_bytes``, ``max_model_files``)."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"{why} (NEGMINER_MAX_MODEL_BYTES, NEGMINER_MAX_MODEL_FILES); nothing was published", param="file"
        )


class LeaseExpired(NegminerError):
    """The index's lease ran out: it is being deleted and cannot be renewed."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the lease of index {name!r} ran out; it is deleted", param="name")
        self.name = name
