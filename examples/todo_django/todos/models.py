from django.db import models

from snorky.backend.django import subscribable


class TodoList(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self):
        return self.name


# Deltas carry each row as the API shows it: the page treats both the same way.
@subscribable(serializer="todos.serializers.TodoSerializer")
class Todo(models.Model):
    list = models.ForeignKey(TodoList, related_name="todos", on_delete=models.CASCADE)
    title = models.CharField(max_length=200)
    completed = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]

    def __str__(self):
        return self.title
