from django.db import models

from snorky.backend.django import subscribable


class TodoList(models.Model):
    """Not subscribable: its saves publish nothing."""

    name = models.CharField(max_length=100)


@subscribable
class Todo(models.Model):
    """Published by the default serializer (DRF, all fields) as model "Todo"."""

    list = models.ForeignKey(TodoList, related_name="todos", on_delete=models.CASCADE)
    title = models.CharField(max_length=200)
    done = models.BooleanField(default=False)


class UrgentTodo(Todo):
    """A proxy: publishes as "Todo"."""

    class Meta:
        proxy = True


@subscribable(name="Note")
class Memo(models.Model):
    """Published through its own jsonify(), as model "Note"."""

    text = models.CharField(max_length=200)

    def jsonify(self):
        if self.text == "boom":
            raise ValueError("a bug in jsonify()")
        return {"id": self.pk, "text": self.text.upper()}


@subscribable(serializer="tests.contrib.django.project.todos.serializers.TagSerializer")
class Tag(models.Model):
    """Published through a serializer named to @subscribable (serializers.py imports this module)."""

    label = models.CharField(max_length=50)
    todo = models.ForeignKey(Todo, related_name="tags", on_delete=models.CASCADE, null=True)
