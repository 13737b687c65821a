"""What any caller of the REST service needs, and nothing of the server: the wire schemas
(:mod:`negminer.client.schemas`, the same classes the routes declare) and :class:`HttpNegativeSource`, the HTTP
client the trainer uses to mine from the service (``negminer train --index-url``, index-backed jobs). Importing it
loads neither FastAPI nor SQLAlchemy."""

from negminer.client import schemas
from negminer.client._http import HttpNegativeSource, ServiceError

__all__ = ["HttpNegativeSource", "ServiceError", "schemas"]
