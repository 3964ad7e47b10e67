"""Pull records: when each image was last pulled, from the registry's own notifications
(``serve``) and access logs (``importing``), kept in one SQLite file (``store``) and
read by retention (``facts``: ``keep.pulled_within``, ``keep.most_recently_pulled``,
``plan --pulled-within``). docs/pulls.md says how to run it.

``pull`` is one pull as the sources give it (pure); ``events`` reads a notification
envelope, ``accesslog`` a log line (both pure); ``store`` is the only module that
touches the file; ``facts`` is what a plan reads of it.
"""
