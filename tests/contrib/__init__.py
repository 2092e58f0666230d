"""Tests of the integrations with other frameworks (snorky.backend.django)."""
