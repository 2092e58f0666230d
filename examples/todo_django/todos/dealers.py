"""The dealer Snorky routes Todo deltas with: a subscription's query is a filter, here one list."""

from snorky.services.datasync.dealers import FilterDealer


class TodosByList(FilterDealer):
    """Queries such as ``["==", "list", 3]``: the todos of list 3."""

    name = "todos"
    model = "Todo"
