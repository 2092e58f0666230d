from django.conf import settings
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.views.generic import TemplateView
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from snorky.backend.django import track_changes
from snorky.backend.django.rest_framework import ListSubscribeCreateAPIView
from todos.models import Todo, TodoList
from todos.serializers import TodoListSerializer, TodoSerializer


def home(request):
    """The first list (created on the first visit)."""
    todo_list = TodoList.objects.order_by("id").first() or TodoList.objects.create(name="Todos")
    return redirect("list", list_id=todo_list.pk)


class TodoPage(TemplateView):
    template_name = "todos/index.html"

    def get_context_data(self, **kwargs):
        return {
            "list": get_object_or_404(TodoList, pk=self.kwargs["list_id"]),
            "lists": TodoList.objects.order_by("id"),
            "websocket_url": settings.SNORKY_WEBSOCKET_URL,
        }


class ListsAPI(generics.ListCreateAPIView):
    queryset = TodoList.objects.order_by("id")
    serializer_class = TodoListSerializer


class TodosAPI(ListSubscribeCreateAPIView):
    """GET the todos of a list (with ``X-Snorky: Subscribe``, a token to follow it); POST a new one."""

    serializer_class = TodoSerializer
    dealer = "todos"

    def get_queryset(self):
        return Todo.objects.filter(list=self.kwargs["list_id"])

    def get_dealer_query(self):
        return ["==", "list", self.kwargs["list_id"]]

    def perform_create(self, serializer):
        serializer.save(list=get_object_or_404(TodoList, pk=self.kwargs["list_id"]))


class TodoAPI(generics.RetrieveUpdateDestroyAPIView):
    queryset = Todo.objects.all()
    serializer_class = TodoSerializer


class ToggleAllAPI(APIView):
    """Mark every todo of a list completed (or not) with one UPDATE: track_changes publishes it."""

    def post(self, request, list_id):
        todos = Todo.objects.filter(list=list_id)
        with transaction.atomic(), track_changes(todos):
            count = todos.update(completed=bool(request.data.get("completed", True)))
        return Response({"updated": count})


class ClearCompletedAPI(APIView):
    """Delete the completed todos: QuerySet.delete() sends signals, published in one call."""

    def post(self, request, list_id):
        with transaction.atomic():
            count, _ = Todo.objects.filter(list=list_id, completed=True).delete()
        return Response({"deleted": count})
