"""Single-machine building blocks of video curation: I/O, splitting, scores, captions, shards. No Ray here."""
