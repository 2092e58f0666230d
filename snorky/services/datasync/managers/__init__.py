"""The two registries behind DataSync: dealers by name and model, subscriptions by token."""
