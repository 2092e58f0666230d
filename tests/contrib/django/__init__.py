"""snorky.backend.django against a real project: SQLite, Django REST framework, live Snorky.

Importing this package configures nothing; :mod:`tests.contrib.django.harness` does,
when a test module of this folder asks for it.
"""
