"""Splitting: one source video in, single-shot clip files out.

`detection` decodes once and runs the cut-detector cascade, `transitions` turns detected cuts into exact
boundaries (dissolves, fades and wipes trimmed), `plan` applies the clip length policy and the keys,
`writer` writes the clip files (stream copy or frame-exact re-encode), `runner.split_video` runs them in turn.
"""
