"""A listing of an object store's keys as the scan's input (``plan --listing``), in
place of listing the bucket: an S3 Inventory report (its ``manifest.json``), a Parquet
or CSV file of keys, or regplan's own (``regplan list``).

``source`` reads what a listing file is (its format, time, digest, columns);
``listed`` serves it to the scan as a bucket whose listings come from the file and
whose reads go to the store; ``lister`` writes regplan's own. What a plan makes of a
listing (its age rule, its record in the plan) is ``regplan.listing``.
"""
