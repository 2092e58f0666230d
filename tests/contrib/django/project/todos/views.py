from rest_framework import generics

from snorky.backend.django.rest_framework import (
    ListSubscribeAPIView,
    ListSubscribeCreateAPIView,
    RetrieveSubscribeAPIView,
    SubscribeModelViewSet,
)
from tests.contrib.django.project.todos.models import Memo, Todo
from tests.contrib.django.project.todos.serializers import MemoSerializer, TodoInListSerializer, TodoSerializer


class TodoListView(ListSubscribeCreateAPIView):
    """The todos of one list; subscribers get that list's changes."""

    serializer_class = TodoInListSerializer
    dealer = "todos"

    def get_queryset(self):
        return Todo.objects.filter(list=self.kwargs["list_id"]).order_by("id")

    def get_dealer_query(self):
        return ["==", "list", self.kwargs["list_id"]]

    def perform_create(self, serializer):
        serializer.save(list_id=self.kwargs["list_id"])


class TodoDetailView(generics.RetrieveUpdateDestroyAPIView):
    queryset = Todo.objects.all()
    serializer_class = TodoSerializer


class TodoLiveView(RetrieveSubscribeAPIView):
    """One todo; the default query is ["==", "id", pk]."""

    queryset = Todo.objects.all()
    serializer_class = TodoSerializer
    dealer = "todos"


events = []
"""What OrderedTodoListView did, in order (read by a test)."""


class OrderedTodoListView(TodoListView):
    """Records whether the subscription is authorized before the query runs."""

    def authorize_subscription(self, items):
        events.append("authorize")
        return super().authorize_subscription(items)

    def filter_queryset(self, queryset):
        events.append("query")
        return super().filter_queryset(queryset)


class MemoListView(ListSubscribeAPIView):
    """No dealer given: the model's class name, as in 0.1 (a dealer Snorky lacks)."""

    queryset = Memo.objects.all()
    serializer_class = MemoSerializer


class TodoViewSet(SubscribeModelViewSet):
    queryset = Todo.objects.order_by("id")
    serializer_class = TodoSerializer
    dealer = "todos"
    dealer_query = ["==", "done", False]
