"""What a plan makes of a listing of an object store (``plan --listing``): the snapshot
rule (``--gc-min-age`` at least the listing's age) and the plan's record of it. The
listing itself is read by the storage (``regplan.storage.listing``)."""
