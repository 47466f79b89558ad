"""sEMG (ours, after EIFER): readers on files the tests write, the chain against
independent scipy/numpy references, sync recovery on the synthetic sEMG, the mapping
against a shuffled-time control, the manifest's emg: entry and the saved mapping."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from sensor_removal.core.manifest import ManifestError, Recording, load_manifest
from sensor_removal.core.manifest_emg import MUSCLE_CHANNELS, EmgEntry, EmgSync
from sensor_removal.emg.chain import ChainSettings, bandpass_taps, clean, envelopes, rms_at
from sensor_removal.emg.headline import shuffled_time
from sensor_removal.emg.mapping import MappingSettings, cross_validate, fit_mapping, predict
from sensor_removal.emg.metrics import pearson, r2
from sensor_removal.emg.readers import EmgFileError, read_emg
from sensor_removal.emg.recording import envelopes as recording_envelopes
from sensor_removal.emg.recording import load_emg
from sensor_removal.synthetic import emg as synth_emg
from sensor_removal.synthetic.script import SIGNALS, _make_take

RATE = 2048.0
FPS = 15.0


def _signals(seed: int, seconds: float = 20.0) -> np.ndarray:
    return _make_take(int(seconds * FPS), FPS, (256, 256), np.random.default_rng(seed)).signals


@pytest.fixture(scope="module")
def synth_rec(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, np.ndarray, synth_emg.SynthEmg]:
    root = tmp_path_factory.mktemp("emg")
    sig = _signals(3)
    raw = synth_emg.synthesize(sig, FPS, np.random.default_rng(7), rate_hz=RATE)
    path = root / "r.emg.npz"
    synth_emg.write_files(raw, path, root / "r.emg.truth.npz")
    rec = Recording("r", root / "r.mp4", 1, "sensor", (0, 0, 64, 64), emg=synth_emg.manifest_entry(path))
    return rec, sig, raw


# ------------------------------------------------------------------------- readers

LABELS = ("ZYG_L", "COR_R", "TRIG")


def _samples(n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.round(rng.normal(0, 50, (n, len(LABELS))), 1)


def test_npz_and_csv_round_trip(tmp_path: Path) -> None:
    x = _samples()
    np.savez(
        tmp_path / "a.npz", samples=(x * 10).astype(np.int16), unit_uv=0.1, rate_hz=2048.0, labels=np.array(LABELS)
    )
    got = read_emg(tmp_path / "a.npz")
    assert got.labels == LABELS and got.rate_hz == 2048.0
    np.testing.assert_allclose(got.samples, x, atol=1e-9)
    t = np.arange(len(x)) / 1000.0 + 5.0
    np.savetxt(
        tmp_path / "a.csv", np.column_stack([t, x]), delimiter=",", header="time_s," + ",".join(LABELS), comments=""
    )
    got = read_emg(tmp_path / "a.csv")
    assert got.labels == LABELS and got.rate_hz == pytest.approx(1000.0) and got.start_s == pytest.approx(5.0)
    np.testing.assert_allclose(got.samples, x, atol=1e-6)
    np.savetxt(tmp_path / "b.csv", x, delimiter=",", header=",".join(LABELS), comments="")
    assert read_emg(tmp_path / "b.csv").rate_hz is None  # the manifest must give it


@pytest.mark.parametrize("kind", ["edf", "bdf"])
def test_edf_and_bdf_written_by_edfio_read_back_in_microvolts(tmp_path: Path, kind: str) -> None:
    edfio = pytest.importorskip("edfio")
    x = _samples(4096)
    signal, container = (edfio.EdfSignal, edfio.Edf) if kind == "edf" else (edfio.BdfSignal, edfio.Bdf)
    signals = [
        signal(
            x[:, i] / 1000.0, sampling_frequency=2048, label=lab, physical_dimension="mV", physical_range=(-1.0, 1.0)
        )
        for i, lab in enumerate(LABELS)
    ]
    container(signals).write(tmp_path / f"a.{kind}")
    got = read_emg(tmp_path / f"a.{kind}")
    assert got.labels == LABELS and got.rate_hz == 2048
    # 16-bit EDF over ±1 mV: steps of 2000 µV / 65535 ≈ 0.03 µV (24-bit BDF: finer)
    np.testing.assert_allclose(got.samples, x, atol=0.05)


def _xdf_chunk(tag: int, content: bytes) -> bytes:
    body = struct.pack("<H", tag) + content
    return struct.pack("<BI", 4, len(body)) + body


def write_xdf(path: Path, x: np.ndarray, labels: tuple[str, ...], rate: float, t0: float) -> None:
    """A minimal XDF 1.0 file (one float32 stream, type EMG), as LabRecorder writes it."""
    chans = "".join(f"<channel><label>{lab}</label><unit>microvolts</unit></channel>" for lab in labels)
    header = (
        f"<?xml version='1.0'?><info><name>amp</name><type>EMG</type><channel_count>{len(labels)}</channel_count>"
        f"<nominal_srate>{rate}</nominal_srate><channel_format>float32</channel_format>"
        f"<desc><channels>{chans}</channels></desc></info>"
    ).encode()
    sid = struct.pack("<I", 1)
    samples = b"".join(
        struct.pack("<B", 8) + struct.pack("<d", t0 + i / rate) + x[i].astype("<f4").tobytes() for i in range(len(x))
    )
    footer = (
        f"<?xml version='1.0'?><info><first_timestamp>{t0}</first_timestamp><last_timestamp>{t0 + (len(x) - 1) / rate}"
        f"</last_timestamp><sample_count>{len(x)}</sample_count></info>"
    ).encode()
    data = (
        b"XDF:"
        + _xdf_chunk(1, b"<?xml version='1.0'?><info><version>1.0</version></info>")
        + _xdf_chunk(2, sid + header)
        + _xdf_chunk(3, sid + struct.pack("<BI", 4, len(x)) + samples)
        + _xdf_chunk(6, sid + footer)
    )
    path.write_bytes(data)


def test_xdf_reads_labels_rate_and_lsl_start_time(tmp_path: Path) -> None:
    pytest.importorskip("pyxdf")
    x = _samples(2048).astype(np.float32)
    write_xdf(tmp_path / "a.xdf", x, LABELS, 1024.0, 100.0)
    got = read_emg(tmp_path / "a.xdf")
    assert got.labels == LABELS and got.rate_hz == 1024.0
    assert got.start_s == pytest.approx(100.0, abs=1e-3)
    np.testing.assert_allclose(got.samples, x, atol=1e-4)


def test_unknown_suffix_and_missing_file_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(EmgFileError, match=r"a\.wav.*unknown sEMG file type"):
        read_emg(tmp_path / "a.wav")
    with pytest.raises(EmgFileError, match=r"b\.npz: sEMG file not found"):
        read_emg(tmp_path / "b.npz")


# --------------------------------------------------------------------------- chain


def test_chain_matches_independent_references() -> None:
    """Notch as second-order sections and the FIR as two plain convolutions (forward,
    then backward), RMS as a per-time loop: the same numbers away from the edges."""
    from scipy.signal import iirnotch, sosfiltfilt, tf2sos

    rng = np.random.default_rng(1)
    x = rng.normal(0, 20, (8192, 2)) + 5.0
    s = ChainSettings()
    got = clean(x, 4096.0, s)
    ref = x - x.mean(axis=0)
    ref = sosfiltfilt(tf2sos(*iirnotch(50.0, 2.0, fs=4096.0)), ref, axis=0)
    taps = bandpass_taps(4096.0, s)
    assert len(taps) == 129
    fwd = np.stack([np.convolve(c, taps)[: len(c)] for c in ref.T], 1)
    both = np.stack([np.convolve(c[::-1], taps)[: len(c)][::-1] for c in fwd.T], 1)
    inner = slice(1000, -1000)
    np.testing.assert_allclose(got[inner], both[inner], atol=1e-6 * np.abs(both).max())
    times = np.array([0.5, 1.0, 1.3])
    loop = np.array(
        [
            [np.sqrt(np.mean(got[int(round(t * 4096)) - 1024 : int(round(t * 4096)) + 1024, c] ** 2)) for c in range(2)]
            for t in times
        ]
    )
    np.testing.assert_allclose(rms_at(got, 4096.0, times, 0.5), loop, rtol=1e-10)


def test_chain_removes_mains_and_keeps_the_emg_band() -> None:
    """Sines through the chain: amplitude = the designed responses squared (both filters
    run twice); the notch removes 50 Hz, 150 Hz passes, 900 Hz is cut. A 129-tap FIR at
    4,096 Hz cannot cut as low as 10 Hz sharply: 2 Hz drift keeps ~45 % (docs/emg.md)."""
    from scipy.signal import freqz, iirnotch

    t = np.arange(4 * 4096) / 4096.0
    taps = bandpass_taps(4096.0, ChainSettings())
    b, a = iirnotch(50.0, 2.0, fs=4096.0)

    def gain(f: float) -> float:
        y = clean(np.sin(2 * np.pi * f * t)[:, None], 4096.0)[4096:-4096]
        return float(np.sqrt(2 * np.mean(y**2)))

    def designed(f: float) -> float:
        h1 = freqz(taps, [1.0], worN=[f], fs=4096.0)[1][0]
        h2 = freqz(b, a, worN=[f], fs=4096.0)[1][0]
        return float(abs(h1) ** 2 * abs(h2) ** 2)

    for f in (2.0, 20.0, 50.0, 150.0, 400.0, 900.0):
        assert gain(f) == pytest.approx(designed(f), abs=0.02), f
    assert gain(50.0) < 0.1 and gain(900.0) < 0.1 and 0.95 < gain(150.0) < 1.05


def test_envelope_follows_the_true_drive_per_muscle(synth_rec) -> None:
    """Goal: r >= 0.8 per muscle after the known lag."""
    _, sig, raw = synth_rec
    n = len(sig)
    env = envelopes(raw.samples[:, :22], raw.rate_hz, raw.offset_s - raw.lag_s + np.arange(n) / FPS)
    rs = [pearson(env[:, c], raw.drives[:, c]) for c in range(22)]
    assert min(rs) >= 0.8, dict(zip(MUSCLE_CHANNELS, np.round(rs, 3), strict=True))


# ---------------------------------------------------------------------------- sync


def test_sync_recovers_offset_and_lag_with_and_without_trigger(synth_rec) -> None:
    """Goal: within ±1 frame. With a trigger: the offset and the lag; without: the
    shift offset - lag that aligns the muscles with the movement."""
    rec, sig, raw = synth_rec
    emg = load_emg(rec)
    env = recording_envelopes(emg, FPS, len(sig), sig)
    assert abs(env.offset_s - raw.offset_s) <= 1 / FPS
    assert abs(env.lag_s - raw.lag_s) <= 1 / FPS
    xcorr = Recording(
        rec.name, rec.path, 1, "sensor", rec.bbox, emg=EmgEntry(rec.emg.file, rec.emg.channels, sync=EmgSync("xcorr"))
    )
    env2 = recording_envelopes(load_emg(xcorr), FPS, len(sig), sig)
    assert env2.offset_s is None
    assert abs(env2.alignment_s - (raw.offset_s - raw.lag_s)) <= 1 / FPS


# ------------------------------------------------------------------------- mapping


def test_mapping_beats_a_shuffled_time_control() -> None:
    """Three tiny takes; noisy features of the expression -> envelopes on held-out takes."""
    rng = np.random.default_rng(5)
    sites = synth_emg.electrodes(np.random.default_rng(1))
    mix = rng.normal(0, 1, (len(SIGNALS), 10))
    xs, ys = [], []
    for seed in (11, 12, 13):
        sig = _signals(seed, 12.0)
        raw = synth_emg.synthesize(sig, FPS, np.random.default_rng(seed), sites, rate_hz=RATE)
        y = envelopes(raw.samples[:, :22], RATE, raw.offset_s + np.arange(len(sig)) / FPS)
        xs.append(sig @ mix + rng.normal(0, 0.05, (len(sig), 10)))
        ys.append(y)
    settings = MappingSettings(components=8)
    pred = cross_validate(xs, ys, settings)
    real = np.mean([r2(np.concatenate(ys)[:, c], np.concatenate(pred)[:, c]) for c in range(22)])
    shuffled = shuffled_time(ys)
    pred_s = cross_validate(xs, shuffled, settings)
    control = np.mean([r2(np.concatenate(shuffled)[:, c], np.concatenate(pred_s)[:, c]) for c in range(22)])
    assert real > 0.6 and real > control + 0.4, (real, control)


def test_saved_mapping_predicts_the_same(tmp_path: Path) -> None:
    from sensor_removal.emg.persist import load_mapping, save_mapping

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 5)), rng.normal(size=(200, 3))
    m = fit_mapping([x[:100], x[100:]], [y[:100], y[100:]], MappingSettings(components=4))
    save_mapping(m, tmp_path / "m.pt", direction="exp2emg", source="cleaned")
    back, meta = load_mapping(tmp_path / "m.pt")
    assert meta == {"direction": "exp2emg", "source": "cleaned"}
    np.testing.assert_allclose(predict(back, x), predict(m, x), rtol=1e-12)


# ----------------------------------------------------------------------- manifest


def _manifest(tmp_path: Path, emg: object) -> Path:
    doc = {
        "subject": "s",
        "recordings": [
            {"name": "n", "path": "n.mp4", "session": 1, "condition": "normal", "bbox": [0, 0, 8, 8]},
            {"name": "x", "path": "x.mp4", "session": 1, "condition": "sensor", "bbox": [0, 0, 8, 8], "emg": emg},
        ],
    }
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_manifest_emg_entry_loads_and_round_trips(tmp_path: Path) -> None:
    from sensor_removal.core.manifest import save_manifest

    entry = {
        "file": "x.edf",
        "rate_hz": 4096,
        "channels": {"ZYG_L": "zygomaticus/left"},
        "sync": {"method": "trigger", "channel": "TRIG", "frame": 3},
    }
    subj = load_manifest(_manifest(tmp_path, entry), check_videos=False)
    e = subj.recording("x").emg
    assert e.file == (tmp_path / "x.edf").resolve() and e.rate_hz == 4096.0
    assert e.channels == {"ZYG_L": "zygomaticus/left"} and e.sync == EmgSync("trigger", "TRIG", 3)
    assert subj.recording("n").emg is None
    again = load_manifest(save_manifest(subj, tmp_path / "again.yaml"), check_videos=False)
    assert again.recording("x").emg == e


@pytest.mark.parametrize(
    ("emg", "field", "text"),
    [
        ({"file": "x.edf", "channels": {"ZYG_L": "nose/left"}}, "emg.channels.ZYG_L", "not a muscle/side"),
        (
            {"file": "x.edf", "channels": {"A": "zygomaticus/left", "B": "zygomaticus/left"}},
            "emg.channels.B",
            "mapped twice",
        ),
        ({"file": "x.edf", "channels": {"A": "zygomaticus/left"}, "rate_hz": -1}, "emg.rate_hz", "> 0"),
        (
            {"file": "x.edf", "channels": {"A": "zygomaticus/left"}, "sync": {"method": "trigger"}},
            "emg.sync.channel",
            "trigger channel",
        ),
        (
            {"file": "x.edf", "channels": {"A": "zygomaticus/left"}, "sync": {"method": "gps"}},
            "emg.sync.method",
            "unknown method",
        ),
        ({"channels": {"A": "zygomaticus/left"}}, "emg.file", "path string"),
        ({"file": "x.edf", "channels": {"A": "zygomaticus/left"}, "gain": 2}, "emg", "unknown field"),
    ],
)
def test_manifest_emg_entry_errors_name_the_field(tmp_path: Path, emg: dict, field: str, text: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(_manifest(tmp_path, emg), check_videos=False)
    msg = str(info.value)
    assert "recording 'x'" in msg and f"field {field!r}" in msg and text in msg, msg


@pytest.mark.slow  # Lightning's start-up: ~13 s on 2 busy cores
def test_lightning_mlp_learns_a_windowed_relation_and_saves(tmp_path: Path) -> None:
    """The small MLP (Lightning) on a lagged nonlinear relation: held-out R² well above a
    shuffled control, and the saved file predicts the same."""
    from sensor_removal.emg.persist import load_mapping, save_mapping

    rng = np.random.default_rng(3)
    xs, ys = [], []
    for _ in range(3):
        x = np.cumsum(rng.normal(0, 0.3, (240, 3)), axis=0)
        x = np.tanh(x - x.mean(0))
        y = np.stack([np.roll(x[:, 0], 2) ** 2, x[:, 1] - 0.5 * np.roll(x[:, 2], -2)], 1)
        xs.append(x)
        ys.append(y + rng.normal(0, 0.02, y.shape))
    settings = MappingSettings(
        model="mlp", components=3, window_before=3, window_after=3, epochs=50, hidden=32, lr=2e-2
    )
    m = fit_mapping(xs[:2], ys[:2], settings)  # the third take is held out
    pred = predict(m, xs[2])
    score = np.mean([r2(ys[2][:, c], pred[:, c]) for c in range(2)])
    assert score > 0.6, score
    save_mapping(m, tmp_path / "mlp.pt", direction="emg2exp", source="sensor")
    back, _ = load_mapping(tmp_path / "mlp.pt")
    np.testing.assert_allclose(predict(back, xs[0]), predict(m, xs[0]), rtol=1e-5, atol=1e-6)


def test_report_shows_the_emg_table_of_a_result_folder(tmp_path: Path) -> None:
    """The evaluation report reads the emg/ folder (files only, no sEMG code)."""
    from evaluation.report.emg import emg_sections

    res = tmp_path / "evaluation"
    (res / "emg").mkdir(parents=True)
    (res / "emg" / "emg.md").write_text(
        "## Expression <-> muscle mapping (ours, after EIFER)\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n"
    )
    (res / "emg" / "fig_emg_r_per_muscle.png").write_bytes(b"png")
    out = tmp_path / "report"
    out.mkdir()
    lines, files = emg_sections([res, tmp_path / "other"], out)
    assert lines[0] == "## Expression <-> muscle mapping (ours, after EIFER)" and "| 1 | 2 |" in lines
    assert "![fig_emg_r_per_muscle](fig_emg_r_per_muscle.png)" in lines
    assert (out / "fig_emg_r_per_muscle.png").read_bytes() == b"png" and list(files) == ["fig_emg_r_per_muscle"]
    assert emg_sections([tmp_path / "other"], out) == ([], {})


@pytest.mark.slow  # py-feat's import and models: about a minute on 2 busy cores
def test_au_features_come_from_pyfeat_through_its_real_loading_code(tmp_path: Path) -> None:
    """--aus: py-feat's AU series (stand-in weights of the right shapes, loaded by the
    library's own code) join the landmark features frame by frame."""
    from evaluation.metrics.facial import FacialAnalyzer
    from sensor_removal.emg.features import au_features, joined, landmark_features
    from tests.feat_standins import face_frame, write_standin_feat_weights
    from tests.videos import write_video

    hub = tmp_path / "hub"
    write_standin_feat_weights(hub)
    video = tmp_path / "face.mp4"
    write_video(video, np.stack([face_frame(seed=i) for i in range(4)]), fps=10.0, codec="h264-lossless")
    aus = au_features(video, None, FacialAnalyzer(weights_dir=hub, device="cpu", batch_size=4), tmp_path / "cache")
    assert aus.values.shape == (4, len(aus.names)) and aus.names[0] == "AU01" and np.isfinite(aus.values).all()
    both = joined(landmark_features(np.full((4, 68, 2), np.nan)), aus)
    assert both.names[-len(aus.names) :] == aus.names and both.values.shape == (4, 143 + len(aus.names))
    assert not both.valid.any()  # no landmarks: not valid, whatever the AUs say


def test_landmark_smoothing_removes_per_frame_jitter_and_keeps_the_movement() -> None:
    """dlib jitters per frame; the Savitzky-Golay smoothing of the landmark features
    (ours) must bring a jittered mouth opening closer to the true one, and off (1 frame)
    must leave the features as they are."""
    from sensor_removal.emg.features import landmark_features, smoothed

    rng = np.random.default_rng(0)
    t = np.arange(150)
    base = rng.normal(0.0, 30.0, (68, 2)) + 100.0
    opening = 6.0 * np.sin(2 * np.pi * t / 45.0) ** 2  # a slow mouth opening, px
    clean_pts = np.repeat(base[None], len(t), 0)
    clean_pts[:, 57:60, 1] += opening[:, None]  # lower lip down
    clean_pts[:, 65:68, 1] += opening[:, None]
    noisy = clean_pts + rng.normal(0.0, 1.0, clean_pts.shape)
    truth = landmark_features(clean_pts, smooth_frames=1).select(["mouth_open"])[:, 0]
    raw = landmark_features(noisy, smooth_frames=1).select(["mouth_open"])[:, 0]
    smooth = landmark_features(noisy).select(["mouth_open"])[:, 0]
    err_raw, err_smooth = np.sqrt(np.mean((raw - truth) ** 2)), np.sqrt(np.mean((smooth - truth) ** 2))
    assert err_smooth < 0.7 * err_raw
    assert pearson(smooth, truth) > 0.95
    x = rng.normal(size=(20, 3))
    assert smoothed(x, 1) is x
    with pytest.raises(ValueError, match="odd"):
        smoothed(x, 4)
