"""Captions of a clip: `coca` (its middle frame), `vblip` (VideoBLIP on N frames), `llm` (merges the two),
`generation` (the decoding they share) and `text` (cleaning, and the caption a clip ships with).

Each captioner module is imported only by the stage that runs it: their models' libraries cost seconds to import.
"""
