"""Writing all clips of one source in one pass over it: by stream copy (default) or frame-exact re-encode.

Stream copy starts each clip on a keyframe (the planner snapped it there) and copies packets in decode
order until the first packet at or past the clip's end. With B-frames, frames just before the end may
come after that packet in decode order; they are left out rather than left undecodable, and the record
states the range actually written. Files appear under their final name only once complete.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from curation.split.detection import SceneScan
from curation.split.plan import PlannedClip
from curation.video_io import open_video

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WrittenClip:
    planned: PlannedClip
    path: Path
    start: int  # frames actually written, [start, end)
    end: int
    codec: str
    width: int  # coded size of the written stream
    height: int


def write_stream_copy(scan: SceneScan, clips: list[PlannedClip], paths: list[Path]) -> list[WrittenClip]:
    """Copy the packets of every clip out of the source in one demux pass (no decoding)."""
    pts = scan.pts
    written: list[WrittenClip] = []
    with open_video(scan.info.path) as source:
        stream = source.streams.video[0]
        pending = sorted(zip(clips, paths, strict=True), key=lambda item: item[0].start)
        collecting: list[av.Packet] = []
        current = 0
        active = False
        try:
            for packet in source.demux(stream):
                if packet.pts is None or current >= len(pending):
                    continue
                clip, _ = pending[current]
                if active and (clip.end < len(pts) and packet.pts >= pts[clip.end]):
                    written += _finish_copy(scan, stream, pending[current], collecting)
                    collecting, active, current = [], False, current + 1
                    if current >= len(pending):
                        break
                    clip, _ = pending[current]
                if not active and packet.is_keyframe and packet.pts == pts[clip.start]:
                    active = True
                if active and packet.pts >= pts[clip.start]:
                    collecting.append(packet)
        except av.error.FFmpegError as error:  # a truncated source: keep what was read
            log.warning("%s: reading stopped early (%s)", scan.info.path, error.strerror or error)
        if active and current < len(pending):
            written += _finish_copy(scan, stream, pending[current], collecting)
    return written


def _finish_copy(scan: SceneScan, stream, item: tuple[PlannedClip, Path], packets: list[av.Packet]):
    clip, path = item
    have = {packet.pts for packet in packets}
    end = clip.start
    while end < clip.end and scan.pts[end] in have:  # the contiguous run of frames from the keyframe
        end += 1
    if end == clip.start:
        return []
    limit = scan.pts[end] if end < len(scan.pts) else None
    base = scan.pts[clip.start]
    temporary = path.with_name(path.name + ".part")
    with av.open(str(temporary), "w", format="mp4") as output:
        out_stream = output.add_stream_from_template(stream)
        for packet in packets:
            if limit is not None and packet.pts >= limit:
                continue
            packet.pts -= base
            if packet.dts is not None:
                packet.dts -= base
            packet.stream = out_stream
            output.mux(packet)
    os.replace(temporary, path)
    context = stream.codec_context
    return [WrittenClip(clip, path, clip.start, end, context.name, context.width, context.height)]


def write_reencoded(
    scan: SceneScan, clips: list[PlannedClip], paths: list[Path], crf: int, preset: str
) -> list[WrittenClip]:
    """Decode the source once and encode each clip's exact frames with libx264."""
    rate = Fraction(scan.info.fps).limit_denominator(1001)
    pending = sorted(zip(clips, paths, strict=True), key=lambda item: item[0].start)
    written: list[WrittenClip] = []
    output = out_stream = None
    current, index = 0, 0
    with open_video(scan.info.path) as source:
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width // 2 * 2, stream.codec_context.height // 2 * 2
        try:
            for frame in source.decode(stream):
                if current >= len(pending):
                    break
                clip, path = pending[current]
                if index == clip.start:
                    output = av.open(str(path.with_name(path.name + ".part")), "w", format="mp4")
                    out_stream = output.add_stream("libx264", rate=rate)
                    out_stream.width, out_stream.height, out_stream.pix_fmt = width, height, "yuv420p"
                    out_stream.options = {"crf": str(crf), "preset": preset}
                    if scan.info.rotation:
                        out_stream.set_display_rotation(scan.info.rotation)
                if output is not None and clip.start <= index < clip.end:
                    picture = frame.reformat(width=width, height=height, format="yuv420p")
                    picture.pts, picture.time_base = index - clip.start, Fraction(1) / rate
                    output.mux(out_stream.encode(picture))
                index += 1
                if output is not None and index == clip.end:
                    written.append(_close_encoded(output, out_stream, clip, path, clip.end, width, height))
                    output, current = None, current + 1
        except av.error.FFmpegError as error:
            log.warning("%s: decoding stopped early (%s)", scan.info.path, error.strerror or error)
        if output is not None:  # the source ended (truncated) inside this clip: keep the frames we have
            written.append(
                _close_encoded(output, out_stream, pending[current][0], pending[current][1], index, width, height)
            )
    return written


def _close_encoded(output, out_stream, clip: PlannedClip, path: Path, end: int, width: int, height: int):
    output.mux(out_stream.encode())
    output.close()
    os.replace(path.with_name(path.name + ".part"), path)
    return WrittenClip(clip, path, clip.start, end, "h264", width, height)
