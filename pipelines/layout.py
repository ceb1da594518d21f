"""The names of what `svd curate` writes in OUT (the README's output contract), declared once."""

SHARDS_FOLDER = "shards"  # shard-NNNNNN.tar: the kept clips
CLIPS_FOLDER = "clips"  # KEY.mp4: every clip file
WORK_FOLDER = ".work"  # the run's progress, for resuming
CLIPS_TABLE = "clips.parquet"  # one row per clip, kept or rejected (a folder of parts)
THUMBNAILS_TABLE = "thumbnails.parquet"  # key and JPEG of every clip's middle frame, for the report (parts too)
ERRORS_FILE = "errors.jsonl"  # one line per input that failed
SUMMARY_FILE = "summary.json"  # counts per stage, every frame by fate, thresholds used
SOURCES_FILE = "sources.jsonl"  # one line per input split: its frames and where each went
REPORT_FILE = "report.html"
CONFIG_FILE = "config.yaml"  # the run's resolved config
OUTPUT_FILES = (CLIPS_TABLE, THUMBNAILS_TABLE, ERRORS_FILE, SOURCES_FILE, SUMMARY_FILE, REPORT_FILE, CONFIG_FILE)
