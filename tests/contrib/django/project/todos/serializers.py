from rest_framework import serializers

from tests.contrib.django.project.todos.models import Memo, Tag, Todo


class TodoSerializer(serializers.ModelSerializer):
    class Meta:
        model = Todo
        fields = ["id", "list", "title", "done"]


class MemoSerializer(serializers.ModelSerializer):
    class Meta:
        model = Memo
        fields = ["id", "text"]


class TagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "label"]


class TodoInListSerializer(TodoSerializer):
    """The list comes from the URL."""

    class Meta(TodoSerializer.Meta):
        read_only_fields = ["list"]
