"""Scores of a clip, each from frames the job decodes once: `motion` (Farneback flow), `ocr` (CRAFT text
area), `openclip` (the CLIP model: aesthetic score, frame embeddings, caption match).

Each module is imported only by the stage that runs it: their models' libraries cost seconds to import.
"""
