"""Sinks with fakes for hardware, real files, and a real local HTTP stream."""

from __future__ import annotations

import glob
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_overlay.core import EMOTIONS, Box, Face, FrameResult, Student, Tile
from fer_overlay.errors import SinkError
from fer_overlay.sinks import (
    ImageFileSink,
    JsonLinesSink,
    MjpegSink,
    PreviewSink,
    Sink,
    VideoFileSink,
    VirtualCameraSink,
    h264_writable,
    result_to_dict,
)

BLUE = (255, 0, 0)   # BGR


def solid(width: int, height: int, bgr: tuple[int, int, int]) -> np.ndarray:
    return np.full((height, width, 3), bgr, np.uint8)


def sample_result() -> FrameResult:
    tile = Tile(0, 1, Box(320, 0, 320, 180))
    empty = Tile(1, 0, Box(0, 180, 320, 180))
    p = (0.01, 0.01, 0.02, 0.80, 0.06, 0.05, 0.05)
    s = (0.02, 0.01, 0.02, 0.75, 0.05, 0.05, 0.10)
    face = Face(Box(400, 40, 80, 100), ((420.25, 70.0), (460.0, 70.5), (440.0, 90.0), (455.0, 110.0), (425.0, 110.0)),
                0.93127, tile, "r1c2", p, s)
    students = (
        Student("r1c2", tile, "present", "happy", 0.75, s, 12.0),
        Student("Ana Lima", empty, "no_face", aliases=("r2c1",)),
    )
    return FrameResult(42, 12.3456, (640, 360), (tile, empty), (face,), students, fps=5.0, dropped=3)


class FakeCamera:
    def __init__(self, width: int, height: int, fps: float) -> None:
        self.args = (width, height, fps)
        self.frames: list[np.ndarray] = []
        self.closed = False

    def send(self, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())

    def close(self) -> None:
        self.closed = True


def test_closing_sinks_that_got_no_frames_is_harmless(tmp_path: Path) -> None:
    sinks: list[Sink] = [VideoFileSink(tmp_path / "a.mp4", 5), ImageFileSink(tmp_path / "a.png"),
                         JsonLinesSink(tmp_path / "a.jsonl"), PreviewSink()]
    for sink in sinks:
        sink.close()
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]
    assert (tmp_path / "a.jsonl").read_text() == ""


# --- virtual camera ---------------------------------------------------------------------------

def test_virtual_camera_sends_bgr_frames_of_the_camera_size(monkeypatch) -> None:
    cameras: list[FakeCamera] = []

    def factory(w: int, h: int, fps: float) -> FakeCamera:
        cameras.append(FakeCamera(w, h, fps))
        return cameras[-1]

    sink = VirtualCameraSink(320, 180, 15, camera_factory=factory)
    sink.write(solid(320, 180, BLUE), None)
    sink.write(solid(1280, 720, BLUE), sample_result())   # resized to the camera size
    sink.close()
    cam = cameras[0]
    assert cam.args == (320, 180, 15) and cam.closed
    assert [f.shape for f in cam.frames] == [(180, 320, 3), (180, 320, 3)]
    for frame in cam.frames:
        assert frame.dtype == np.uint8
        assert tuple(frame[90, 160]) == (255, 0, 0)   # blue arrives in BGR order...
    opened = []
    fake = types.SimpleNamespace(PixelFormat=types.SimpleNamespace(BGR="BGR", RGB="RGB"),
                                 Camera=lambda *args, **kwargs: opened.append(kwargs) or FakeCamera(*args))
    monkeypatch.setitem(sys.modules, "pyvirtualcam", fake)
    VirtualCameraSink(320, 180, 15).close()
    assert opened == [{"fmt": "BGR"}]   # ... which is the order the real camera is opened for


def test_virtual_camera_without_backend_says_what_to_install() -> None:
    def no_backend(w: int, h: int, fps: float) -> FakeCamera:
        raise RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99]. "
                           "Did you run 'modprobe v4l2loopback'? See also pyvirtualcam's documentation.")

    with pytest.raises(SinkError) as info:
        VirtualCameraSink(640, 360, 10, camera_factory=no_backend)
    message = str(info.value)
    assert "v4l2loopback" in message and "modprobe" in message and "OBS" in message
    assert "\n" not in message


def _loopback_devices() -> list[str]:
    devices = []
    for dev in sorted(glob.glob("/dev/video*")):
        name = Path("/sys/class/video4linux", Path(dev).name, "name")
        if name.exists() and "loopback" in name.read_text().lower():
            devices.append(dev)
    return devices


def test_real_v4l2loopback_device() -> None:
    if not _loopback_devices():
        pytest.skip("no v4l2loopback device (/dev/video* with a loopback name); "
                    "run `sudo modprobe v4l2loopback devices=1 exclusive_caps=1` to test the real camera")
    sink = VirtualCameraSink(640, 360, 10)
    try:
        assert sink.device is not None
        for _ in range(3):
            sink.write(solid(640, 360, BLUE), None)
    finally:
        sink.close()


# --- files ------------------------------------------------------------------------------------

def test_video_file_has_every_frame_at_the_first_frames_size(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    sink = VideoFileSink(path, fps=10)
    assert not path.exists()   # opens lazily
    for i in range(12):
        size = (320, 240) if i != 5 else (640, 480)   # a stray size is resized, not dropped
        sink.write(solid(*size, (0, 0, 20 * i)), None)
    sink.close()
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 12
    assert {f.shape for f in frames} == {(240, 320, 3)}
    assert abs(int(frames[11][120, 160, 2]) - 220) < 20


def fourcc(path: Path) -> tuple[str, int]:
    """The codec a video file reports (cv2.CAP_PROP_FOURCC) and how many frames it has."""
    capture = cv2.VideoCapture(str(path))
    code = int(capture.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return code.to_bytes(4, "little").decode("latin-1"), frames


def test_video_is_h264_where_this_build_writes_it_else_mp4v_said_in_one_line(tmp_path: Path) -> None:
    """Issue 11 item 18: browsers play H.264 (avc1), not mp4v. The pip OpenCV has no H.264 encoder,
    so here the fallback is what runs: the file still plays (VLC, OpenCV) and the line says so."""
    messages: list[str] = []
    sink = VideoFileSink(tmp_path / "out.mp4", 10, notify=messages.append)
    for i in range(5):
        sink.write(solid(160, 120, (0, 0, 50 * i)), None)
    sink.close()
    codec, frames = fourcc(tmp_path / "out.mp4")
    assert frames == 5
    if h264_writable():
        assert sink.codec == "avc1" and codec.lower() in ("avc1", "h264") and messages == []
    else:
        assert sink.codec == "mp4v" and codec in ("FMP4", "mp4v")   # FFmpeg reports MPEG-4 Part 2 as FMP4
        assert len(messages) == 1 and "\n" not in messages[0]
        assert "mp4v" in messages[0] and "H.264" in messages[0] and "out.mp4" in messages[0]


def test_the_codec_follows_the_probe_and_the_fallback_line_goes_to_stderr(tmp_path: Path, capsys) -> None:
    with_h264 = VideoFileSink(tmp_path / "a.mp4", 10, h264=lambda: True)
    assert with_h264.codec == "avc1" and capsys.readouterr().err == ""
    without = VideoFileSink(tmp_path / "b.mp4", 10, h264=lambda: False)
    assert without.codec == "mp4v"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mp4v" in err and "b.mp4" in err
    without.write(solid(64, 48, BLUE), None)
    without.close()
    assert fourcc(tmp_path / "b.mp4") == ("FMP4", 1)


def test_the_probe_runs_once_quietly_and_leaves_nothing(tmp_path: Path, capfd, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None   # read TMPDIR again
    h264_writable.cache_clear()
    try:
        first = h264_writable()
        assert h264_writable() is first and h264_writable.cache_info().hits >= 1
    finally:
        tempfile.tempdir = None
    assert list(tmp_path.iterdir()) == []
    assert capfd.readouterr().err == ""   # FFmpeg's "could not open codec" lines silenced


def test_an_odd_frame_size_is_padded_not_cropped(tmp_path: Path) -> None:
    sink = VideoFileSink(tmp_path / "odd.mp4", 10, notify=lambda message: None)
    frame = solid(101, 75, (0, 0, 0))
    frame[:, -1] = frame[-1] = 255   # the last column and row: encoders need even sizes and would drop them
    for _ in range(3):
        sink.write(frame, None)
    sink.close()
    capture = cv2.VideoCapture(str(tmp_path / "odd.mp4"))
    ok, read = capture.read()
    capture.release()
    assert ok and read.shape == (76, 102, 3)
    assert read[40, 100].min() > 150 and read[74, 50].min() > 150 and read[40, 50].max() < 60


def test_video_file_that_cannot_open_is_a_sink_error(tmp_path: Path) -> None:
    sink = VideoFileSink(tmp_path / "missing" / "out.mp4", fps=10)
    with pytest.raises(SinkError, match="cannot write video"):
        sink.write(solid(64, 48, BLUE), None)
    sink.close()


def test_image_file_holds_the_latest_frame_after_close(tmp_path: Path) -> None:
    path = tmp_path / "shot.png"
    sink = ImageFileSink(path)
    sink.write(solid(64, 48, (0, 255, 0)), None)
    sink.write(solid(64, 48, BLUE), None)
    assert not path.exists()
    sink.close()
    image = cv2.imread(str(path))
    assert image.shape == (48, 64, 3) and tuple(image[0, 0]) == BLUE


def test_image_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="png"):
        ImageFileSink(tmp_path / "shot.nope")
    sink = ImageFileSink(tmp_path / "missing" / "shot.png")
    sink.write(solid(8, 8, BLUE), None)
    with pytest.raises(SinkError, match="cannot write image"):
        sink.close()


def test_json_lines_one_object_per_result_with_named_probabilities(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(path)
    sink.write(solid(8, 8, BLUE), sample_result())
    sink.write(solid(8, 8, BLUE), None)   # not analysed: skipped
    first = path.read_text().splitlines()   # flushed before close
    sink.write(solid(8, 8, BLUE), sample_result())
    sink.close()
    lines = path.read_text().splitlines()
    assert len(first) == 1 and len(lines) == 2
    record = json.loads(lines[0])
    assert record["frame_index"] == 42 and record["timestamp"] == pytest.approx(12.346)
    assert record["tiles"][0] == {"key": "r1c2", "row": 0, "col": 1, "box": [320, 0, 320, 180]}
    face = record["faces"][0]
    assert list(face["probabilities"]) == list(EMOTIONS)
    assert face["probabilities"]["happy"] == 0.8 and face["smoothed"]["neutral"] == 0.1
    assert face["label"] == "happy" and face["confidence"] == 0.75
    assert face["tile"] == "r1c2" and face["student"] == "r1c2" and face["score"] == 0.9313
    assert face["box"] == [400, 40, 80, 100] and face["landmarks"][0] == [420.2, 70.0]
    assert record["students"] == [
        {"id": "r1c2", "status": "present", "emotion": "happy", "confidence": 0.75, "aliases": []},
        {"id": "Ana Lima", "status": "no_face", "emotion": None, "confidence": 0.0, "aliases": ["r2c1"]},
    ]


def test_result_to_dict_is_json_ready_with_numpy_values() -> None:
    result = sample_result()
    face = result.faces[0]
    numpy_face = Face(face.box, face.landmarks, np.float32(0.5), face.tile, face.student,
                      tuple(np.float32(p) for p in face.probabilities), None)
    data = result_to_dict(FrameResult(1, np.float64(0.5), (640, 360), result.tiles, (numpy_face,)))
    json.dumps(data)
    assert data["faces"][0]["smoothed"] is None and data["faces"][0]["label"] == "happy"
    assert data["mood"]["counts"]["happy"] == 1 and data["mood"]["positive"] == 1.0


# --- preview ----------------------------------------------------------------------------------

def test_preview_without_display_is_a_sink_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(SinkError, match="no display"):
        PreviewSink().write(solid(8, 8, BLUE), None)


def test_preview_turns_opencv_gui_errors_into_sink_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":99")

    def imshow(title: str, image: np.ndarray) -> None:
        raise cv2.error("The function is not implemented")

    monkeypatch.setattr(cv2, "imshow", imshow)
    with pytest.raises(SinkError, match="preview window"):
        PreviewSink().write(solid(8, 8, BLUE), None)


def test_preview_shows_frames_on_a_real_x_server(xvfb: str) -> None:
    # In a child process: Qt keeps its display connection for the life of the process.
    code = ("import numpy as np; from fer_overlay.sinks import PreviewSink; s = PreviewSink('t'); "
            "[s.write(np.zeros((120, 160, 3), np.uint8), None) for _ in range(3)]; s.close(); print('shown')")
    env = {**os.environ, "DISPLAY": xvfb}
    env.pop("QT_QPA_PLATFORM", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parent.parent,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "shown" in done.stdout


# --- MJPEG ------------------------------------------------------------------------------------

def read_parts(response: http.client.HTTPResponse, count: int) -> list[bytes]:
    """Parse ``count`` JPEG parts out of a multipart/x-mixed-replace stream."""
    parts = []
    while len(parts) < count:
        line = response.readline()
        assert line, "stream ended early"
        if line.strip() != b"--frame":
            continue
        headers = {}
        while (header := response.readline().strip()):
            key, value = header.decode().split(":", 1)
            headers[key.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        parts.append(response.read(int(headers["content-length"])))
    return parts


@pytest.mark.parametrize("path", ["/", "/stream.mjpg"])
def test_mjpeg_streams_the_latest_frames(path: str) -> None:
    sink = MjpegSink(port=0)
    try:
        assert sink.port > 0 and sink.url.endswith("/stream.mjpg")
        sink.write(solid(160, 120, BLUE), None)
        conn = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=5)
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
        first = read_parts(response, 1)   # the frame written before the client came
        sink.write(solid(160, 120, (0, 0, 255)), None)
        second = read_parts(response, 1)
        conn.close()
        images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in first + second]
        assert [im.shape for im in images] == [(120, 160, 3)] * 2
        assert np.allclose(images[0][60, 80], BLUE, atol=12)
        assert np.allclose(images[1][60, 80], (0, 0, 255), atol=12)
    finally:
        sink.close()


def test_mjpeg_unknown_path_is_404() -> None:
    sink = MjpegSink(port=0)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=5)
        conn.request("GET", "/other")
        assert conn.getresponse().status == 404
        conn.close()
    finally:
        sink.close()


def test_mjpeg_port_in_use_names_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SinkError, match=f"port {port} .*--mjpeg"):
            MjpegSink(port=port)


def test_mjpeg_writes_do_not_wait_for_clients_and_close_ends_streams() -> None:
    sink = MjpegSink(port=0)
    conn = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=5)
    conn.request("GET", "/")
    response = conn.getresponse()   # a client that does not read while frames are written
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)   # ~300 kB JPEGs
    start = time.monotonic()
    for i in range(40):   # far more than the socket buffers hold
        sink.write(np.roll(noise, i, axis=1), None)
    assert time.monotonic() - start < 5
    sink.close()
    sink.close()   # idempotent
    assert response.read()   # whatever was sent, then a clean end of stream
    conn.close()
