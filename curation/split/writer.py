"""Writing all clips of one source in one pass over it: smart cut (default), stream copy or re-encode.

Smart cut (`write_smart_cut`) is frame-exact at close to stream-copy cost: a clip's frames before its first
keyframe are decoded (that group of pictures only) and re-encoded, and every packet from that keyframe on is
copied, into one H.264 stream. Encoders put keyframes at hard cuts but not after a dissolve or a fade (x264's
default GOP is 250 frames), so stream copy alone loses up to a GOP at the head of most clips.

Stream copy (`write_stream_copy`) starts each clip on a keyframe (the planner snapped it there). Both copy
packets in decode order until the first packet at or past the clip's end. With B-frames, frames just before
the end may come after that packet in decode order; they are left out rather than left undecodable, and the
record states the range actually written. Files appear under their final name only once complete.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from curation.split.detection import SceneScan
from curation.split.plan import PlannedClip
from curation.video_io import open_video, scaled_size

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
    written_by: str  # "copy", "smart" (re-encoded up to the first keyframe, then copied) or "reencode"


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
    return [WrittenClip(clip, path, clip.start, end, context.name, context.width, context.height, "copy")]


def write_reencoded(
    scan: SceneScan, clips: list[PlannedClip], paths: list[Path], crf: int, preset: str, max_side: int | None = None
) -> list[WrittenClip]:
    """Decode the source once and encode each clip's exact frames with libx264, scaled down to `max_side`."""
    rate = Fraction(scan.info.fps).limit_denominator(1001)
    pending = sorted(zip(clips, paths, strict=True), key=lambda item: item[0].start)
    written: list[WrittenClip] = []
    output = out_stream = None
    current, index = 0, 0
    with open_video(scan.info.path) as source:
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = scaled_size(stream.codec_context.width, stream.codec_context.height, max_side)
        width, height = width // 2 * 2, height // 2 * 2
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
    return WrittenClip(clip, path, clip.start, end, "h264", width, height, "reencode")


def write_smart_cut(
    scan: SceneScan, clips: list[PlannedClip], paths: list[Path], crf: int, preset: str
) -> list[WrittenClip]:
    """Frame-exact clips from one demux pass: each group of pictures (GOP) that holds a clip's start is decoded
    and its frames from the start re-encoded (libx264 without B-frames, parameter sets in the stream); the
    clip's packets from its first keyframe on are copied, the source's parameter sets put in front of that
    keyframe. A source the smart cut cannot splice (not 8-bit 4:2:0 H.264 in MP4/MOV form) is re-encoded.

    The demux pass only gathers packets; each clip's head is encoded and its file muxed by one of
    `writer_threads()` threads (FFmpeg's decoders and encoders run without Python's lock), a few clips ahead
    of the demux at most, so the packets held stay a few GOPs' worth.
    """
    with open_video(scan.info.path) as probe:
        stream = probe.streams.video[0]
        extradata = stream.codec_context.extradata or b""
        # avcC headers (version 1) with 4-byte NAL lengths, as libx264's output is converted to.
        avcc = extradata[:1] == b"\x01" and len(extradata) > 6 and extradata[4] & 3 == 3
        splicable = stream.codec_context.name == "h264" and avcc and stream.format.name == "yuv420p"
    if not splicable:
        log.info("%s: not 8-bit 4:2:0 H.264 with avcC headers: clips are re-encoded", scan.info.path)
        return write_reencoded(scan, clips, paths, crf, preset)
    parameter_sets = _avcc_parameter_sets(extradata)
    pending = sorted(zip(clips, paths, strict=True), key=lambda item: item[0].start)
    threads = writer_threads()
    jobs: list[Future] = []
    with open_video(scan.info.path) as source, ThreadPoolExecutor(threads, "smart-cut") as pool:
        stream = source.streams.video[0]
        splice = _Splice(scan, stream, crf, preset, parameter_sets)
        current = 0
        try:
            for gop, first, after in _gops(source, stream, scan):
                while current < len(pending):
                    clip, path = pending[current]
                    done = splice.feed(clip, path, gop, first, after)
                    if not done:
                        break
                    jobs.append(pool.submit(splice.finish()))
                    current += 1
                    _wait_below(jobs, 2 * threads)
                if current >= len(pending):
                    break
        except av.error.FFmpegError as error:  # a truncated source: keep what was read
            log.warning("%s: reading stopped early (%s)", scan.info.path, error.strerror or error)
        if current < len(pending) and splice.active:
            jobs.append(pool.submit(splice.finish()))
        return [clip for job in jobs for clip in job.result()]


def writer_threads() -> int:
    """Threads that write one source's clips: the CPUs this process may use (OMP_NUM_THREADS where set, as Ray
    sets it to a task's CPUs), at most 4: past that the demux pass is the limit."""
    allowed = os.environ.get("OMP_NUM_THREADS", "")
    cpus = int(allowed) if allowed.isdigit() else len(os.sched_getaffinity(0))
    return max(1, min(4, cpus))


def _wait_below(jobs: list[Future], limit: int) -> None:
    """Block until fewer than `limit` of `jobs` are running or queued."""
    running = [job for job in jobs if not job.done()]
    if len(running) >= limit:
        wait(running, return_when=FIRST_COMPLETED)


def _gops(source, stream, scan: SceneScan):
    """(packets of one GOP in decode order, its first frame, the frame after it) for each GOP of the source.

    A GOP runs from a keyframe packet to the next; its frames are [first, after) in presentation order.
    """
    gop: list[av.Packet] = []
    for packet in source.demux(stream):
        if packet.pts is None:
            continue
        if packet.is_keyframe and gop:
            yield gop, _index(scan, gop[0].pts), _index(scan, packet.pts)
            gop = []
        gop.append(packet)
    if gop:
        yield gop, _index(scan, gop[0].pts), scan.num_frames


def _index(scan: SceneScan, pts: int) -> int:
    return bisect.bisect_left(scan.pts, pts)


class _Splice:
    """One clip being gathered from the demux pass: the GOP its head is re-encoded from, then its copied packets.
    `finish` hands the encoding and muxing over as a job."""

    def __init__(self, scan: SceneScan, stream, crf: int, preset: str, parameter_sets: bytes):
        self.scan, self.stream, self.crf, self.preset = scan, stream, crf, preset
        self.parameter_sets = parameter_sets
        self.active = False

    def feed(self, clip: PlannedClip, path: Path, gop: list[av.Packet], first: int, after: int) -> bool:
        """Take what `clip` needs of this GOP; True once the clip is complete (the GOP may hold the next one's start)."""
        if not self.active:
            if clip.start >= after:  # the clip starts in a later GOP
                return False
            self.active, self.clip, self.path = True, clip, path
            self.head_source: tuple[list[av.Packet], int, int] | None = None
            self.copied: list[av.Packet] = []
            if clip.start > first:  # frames before the next keyframe: this GOP is decoded, they are re-encoded
                self.head_source = (gop, clip.start, min(clip.end, after))
                return clip.end <= after
        limit = self.scan.pts[self.clip.end] if self.clip.end < self.scan.num_frames else None
        for packet in gop:
            if limit is not None and packet.pts >= limit:
                return True  # in decode order: what follows may reference this frame
            if packet.pts >= self.scan.pts[max(self.clip.start, first)]:
                self.copied.append(packet)
        return self.clip.end <= after

    def finish(self) -> Callable[[], list[WrittenClip]]:
        """The job that writes the gathered clip: the frames from its start that are all there, or none."""
        self.active = False
        clip, path, head_source, copied = self.clip, self.path, self.head_source, self.copied
        return lambda: self._write(clip, path, self._encode(*head_source) if head_source else [], copied)

    def _write(self, clip: PlannedClip, path: Path, head: list[av.Packet], copied: list[av.Packet]):
        pts = self.scan.pts
        have = {packet.pts for packet in head} | {packet.pts for packet in copied}
        end = clip.start
        while end < clip.end and pts[end] in have:
            end += 1
        if end == clip.start:
            return []
        limit = pts[end] if end < len(pts) else None
        base = pts[clip.start]
        # The head has no B-frames (dts = pts); it is shifted back by the copied part's decode delay so that
        # decode timestamps keep increasing across the splice.
        delay = (copied[0].pts - copied[0].dts) if copied and copied[0].dts is not None else 0
        temporary = path.with_name(path.name + ".part")
        with av.open(str(temporary), "w", format="mp4") as output:
            out_stream = output.add_stream_from_template(self.stream)
            out_stream.time_base = self.stream.time_base
            for packet in head:
                if limit is None or packet.pts < limit:
                    output.mux(_packet(packet, out_stream, packet.pts - base, packet.pts - base - delay))
            for n, packet in enumerate(copied):
                if limit is not None and packet.pts >= limit:
                    continue
                data = bytes(packet)
                if n == 0 and head:  # back to the source's parameter sets at its keyframe
                    data = self.parameter_sets + data
                dts = packet.dts - base if packet.dts is not None else None
                output.mux(_packet(packet, out_stream, packet.pts - base, dts, data))
        os.replace(temporary, path)
        context = self.stream.codec_context
        how = ("smart" if copied else "reencode") if head else "copy"
        return [WrittenClip(clip, path, clip.start, end, context.name, context.width, context.height, how)]

    def _encode(self, gop: list[av.Packet], start: int, end: int) -> list[av.Packet]:
        """Decode the GOP and encode its frames [start, end) as H.264 packets in AVCC form, pts as the source's."""
        decoder = av.CodecContext.create(self.stream.codec_context.name, "r")
        decoder.extradata = self.stream.codec_context.extradata
        decoder.thread_type = "AUTO"
        wanted = {self.scan.pts[index] for index in range(start, end)}
        frames = []
        for packet in [*gop, None]:
            for frame in decoder.decode(packet):
                if frame.pts in wanted:
                    frames.append(frame)
        encoder = av.CodecContext.create("libx264", "w")
        context = self.stream.codec_context
        encoder.width, encoder.height, encoder.pix_fmt = context.width, context.height, "yuv420p"
        encoder.time_base = self.stream.time_base
        encoder.framerate = self.stream.average_rate or Fraction(self.scan.info.fps).limit_denominator(1001)
        # No B-frames: decode order is presentation order. Parameter sets in the stream (no global header):
        # the copied part's come back before its keyframe.
        encoder.options = {"crf": str(self.crf), "preset": self.preset, "x264-params": "bframes=0:repeat-headers=1"}
        packets = []
        for frame in sorted(frames, key=lambda frame: frame.pts):
            picture = frame.reformat(format="yuv420p")
            picture.pts, picture.time_base = frame.pts, self.stream.time_base
            packets += encoder.encode(picture)
        packets += encoder.encode(None)
        return [_avcc(packet) for packet in packets]


def _packet(source: av.Packet, stream, pts: int, dts: int | None, data: bytes | None = None) -> av.Packet:
    packet = av.Packet(bytes(source) if data is None else data)
    packet.pts, packet.dts, packet.time_base = pts, dts, stream.time_base
    packet.is_keyframe = source.is_keyframe
    packet.stream = stream
    return packet


def _avcc(packet: av.Packet) -> av.Packet:
    """An Annex B packet (start codes, as libx264 writes without a global header) with 4-byte NAL lengths."""
    data = bytes(packet)
    starts = []
    i = 0
    while (i := data.find(b"\x00\x00\x01", i)) != -1:
        starts.append(i + 3)
        i += 3
    units = []
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        if n + 1 < len(starts) and data[end - 1] == 0:  # a 4-byte start code's leading zero
            end -= 1
        units.append(len(data[start:end]).to_bytes(4, "big") + data[start:end])
    converted = av.Packet(b"".join(units))
    converted.pts, converted.dts, converted.is_keyframe = packet.pts, packet.pts, packet.is_keyframe
    return converted


def _avcc_parameter_sets(extradata: bytes) -> bytes:
    """The SPS and PPS of an avcC record (ISO 14496-15), each with a 4-byte length, to put in front of a packet."""
    units, i = [], 5
    for count_mask in (0x1F, 0xFF):  # SPS count (low 5 bits), then PPS count
        count = extradata[i] & count_mask
        i += 1
        for _ in range(count):
            size = int.from_bytes(extradata[i : i + 2], "big")
            units.append(size.to_bytes(4, "big") + extradata[i + 2 : i + 2 + size])
            i += 2 + size
    return b"".join(units)
