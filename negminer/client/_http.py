"""The service's own HTTP client: the index service as a trainer's negative source (``negminer train --index-url``,
fine-tuning jobs with an ``index``). It sends and parses the models of :mod:`negminer.service.schemas`, the same
ones the routes declare, so the two cannot drift apart."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from negminer import RetrievalData
from negminer._retry import retrying
from negminer._vocab import IndexStatus, OperationStatus
from negminer.client._errors import RETRY_STATUSES, ServiceError
from negminer.client.schemas import (
    CreateIndex,
    Document,
    IndexInfo,
    MineQuery,
    MineRequest,
    MineResponse,
    RefreshRequest,
)
from negminer.client.uploads import Transfer, adapter_base, upload_model
from negminer.mining import MiningConfig
from negminer.trainer import NegativesUpdate

__all__ = ["HttpNegativeSource", "ServiceError"]

M = TypeVar("M", bound=BaseModel)

logger = logging.getLogger("negminer")


class HttpNegativeSource:
    """Negatives from the index service, implementing :class:`negminer.trainer.NegativeSource`.

    The first ``refresh`` creates index ``index`` from the training corpus (document ids are row numbers of the
    corpus de-duplicated by text), or, with ``from_index``, as a copy of that index's documents (so negatives
    come from its whole corpus and the original is never served by a half-trained checkpoint). Later ones ask the
    service to re-encode ``index`` with the new checkpoint. ``poll`` returns None while the service works, then
    mines the training queries against the new version. Nothing here blocks on the service's encoding.

    The checkpoint travels over HTTP: it is uploaded (content-addressed; a LoRA checkpoint sends only its adapter,
    its base once) and named by the upload id, so trainer and service share no disk. With ``shared_dir`` (the
    service's data dir as mounted here) a checkpoint inside it is named by its path relative to it instead.
    ``transfers`` lists what each upload cost.

    ``labels`` and ``expires_after`` (a lease in seconds) go with the index it creates; while a lease is set, a
    thread renews it (every third of it) until ``close()``, so an index whose trainer died is reclaimed by the
    service. ``close()`` deletes the index when ``delete_on_close``. ``known_models`` maps model folders here to
    names the service knows them by (a job's base model): those are named, never uploaded.
    """

    def __init__(
        self,
        url: str,
        index: str,
        data: RetrievalData,
        config: MiningConfig,
        *,
        api_key: SecretStr | str | None = None,
        timeout: float = 600.0,
        batch: int = 256,
        from_index: str | None = None,
        delete_on_close: bool = False,
        labels: dict[str, str] | None = None,
        expires_after: int | None = None,
        shared_dir: str | os.PathLike[str] | None = None,
        known_models: dict[str, str] | None = None,
        retry_seconds: float = 0.0,
    ) -> None:
        _, self.texts, doc_of = data.dedup_corpus()
        self.queries = list(data.queries)
        self.positive_ids = [[str(r) for r in sorted({doc_of[d] for d in pos})] for pos in data.positives]
        self.index = index
        self.from_index = from_index
        self.delete_on_close = delete_on_close
        self.labels, self.expires_after = dict(labels or {}), expires_after
        self.shared_dir = Path(shared_dir).resolve() if shared_dir is not None else None
        self.transfers: list[Transfer] = []
        # model folders here -> the names the service knows them by (a job's base model): named, never uploaded
        self._known = {str(Path(k).resolve()): v for k, v in (known_models or {}).items()}
        self.retry_seconds = retry_seconds
        self.positive_texts = [[self.texts[int(r)] for r in p] for p in self.positive_ids]
        self.options = config
        self.batch = batch
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self._pending = False
        self._checkpoint = ""
        self._reissued = 0
        self._closed = threading.Event()
        self._keepalive: threading.Thread | None = None

    @classmethod
    def factory(cls, url: str, index: str, **kw: Any) -> Callable[[RetrievalData, MiningConfig], HttpNegativeSource]:
        """A :data:`negminer.trainer.NegativeSourceFactory`: ``train(data, cfg, source=HttpNegativeSource.factory(
        url, name))`` builds the source for the training split the run settles on."""
        return lambda data, config: cls(url, index, data, config, **kw)

    # -- HTTP ------------------------------------------------------------------------------------------------------
    def _send(
        self, method: str, path: str, model: type[M] | None, body: BaseModel | None = None, ok_missing: bool = False
    ) -> M | None:
        """Send ``body``; parse the answer as ``model``. A 404 (or 410: a lease ran out) is None when
        ``ok_missing``; other errors raise."""
        content = body.model_dump(mode="json", exclude_unset=True) if body is not None else None
        r = self._request(method, path, content)
        if r.status_code in (404, 410) and ok_missing:
            return None
        if r.status_code >= 400:
            raise ServiceError.from_answer(r, f"index service: {method} {path}")
        if model is None:
            return None
        try:
            return model.model_validate(r.json())
        except (ValueError, ValidationError) as exc:
            raise ServiceError(
                f"index service: {method} {path}: unexpected answer ({exc})", status=r.status_code
            ) from None

    def _request(self, method: str, path: str, content: Any) -> httpx.Response:
        """One call, retried with backoff (negminer's retry policy) for up to ``retry_seconds`` while the service
        cannot be reached or answers 502 / 503 / 504 (restarting, its database down); then the last answer, or
        :class:`ServiceError` when there was none."""
        policy = retrying(
            self.retry_seconds,
            retry_on=lambda exc: isinstance(exc, httpx.TransportError),
            retry_result=lambda r: r.status_code in RETRY_STATUSES,
            initial=0.5,
            maximum=10.0,
            logger=logger,
            what=f"index service: {method} {path} failed",
        )
        try:
            return policy(self.client.request, method, path, json=content)
        except httpx.TransportError as exc:
            raise ServiceError(
                f"index service unreachable at {self.client.base_url} ({type(exc).__name__}: {exc})"
            ) from None

    def _delete_index(self) -> None:
        """Delete the index; gone already is fine."""
        self._send("DELETE", f"/v1/indexes/{self.index}", None, ok_missing=True)

    def info(self) -> IndexInfo | None:
        """The index's status (the call renews its lease), or None when it does not exist or its lease ran out."""
        return self._send("GET", f"/v1/indexes/{self.index}", IndexInfo, ok_missing=True)

    # -- models over HTTP ----------------------------------------------------------------------------------------
    def model_ref(self, checkpoint: str) -> str:
        """The name the service will know ``checkpoint`` by: its name in ``known_models``, its path in ``shared_dir``,
        or its upload id (an adapter's base is named the same way, and uploaded once when it must be)."""
        path = Path(checkpoint).resolve()
        if str(path) in self._known:
            return self._known[str(path)]
        if self.shared_dir is not None and path.is_relative_to(self.shared_dir):
            return path.relative_to(self.shared_dir).as_posix()
        base = adapter_base(path)
        base_name = None
        if base is not None:
            key = str(Path(base).resolve())
            base_name = self._known.get(key)
            if base_name is None:
                base_name = self._known[key] = self._upload(base, None, "the adapter's base model")
        return self._upload(str(path), base_name, "checkpoint")

    def _upload(self, folder: str, base: str | None, what: str) -> str:
        policy = retrying(
            self.retry_seconds,
            retry_on=lambda exc: isinstance(exc, ServiceError) and exc.retryable,
            initial=0.5,
            maximum=10.0,
            logger=logger,
            what=f"index service: uploading {what} failed",
        )
        transfer: Transfer = policy(upload_model, self.client, folder, base=base, what=what)
        self.transfers.append(transfer)
        logger.info(
            "%s %s: %s (%d bytes sent in %.2f s)",
            what,
            "known to the service" if transfer.reused else "uploaded",
            transfer.id,
            transfer.bytes_sent,
            transfer.seconds,
        )
        return transfer.id

    def _renew_lease(self) -> None:
        """Name the index every third of its lease until ``close()`` (the trainer may train for long between
        refreshes); a missed renewal is logged, and the next one tries again."""
        assert self.expires_after is not None
        while not self._closed.wait(self.expires_after / 3):
            try:
                self.info()
            except (ServiceError, httpx.HTTPError) as exc:
                logger.warning("index service: renewing the lease of %r failed: %s", self.index, exc)

    # -- NegativeSource ------------------------------------------------------------------------------------------
    def refresh(self, checkpoint: str) -> None:
        self._checkpoint = checkpoint
        model = self.model_ref(checkpoint)
        try:
            info = self.info()
            if info is not None and info.labels != self.labels:
                raise ServiceError(
                    f"index service: an index {self.index!r} exists that this run did not create (its labels are "
                    f"{info.labels}, this run's {self.labels}); choose another name",
                    status=409,
                    param="index",
                )
            if info is not None and info.version is None and info.status == IndexStatus.failed:
                self._delete_index()  # a build that never published: build again
                info = None
            if info is None:
                body = CreateIndex(name=self.index, model=model)
                if self.labels:
                    body.labels = self.labels
                if self.expires_after is not None:
                    body.expires_after = self.expires_after
                if self.from_index:
                    body.from_index = self.from_index
                else:
                    body.documents = [Document(id=str(i), text=t) for i, t in enumerate(self.texts)]
                self._send("POST", "/v1/indexes", IndexInfo, body)
            else:
                self._send("POST", f"/v1/indexes/{self.index}/refresh", IndexInfo, RefreshRequest(model=model))
        except ServiceError as exc:
            # a call retried after the service took it (its answer lost): the operation is already running
            if exc.problem is None or exc.problem.code not in ("index_exists", "index_busy"):
                raise
        self._pending = True
        if self.expires_after is not None and self._keepalive is None:
            self._keepalive = threading.Thread(target=self._renew_lease, name="negminer-lease", daemon=True)
            self._keepalive.start()

    def poll(self) -> NegativesUpdate | None:
        if not self._pending:
            return None
        info = self.info()
        if info is None:
            raise ServiceError(f"index service: index {self.index!r} is gone", status=404)
        op = info.operation
        if op is not None and op.status == OperationStatus.running:
            return None
        interrupted = op is not None and op.status == OperationStatus.failed and op.error is not None
        if interrupted and op and op.error and op.error.code == "interrupted" and self._reissued < 3:
            # the service restarted during it: nothing was published, ask again
            self._reissued += 1
            logger.warning("index service: the %s of %r was interrupted; asking again", op.type, self.index)
            self.refresh(self._checkpoint)
            return None
        self._pending = False
        self._reissued = 0
        if op is not None and op.status == OperationStatus.failed:
            why = f"{op.error.message} ({op.error.code})" if op.error else "no reason given"
            raise ServiceError(f"index service: {op.type} of {self.index!r} failed: {why}")
        negatives: list[list[int]] = []
        queries_short = 0
        version = info.version or 0
        row_of: dict[str, int] = {}  # with from_index: negative text -> its row in the update's texts
        for start in range(0, len(self.queries), self.batch):
            chunk = slice(start, start + self.batch)
            if self.from_index:  # positives by text: the copied corpus has its own ids
                qs = [MineQuery(query=q, positives=p) for q, p in zip(self.queries[chunk], self.positive_texts[chunk])]
            else:
                qs = [MineQuery(query=q, positive_ids=p) for q, p in zip(self.queries[chunk], self.positive_ids[chunk])]
            request = MineRequest(queries=qs, options=self.options, return_text=bool(self.from_index))
            answer = self._send("POST", f"/v1/indexes/{self.index}/mine", MineResponse, request)
            assert answer is not None
            version = answer.version or version
            for res in answer.results:
                if self.from_index:
                    negatives.append([row_of.setdefault(n.text or "", len(row_of)) for n in res.negatives])
                else:
                    negatives.append([int(n.id) for n in res.negatives])
            queries_short += int(answer.report.get("queries_short", 0))
        return NegativesUpdate(
            version, negatives, {"queries_short": queries_short}, texts=list(row_of) if self.from_index else None
        )

    def close(self) -> None:
        """Delete the index if this source owns it; close the HTTP client. Never raises (it runs while another
        error may be on its way out, which must not be masked); an index left behind with a lease is removed by the
        service when the lease runs out."""
        self._closed.set()
        try:
            if self.delete_on_close:
                self._delete_index()
        except (ServiceError, httpx.HTTPError) as exc:
            logger.warning("could not delete index %s: %s", self.index, exc)
        finally:
            self.client.close()
