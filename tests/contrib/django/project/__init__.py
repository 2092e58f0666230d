"""A minimal Django project for the tests: one app, DRF views, no templates."""
