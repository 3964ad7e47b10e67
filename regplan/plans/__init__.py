"""The plan: its model, its file, its signatures and approvals, and how one is made."""
