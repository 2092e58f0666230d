"""``@subscribable``: a model's inserts, updates and deletes become DataSync deltas.

The deltas of a transaction are published after it commits, together, by a
background sender (:mod:`snorky.backend.django.sender`); a rolled-back
transaction publishes nothing, and neither does a rolled-back savepoint.

How it works
    ``pre_save`` reads the row as the database has it, so an update delta
    carries the true old row (one ``SELECT`` by primary key; none for an
    instance Django knows to be new). ``post_save`` and ``post_delete``
    serialize the row and add the delta to the transaction's batch; rows are
    serialized there and then, so later changes to the Python object do not
    leak into an earlier delta.

    The batch rides on :func:`django.db.transaction.on_commit`. Each save's
    delta is one ``on_commit`` callback, which Django drops if a savepoint it
    was made under rolls back. A last callback, outside every savepoint, hands
    what the surviving callbacks collected to the background sender, which
    publishes it in one ``publishDeltas`` call (split every
    ``SNORKY_BATCH_SIZE`` deltas, 500 by default). Django offers no "after the
    last callback" hook, so that one is appended to the connection's
    ``run_on_commit`` list directly, the list ``on_commit`` fills.

    On PostgreSQL each delta also carries its row's primary key (``key``)
    and a ``version``: the WAL insert position, read in the transaction after
    the write, while the transaction holds the row's lock. Another transaction
    can only write the row after this one commits, so it reads a higher
    position: versions grow in commit order, row by row, across threads and
    processes, and Snorky drops a delta older than one it delivered (see
    :mod:`snorky.services.datasync.ordering`). A save outside a transaction
    (autocommit) has committed when ``post_save`` runs: the row is then locked
    and read again in a short transaction of its own, and that row is
    published with the version read there.

    Outside any transaction (autocommit), Django runs ``on_commit`` callbacks at
    once, so each save is published by itself; Django's own ``save()`` of a
    multi-table model and its cascading ``delete()`` are transactions of their
    own and publish once.

Operations that skip model signals (``QuerySet.update()``, ``bulk_create()``,
``bulk_update()``, raw SQL) publish nothing by themselves: wrap them in
:func:`track_changes`, or call :func:`queue_created` or :func:`queue_deltas`.

.. versionadded:: 0.1
.. versionchanged:: 0.2
   Deltas are published after commit, batched per transaction; failures of
   Snorky never reach ``save()``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any, TypeVar, overload

from django.db import DEFAULT_DB_ALIAS, DatabaseError, models, router, transaction
from django.db.models.signals import class_prepared, post_delete, post_save, pre_delete, pre_save
from django.utils.module_loading import import_string

from snorky.backend.django import client
from snorky.backend.django import sender as background
from snorky.errors import SnorkyError

__all__ = [
    "subscribable",
    "Subscribable",
    "get_subscribable",
    "queue_deltas",
    "queue_created",
    "track_changes",
    "rest_framework_jsonify",
]

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=type[models.Model])

_OLD = "_snorky_old_row"
_GONE = "_snorky_deleted_row"


# Serialization ---------------------------------------------------------------------


def _plain_json(instance: models.Model) -> dict[str, Any]:
    """The concrete fields by name; a foreign key gives the related primary key."""
    return {field.name: field.value_from_object(instance) for field in instance._meta.concrete_fields}


def rest_framework_jsonify(self: models.Model) -> Any:
    """Serialize a model instance with a Django REST framework ``ModelSerializer`` of all fields.

    The default ``jsonify()`` when Django REST framework is installed, as in Snorky 0.1.
    """
    return get_subscribable(type(self)).default_serializer()(self).data


class Subscribable:
    """How the rows of one model become deltas.

    Args:
        model: the model class.
        name: the ``model`` of its deltas (what dealers declare).
        serializer: a Django REST framework serializer class for its rows, or
            its dotted path (imported on first use).
    """

    def __init__(self, model: type[models.Model], name: str, serializer: Any = None) -> None:
        self.model = model
        self.name = name
        """The delta ``model`` name."""
        self._serializer = serializer
        self._default_serializer: Any = None

    @property
    def serializer(self) -> Any:
        """The serializer class given to :func:`subscribable`, or ``None``."""
        if isinstance(self._serializer, str):
            self._serializer = import_string(self._serializer)
        return self._serializer

    def default_serializer(self) -> Any:
        """A ``ModelSerializer`` of every field of the model, created once.

        Raises:
            ImportError: Django REST framework is not installed.
        """
        if self._default_serializer is None:
            from rest_framework import serializers

            meta = type("Meta", (), {"model": self.model, "fields": "__all__"})
            self._default_serializer = type(
                f"{self.model.__name__}SnorkySerializer", (serializers.ModelSerializer,), {"Meta": meta}
            )
        return self._default_serializer

    def to_json(self, instance: models.Model) -> Any:
        """The row as deltas carry it.

        The ``serializer`` given to :func:`subscribable`, else the model's own
        ``jsonify()``, else a ``ModelSerializer`` of all fields (with Django
        REST framework) or the concrete fields by name.
        """
        serializer = self.serializer
        if serializer is None:
            jsonify = getattr(type(instance), "jsonify", None)
            if jsonify is not None and jsonify is not _default_jsonify:
                return instance.jsonify()
            try:
                serializer = self.default_serializer()
            except ImportError:
                return _plain_json(instance)
        data = serializer(instance).data
        # A plain dict: a serializer's ReturnDict keeps the serializer (and the instance) alive.
        return dict(data) if isinstance(data, Mapping) else data

    def insertion(self, instance: models.Model) -> dict[str, Any]:
        """The insert delta of a saved row."""
        return {"type": "insert", "model": self.name, "data": self.to_json(instance)}

    def __repr__(self) -> str:
        return f"<Subscribable {self.model._meta.label} as {self.name!r}>"


def _default_jsonify(self: models.Model) -> Any:
    """The row as Snorky publishes it (added by ``@subscribable`` when the model has no ``jsonify``)."""
    return get_subscribable(type(self)).to_json(self)


_registry: dict[type[models.Model], Subscribable] = {}


def get_subscribable(model: type[models.Model]) -> Subscribable:
    """The :class:`Subscribable` of a model decorated with :func:`subscribable` (or a proxy of one).

    Raises:
        TypeError: the model is not subscribable.
    """
    options = _registry.get(model) or _registry.get(model._meta.concrete_model)
    if options is None:
        raise TypeError(f"{model.__name__} is not @subscribable")
    return options


@overload
def subscribable(model: ModelT, /) -> ModelT: ...


@overload
def subscribable(*, name: str | None = None, serializer: Any = None) -> Callable[[ModelT], ModelT]: ...


def subscribable(
    model: ModelT | None = None, /, *, name: str | None = None, serializer: Any = None
) -> ModelT | Callable[[ModelT], ModelT]:
    """Make a model publish a DataSync delta for every row it saves or deletes.

    Use it bare or with options::

        @subscribable
        class Todo(models.Model): ...

        @subscribable(name="Task", serializer=TaskSerializer)
        class Task(models.Model): ...

    Deltas are ``{"type": "insert" | "delete", "model": name, "data": row}``
    and ``{"type": "update", "model": name, "newData": row, "oldData": row}``,
    published after the transaction commits, one call per transaction. Proxy
    models of the model publish as the model; other subclasses need their own
    decorator. Fixture loading (``raw`` saves) publishes nothing.

    Args:
        model: the model class (when used bare).
        name: the deltas' ``model`` (default: the class name, as in 0.1).
        serializer: a Django REST framework serializer class for the rows, or
            its dotted path, for serializers defined in a module that imports
            the models (default: the model's ``jsonify()`` method, else all
            fields).

    Raises:
        TypeError: not a concrete model class.
    """

    def decorate(cls: ModelT) -> ModelT:
        if not (isinstance(cls, type) and issubclass(cls, models.Model)) or cls._meta.abstract:
            raise TypeError("@subscribable decorates concrete Django model classes")
        _registry[cls] = Subscribable(cls, name or cls.__name__, serializer)
        if not hasattr(cls, "jsonify"):
            cls.jsonify = _default_jsonify
        _connect(cls)
        return cls

    return decorate if model is None else decorate(model)


def _connect(sender: type[models.Model]) -> None:
    uid = f"snorky:{sender._meta.label}"
    pre_save.connect(_pre_save, sender=sender, weak=False, dispatch_uid=uid)
    post_save.connect(_post_save, sender=sender, weak=False, dispatch_uid=uid)
    pre_delete.connect(_pre_delete, sender=sender, weak=False, dispatch_uid=uid)
    post_delete.connect(_post_delete, sender=sender, weak=False, dispatch_uid=uid)


def _on_class_prepared(sender: type[models.Model], **kwargs: Any) -> None:
    """Proxies of a subscribable model send signals as themselves: listen to them too."""
    if sender._meta.proxy and sender._meta.concrete_model in _registry:
        _connect(sender)


class_prepared.connect(_on_class_prepared, weak=False, dispatch_uid="snorky:proxies")


# Signal receivers ------------------------------------------------------------------


@contextlib.contextmanager
def _never_breaking(action: str, lost_deltas: int = 1) -> Iterator[None]:
    """Log and count a failure instead of letting it break the save.

    Database errors still propagate: the save could not go on anyway, and on
    PostgreSQL the transaction is already aborted.
    """
    try:
        yield
    except DatabaseError:
        raise
    except Exception as error:
        client.report_failure(action, error, lost_deltas=lost_deltas)


def _pre_save(sender: type[models.Model], instance: models.Model, raw: bool, using: str, **kwargs: Any) -> None:
    instance.__dict__.pop(_OLD, None)
    if raw:
        return
    state = instance._state
    if instance.pk is None or (state.adding and instance._meta.pk.has_default()):
        return  # certainly an insert: no query
    with _never_breaking(f"reading the old {sender.__name__} row", lost_deltas=0):
        old = sender._base_manager.using(using).filter(pk=instance.pk).first()
        if old is not None:
            instance.__dict__[_OLD] = get_subscribable(sender).to_json(old)


def _post_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    raw: bool,
    using: str,
    update_fields: frozenset[str] | None,
    **kwargs: Any,
) -> None:
    old = instance.__dict__.pop(_OLD, None)
    if raw:
        return
    with _never_breaking(f"serializing a saved {sender.__name__}"):
        options = get_subscribable(sender)
        connection = transaction.get_connection(using)
        version = None
        if _committed_already(connection):
            row, version = _lock_and_read(sender, instance.pk, connection)
            if row is None:
                return  # deleted since: its deletion is newer than this save
        elif update_fields is not None and not created:
            # Only some fields were written: the others may differ in memory.
            row = sender._base_manager.using(using).get(pk=instance.pk)
        else:
            row = instance
        new = options.to_json(row)
        if created or old is None:
            delta = {"type": "insert", "model": options.name, "data": new, "key": instance.pk}
        elif new == old:
            return  # nothing a subscriber could see changed
        else:
            delta = {"type": "update", "model": options.name, "newData": new, "oldData": old, "key": instance.pk}
        if version is not None:
            delta["version"] = version
        queue_deltas([delta], using)


def _pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    with _never_breaking(f"serializing a deleted {sender.__name__}"):
        instance.__dict__[_GONE] = (instance.pk, get_subscribable(sender).to_json(instance))


def _post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    if _GONE not in instance.__dict__:
        return
    key, data = instance.__dict__.pop(_GONE)
    with _never_breaking(f"publishing a deleted {sender.__name__}"):
        queue_deltas([{"type": "delete", "model": get_subscribable(sender).name, "data": data, "key": key}], using)


# Versions --------------------------------------------------------------------------


def _versioned(connection: Any) -> bool:
    """Whether deltas written through ``connection`` get versions (PostgreSQL)."""
    return bool(connection.vendor == "postgresql")


def _committed_already(connection: Any) -> bool:
    """Whether a write just made on ``connection`` committed by itself (autocommit, PostgreSQL)."""
    return _versioned(connection) and not connection.in_atomic_block and connection.get_autocommit()


def _read_version(connection: Any) -> int:
    """PostgreSQL's WAL insert position, as an integer: it only grows."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
        return int(cursor.fetchone()[0])


def _lock_and_read(model: type[models.Model], pk: Any, connection: Any) -> tuple[models.Model | None, int | None]:
    """The row as committed now and its version, read in a transaction that locks it.

    While the lock is held no other transaction is writing the row, so the
    version read is higher than that of every change committed before and
    lower than that of every change after.
    """
    try:
        with transaction.atomic(using=connection.alias):
            row = model._base_manager.using(connection.alias).select_for_update().filter(pk=pk).first()
            return row, _read_version(connection)
    except DatabaseError as error:  # the save itself committed: count, do not raise
        client.report_failure(f"reading the saved {model.__name__} again", error, lost_deltas=1)
        return None, None


def _stamp(deltas: list[dict[str, Any]], connection: Any) -> None:
    """Give the deltas that have (or can be given) a key and no version the version read now."""
    pending = []
    for delta in deltas:
        if "version" in delta:
            continue
        if "key" not in delta:
            key = _key_of(delta)
            if key is None:
                continue
            delta["key"] = key
        pending.append(delta)
    if pending:
        version = _read_version(connection)
        for delta in pending:
            delta["version"] = version


def _key_of(delta: Mapping[str, Any]) -> Any:
    """The primary key of a delta's row, if it is of a subscribable model and its row has it."""
    options = next((o for o in _registry.values() if o.name == delta.get("model")), None)
    row = delta.get("newData", delta.get("data"))
    if options is None or not isinstance(row, Mapping):
        return None
    return row.get(options.model._meta.pk.name)


# Transactions ------------------------------------------------------------------------


def _send(deltas: list[dict[str, Any]]) -> None:
    """Hand a committed batch to the background sender (which splits it every ``SNORKY_BATCH_SIZE`` deltas)."""
    background.submit(deltas)


class _TransactionBatch:
    """The deltas of one transaction on one connection.

    Each addition is one ``on_commit`` callback, registered under the current
    savepoints, that moves its deltas to :attr:`committed` at commit time; and
    one sender, appended after it outside every savepoint, that publishes them.
    Only the latest sender acts: it runs after every surviving addition.
    (Each addition has its own callbacks, rather than joining the previous
    one, so that ``TestCase.captureOnCommitCallbacks()`` sees the callbacks of
    the saves made inside it.)
    """

    def __init__(self, connection: Any) -> None:
        self.hooks: list[Any] = connection.run_on_commit
        self.committed: list[dict[str, Any]] = []
        self.generation = 0
        self.sender: Callable[[], None] | None = None
        self.done = False

    def is_current(self, connection: Any) -> bool:
        """Whether the connection is still inside this batch's transaction."""
        if self.done:
            return False
        hooks = connection.run_on_commit
        if hooks is self.hooks:
            return True
        # A savepoint rollback rebuilds the list (and its tuples); a commit or a rollback empties it.
        if any(hook[1] is self.sender for hook in hooks):
            self.hooks = hooks
            return True
        return False

    def add(self, connection: Any, deltas: list[dict[str, Any]]) -> None:
        # Dropped by Django if one of the current savepoints rolls back.
        transaction.on_commit(partial(self.committed.extend, deltas), using=connection.alias)
        self.generation += 1
        self.sender = partial(self.send, self.generation)
        connection.run_on_commit.append((set(), self.sender, False))
        self.hooks = connection.run_on_commit

    def send(self, generation: int) -> None:
        if generation != self.generation or self.done:
            return
        self.done = True
        deltas, self.committed = self.committed, []
        if deltas:
            _send(deltas)


def queue_deltas(deltas: Iterable[dict[str, Any]], using: str | None = None) -> None:
    """Publish ``deltas`` when the current transaction on ``using`` commits.

    They join the deltas of the transaction's saves, in order, in its one
    ``publishDeltas`` call; they are dropped if it (or the savepoint they were
    queued in) rolls back. Outside a transaction they are published at once.
    Under manual transaction management (autocommit off, no ``atomic``) there
    is no commit to wait for: the deltas are dropped, counted and logged.

    On PostgreSQL, a delta of a subscribable model whose row has its primary
    key gets a ``key`` and a ``version`` read now (see the module's text):
    call it inside the transaction that made the change, after the change, for
    Snorky to put the row's deltas in commit order.

    Never raises because of Snorky: a failed publication is counted in
    :data:`~snorky.backend.django.stats` and logged.

    Args:
        deltas: DataSync deltas (``{"type", "model", "data"}`` or
            ``{"type": "update", "model", "newData", "oldData"}``).
        using: the database alias (default: ``"default"``).
    """
    deltas = [dict(delta) for delta in deltas]
    if not deltas:
        return
    connection = transaction.get_connection(using or DEFAULT_DB_ALIAS)
    if not connection.in_atomic_block and not connection.get_autocommit():
        client.report_failure(
            "publishing deltas",
            SnorkyError(
                "autocommit is off and no atomic block is active: the commit cannot be awaited",
                "transaction_management",
            ),
            lost_deltas=len(deltas),
        )
        return
    if _versioned(connection):
        _stamp(deltas, connection)
    else:
        for delta in deltas:
            if "version" not in delta:
                delta.pop("key", None)
    if not connection.in_atomic_block:
        transaction.on_commit(partial(_send, deltas), using=connection.alias)  # runs now
        return
    if not isinstance(getattr(connection, "run_on_commit", None), list):  # pragma: no cover - a future Django
        transaction.on_commit(partial(_send, deltas), using=connection.alias)
        return
    batch: _TransactionBatch | None = getattr(connection, "_snorky_batch", None)
    if batch is None or not batch.is_current(connection):
        batch = _TransactionBatch(connection)
        connection._snorky_batch = batch
    batch.add(connection, deltas)


def queue_created(instances: Iterable[models.Model], using: str | None = None) -> None:
    """Publish insert deltas for rows saved without signals, such as ``bulk_create()``'s, on commit.

    ::

        with transaction.atomic():
            todos = Todo.objects.bulk_create(Todo(title=t, list=inbox) for t in titles)
            queue_created(todos)

    Args:
        instances: saved instances of subscribable models (with primary keys).
        using: the database alias (default: the instances' database).

    Raises:
        ValueError: an instance has no primary key (the database did not return it).
        TypeError: an instance's model is not subscribable.
    """
    deltas = []
    for instance in instances:
        if instance.pk is None:
            raise ValueError(f"{type(instance).__name__} has no primary key: was it saved?")
        deltas.append({**get_subscribable(type(instance)).insertion(instance), "key": instance.pk})
        using = using or instance._state.db
    queue_deltas(deltas, using)


@contextlib.contextmanager
def track_changes(queryset: models.QuerySet[Any]) -> Iterator[None]:
    """Publish what the block changed in the rows of ``queryset``, on commit.

    For operations that skip model signals::

        todos = Todo.objects.filter(list=inbox)
        with transaction.atomic(), track_changes(todos):
            todos.update(done=True)

    The rows are read before the block and again after it: a row that changed
    is an update, a row that disappeared a deletion, and a row that matches
    ``queryset`` only afterwards an insertion. If the block raises, nothing is
    published. Saves inside the block still publish by themselves, so track
    only what signals miss. The rows are held in memory: track what the block
    touches, not a whole large table. On PostgreSQL outside a transaction, the
    rows are read again locked, in a short transaction of their own, so that
    their deltas get a version that orders them.

    Args:
        queryset: the rows to watch, of a subscribable model.

    Raises:
        TypeError: the model is not subscribable.
    """
    options = get_subscribable(queryset.model)
    using = queryset._db or router.db_for_write(queryset.model)
    before = {row.pk: options.to_json(row) for row in queryset.all()}
    yield
    connection = transaction.get_connection(using)
    version = None
    if _committed_already(connection):
        # The block committed by itself: read the rows again locked, and their version with them.
        base = queryset.model._base_manager.using(using)
        with transaction.atomic(using=using):
            pks = set(before) | set(queryset.values_list("pk", flat=True))
            list(base.select_for_update().filter(pk__in=pks).values_list("pk", flat=True))
            after = _rows_after(queryset, before, base)
            version = _read_version(connection)
    else:
        after = _rows_after(queryset, before, queryset.model._base_manager.using(using))
    deltas: list[dict[str, Any]] = []
    for pk, old in before.items():
        row = after.pop(pk, None)
        if row is None:
            deltas.append({"type": "delete", "model": options.name, "data": old, "key": pk})
        else:
            new = options.to_json(row)
            if new != old:
                deltas.append({"type": "update", "model": options.name, "newData": new, "oldData": old, "key": pk})
    deltas.extend({**options.insertion(row), "key": row.pk} for row in after.values())
    if version is not None:
        for delta in deltas:
            delta["version"] = version
    queue_deltas(deltas, using)


def _rows_after(queryset: models.QuerySet[Any], before: dict[Any, Any], base: Any) -> dict[Any, Any]:
    """The rows of ``queryset`` now, and those of ``before`` that left it, by primary key."""
    after = {row.pk: row for row in queryset.all()}
    missing = [pk for pk in before if pk not in after]
    if missing:
        after.update((row.pk, row) for row in base.filter(pk__in=missing))
    return after
