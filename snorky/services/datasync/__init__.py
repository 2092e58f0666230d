"""DataSync: live query results, kept up to date with deltas (a package, as in 0.1).

The application server authorizes a subscription
(:class:`DataSyncBackend`, ``authorizeSubscription``) and hands its token to the
browser, which acquires it (:class:`DataSyncService`, ``acquireSubscription``).
Row changes published with ``publishDeltas`` then reach every subscription whose
dealer selects them. See ``docs/services/datasync.rst``.

.. versionadded:: 0.1
"""

from __future__ import annotations

from snorky.services.datasync.backend import DataSyncBackend
from snorky.services.datasync.frontend import DataSyncService

__all__ = ["DataSyncService", "DataSyncBackend"]
