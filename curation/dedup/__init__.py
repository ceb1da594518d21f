"""Copies among a run's clips: `perceptual` (hashes of a clip's frames that survive re-encoding, rescaling, small
crops, letterboxing and colour changes), `near` (pairs of near-identical vectors without comparing all pairs) and
`groups` (copies as groups, and which copy of each stays).
"""
