"""Django REST framework views whose results a browser can keep live with DataSync.

A request carrying the header ``X-Snorky: Subscribe`` gets, besides the usual
response, a DataSync subscription token in the ``X-Subscription-Token``
response header. The subscription is authorized *before* the query runs, and
Snorky keeps the deltas that arrive before the browser acquires it, so no
change between the query and the acquisition is lost::

    class TodoList(ListSubscribeCreateAPIView):
        serializer_class = TodoSerializer
        dealer = "todos"                                  # a FilterDealer in Snorky

        def get_queryset(self):
            return Todo.objects.filter(list=self.kwargs["list_id"])

        def get_dealer_query(self):
            return ["==", "list", int(self.kwargs["list_id"])]

The mixins import without Django settings; the views (``ListSubscribeAPIView``,
``ListSubscribeCreateAPIView``, ``RetrieveSubscribeAPIView``,
``ReadOnlySubscribeModelViewSet``, ``SubscribeModelViewSet``) are created on
first access, because Django REST framework's own views read the settings when
they are imported.

.. versionadded:: 0.1
.. versionchanged:: 0.2
   Retrieve mixin, viewsets; responses vary on ``X-Snorky``; a token is never
   cached; Snorky being unreachable serves the data without a token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.http import Http404
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from rest_framework import mixins

from snorky.backend import TransportError
from snorky.backend.django import client

__all__ = [
    "SUBSCRIBE_HEADER",
    "TOKEN_HEADER",
    "SubscribeModelMixin",
    "ListSubscribeModelMixin",
    "RetrieveSubscribeModelMixin",
    "subscription_in_response",
]

_LAZY_VIEWS = (
    "ListSubscribeAPIView",
    "ListSubscribeCreateAPIView",
    "RetrieveSubscribeAPIView",
    "ReadOnlySubscribeModelViewSet",
    "SubscribeModelViewSet",
)
"""Views created on first access (Django REST framework's views need the settings)."""

__all__ += _LAZY_VIEWS

logger = logging.getLogger(__name__)

SUBSCRIBE_HEADER = "X-Snorky"
"""The request header asking for a subscription; its value is ``Subscribe`` (any case)."""

TOKEN_HEADER = "X-Subscription-Token"
"""The response header carrying the subscription token."""


class SubscribeModelMixin:
    """Authorizes a DataSync subscription when the request asks for one.

    Set :attr:`dealer` and :attr:`dealer_query`, or override
    :meth:`get_dealer_query` (the query usually depends on the URL or the
    user), or :meth:`get_subscription_items` for several items.
    """

    dealer: str | None = None
    """The dealer's name (default: the model's class name, as in 0.1)."""
    dealer_query: Any = None
    """The query given to the dealer."""

    request: Any
    kwargs: dict[str, Any]
    get_queryset: Callable[[], Any]

    def get_dealer(self) -> str:
        """The dealer of the subscription: :attr:`dealer`, else the model's class name."""
        if self.dealer:
            return self.dealer
        queryset = getattr(self, "queryset", None)
        if queryset is None:
            queryset = self.get_queryset()
        return str(queryset.model.__name__)

    def get_dealer_query(self) -> Any:
        """The query of the subscription: :attr:`dealer_query`."""
        return self.dealer_query

    def get_subscription_items(self) -> list[dict[str, Any]]:
        """The items to authorize: one, of :meth:`get_dealer` and :meth:`get_dealer_query`."""
        return [{"dealer": self.get_dealer(), "query": self.get_dealer_query()}]

    def requested_subscription(self) -> bool:
        """Whether the request carries ``X-Snorky: Subscribe``."""
        return str(self.request.headers.get(SUBSCRIBE_HEADER, "")).strip().lower() == "subscribe"

    def authorize_subscription(self, items: list[dict[str, Any]]) -> str | None:
        """Authorize ``items``; return the token, or ``None`` if Snorky cannot be reached.

        An unreachable Snorky (or no API key) is counted and logged, and the
        response goes out without a token: the page works, without live
        updates. Snorky refusing the items (an unknown dealer, a bad query) is
        a bug, and raises.

        Raises:
            snorky.errors.SnorkyError: Snorky refused the subscription.
        """
        try:
            token = client.authorize_subscription(items)
        except (TransportError, ImproperlyConfigured) as error:
            client.report_failure("authorizing a subscription", error)
            return None
        client.report_success()
        return token

    def subscribe_response(self, respond: Callable[[], Any]) -> Any:
        """Call ``respond`` (which makes the response), with a subscription if one was asked for."""
        token = None
        if self.requested_subscription():
            token = self.authorize_subscription(self.get_subscription_items())
        response = respond()
        patch_vary_headers(response, [SUBSCRIBE_HEADER])
        if token is not None and 200 <= response.status_code < 300:
            response[TOKEN_HEADER] = token
            exposed = response.get("Access-Control-Expose-Headers")
            response["Access-Control-Expose-Headers"] = f"{exposed}, {TOKEN_HEADER}" if exposed else TOKEN_HEADER
            add_never_cache_headers(response)
        return response


def subscription_in_response(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a view method of a :class:`SubscribeModelMixin` so that it honours ``X-Snorky``."""

    @wraps(method)
    def wrapper(self: SubscribeModelMixin, *args: Any, **kwargs: Any) -> Any:
        return self.subscribe_response(lambda: method(self, *args, **kwargs))

    return wrapper


class ListSubscribeModelMixin(SubscribeModelMixin, mixins.ListModelMixin):
    """``list()`` that honours ``X-Snorky: Subscribe``."""

    @subscription_in_response
    def list(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().list(request, *args, **kwargs)


class RetrieveSubscribeModelMixin(SubscribeModelMixin, mixins.RetrieveModelMixin):
    """``retrieve()`` that honours ``X-Snorky: Subscribe``.

    Without :attr:`dealer_query`, the query is :meth:`get_object_query`:
    ``["==", field, value]`` for the object's lookup field (``["==", "id", 7]``),
    for a ``FilterDealer``.

    .. versionadded:: 0.2
    """

    lookup_field: str
    lookup_url_kwarg: str | None

    def get_dealer_query(self) -> Any:
        """:attr:`dealer_query`, else :meth:`get_object_query`."""
        if self.dealer_query is not None:
            return self.dealer_query
        return self.get_object_query()

    def get_object_query(self) -> Any:
        """``["==", field, value]`` for the object the URL names, by its lookup field.

        Raises:
            Http404: the URL's value is not valid for the field.
        """
        model = self.get_queryset().model
        name = model._meta.pk.name if self.lookup_field == "pk" else self.lookup_field
        value = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        try:
            return ["==", name, model._meta.get_field(name).to_python(value)]
        except ValidationError:
            raise Http404 from None

    @subscription_in_response
    def retrieve(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().retrieve(request, *args, **kwargs)


def _define_views() -> dict[str, type]:
    from rest_framework import generics, viewsets

    class ListSubscribeAPIView(ListSubscribeModelMixin, generics.GenericAPIView):
        """``GET``: the list, with a subscription when asked for."""

        def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            return self.list(request, *args, **kwargs)

    class ListSubscribeCreateAPIView(ListSubscribeModelMixin, mixins.CreateModelMixin, generics.GenericAPIView):
        """``GET``: the list, with a subscription when asked for; ``POST``: create."""

        def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            return self.list(request, *args, **kwargs)

        def post(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            return self.create(request, *args, **kwargs)

    class RetrieveSubscribeAPIView(RetrieveSubscribeModelMixin, generics.GenericAPIView):
        """``GET``: one object, with a subscription to it when asked for."""

        def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            return self.retrieve(request, *args, **kwargs)

    class ReadOnlySubscribeModelViewSet(ListSubscribeModelMixin, RetrieveSubscribeModelMixin, viewsets.GenericViewSet):
        """A ``ReadOnlyModelViewSet`` whose ``list`` and ``retrieve`` honour ``X-Snorky``.

        ``list`` subscribes with :attr:`dealer_query`, ``retrieve`` with the
        object's query (:meth:`get_object_query`); override ``get_dealer_query``
        and look at ``self.action`` for anything else.
        """

        def get_dealer_query(self) -> Any:
            if self.action == "list":
                return self.dealer_query
            return self.get_object_query()

    class SubscribeModelViewSet(
        mixins.CreateModelMixin,
        mixins.UpdateModelMixin,
        mixins.DestroyModelMixin,
        ReadOnlySubscribeModelViewSet,
    ):
        """A ``ModelViewSet`` whose ``list`` and ``retrieve`` honour ``X-Snorky``."""

    views: dict[str, type] = {
        "ListSubscribeAPIView": ListSubscribeAPIView,
        "ListSubscribeCreateAPIView": ListSubscribeCreateAPIView,
        "RetrieveSubscribeAPIView": RetrieveSubscribeAPIView,
        "ReadOnlySubscribeModelViewSet": ReadOnlySubscribeModelViewSet,
        "SubscribeModelViewSet": SubscribeModelViewSet,
    }
    for name, view in views.items():
        view.__qualname__ = name
    return views


_views_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    if name in _LAZY_VIEWS:
        with _views_lock:
            if name not in globals():
                globals().update(_define_views())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
