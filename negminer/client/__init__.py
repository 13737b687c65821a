"""What any caller of the REST service needs, and nothing of the server: the wire schemas
(:mod:`negminer.client.schemas`, the same classes the routes declare), :class:`HttpNegativeSource`, the HTTP
client the trainer uses to mine from the service (``negminer train --index-url``, index-backed jobs), and
:mod:`negminer.client.uploads`, how model folders travel to the service. Importing it
loads neither FastAPI nor SQLAlchemy."""

from negminer.client import schemas, uploads
from negminer.client._errors import ArchiveError, ServiceError
from negminer.client._http import HttpNegativeSource

__all__ = ["ArchiveError", "HttpNegativeSource", "ServiceError", "schemas", "uploads"]
