"""Dealers of the Snorky server the Django tests start (imported by that process, without Django)."""

from snorky.services.datasync.dealers import BroadcastDealer, FilterDealer


class TodosByFilter(FilterDealer):
    """Todo rows, by filter: ``["==", "list", 3]`` for one list, ``["==", "id", 7]`` for one todo."""

    name = "todos"
    model = "Todo"


class Notes(BroadcastDealer):
    """Every Note (the Memo model published under another name)."""

    name = "notes"
    model = "Note"


class Tags(BroadcastDealer):
    """Every Tag (published through a serializer)."""

    name = "tags"
    model = "Tag"
