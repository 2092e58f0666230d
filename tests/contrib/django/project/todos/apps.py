from django.apps import AppConfig


class TodosConfig(AppConfig):
    name = "tests.contrib.django.project.todos"
    label = "todos"
