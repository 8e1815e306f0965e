"""webug: the web debug interface for the BMDB (Bare Metal Database)."""
