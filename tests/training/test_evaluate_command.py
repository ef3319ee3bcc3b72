"""``streamd evaluate``: clip-level metrics and files on real held-out clips, and streaming evaluation
through the daemon's replay, checked against the offline reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from esc50_subset import write_esc50_subset

from models.checkpoint import load_checkpoint, save_checkpoint
from streamd.cli import main
from training import metrics
from training.evaluate import clip_scores
from training.readers import read_esc50
from training.trained_clips import KEY, record

CATEGORIES = ("dog", "rooster", "rain")


@pytest.fixture(scope="module")
def held_out_csv(tmp_path_factory: pytest.TempPathFactory, esc50_root: Path) -> Path:
    return write_esc50_subset(tmp_path_factory.mktemp("heldout"), CATEGORIES, 2, (3, 4))


def test_clip_level_report(
    trained_checkpoint: Path, held_out_csv: Path, esc50_root: Path, tmp_path, capsys
) -> None:
    audio = esc50_root / "audio"
    args = [
        "evaluate",
        "--checkpoint",
        str(trained_checkpoint),
        "--esc50",
        str(held_out_csv),
        "--audio-dir",
        str(audio),
    ]
    code = main(
        [*args, "--folds", "4", "--out", str(tmp_path / "ev"), "--cache-dir", str(tmp_path / "c"), "--json"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    model, info = load_checkpoint(trained_checkpoint)
    clips = read_esc50(held_out_csv, audio_dir=audio, folds=[4])
    scores = clip_scores(model, info, clips, None)
    truth = np.array([info.labels.index(clips.labels[c.targets[0]]) for c in clips.clips])
    assert report["num_examples"] == 6
    assert report["accuracy"] == pytest.approx(float((scores.argmax(1) == truth).mean()))
    assert np.array(report["confusion_matrix"]).sum() == 6
    assert set(report["per_class_accuracy"]) == set(info.labels)
    for name in ("report.json", "report.md", "confusion.png"):
        assert (tmp_path / "ev" / name).stat().st_size > 100
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 0  # markdown to stdout, all folds
    text = capsys.readouterr().out
    assert "- examples: 12" in text and "| rain |" in text


def test_a_class_folder_spelt_in_nfd_is_the_models_class(
    trained_checkpoint: Path, esc50_root: Path, tmp_path, capsys
) -> None:
    """A class folder whose name macOS wrote decomposed (NFD) is the class the model knows composed (NFC),
    as train --data read it: scored, not refused as an unknown label."""
    import unicodedata

    model, info = load_checkpoint(trained_checkpoint)
    nfc = "bruit blanc é"
    info.labels = [nfc if label == "rain" else label for label in info.labels]
    checkpoint = save_checkpoint(tmp_path / "renamed.safetensors", model, info)
    data = tmp_path / "data"
    clips = sorted(esc50_root.glob("audio/*"))[:2]
    for name, clip in zip((unicodedata.normalize("NFD", nfc), "dog"), clips, strict=True):
        (data / name).mkdir(parents=True)
        (data / name / clip.name).symlink_to(clip)
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--folders",
            str(data),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "- examples: 2" in out.out and f"| {nfc} |" in out.out


def test_evaluate_errors(
    trained_checkpoint: Path, held_out_csv: Path, esc50_root: Path, tmp_path, capsys
) -> None:
    base = ["evaluate", "--checkpoint", str(trained_checkpoint), "--audio-dir", str(esc50_root / "audio")]
    assert main(base) == 2
    assert "exactly one of --config" in capsys.readouterr().err
    assert main([*base, "--esc50", str(held_out_csv), "--folds", "9"]) == 2
    assert "folds [9] have no clips" in capsys.readouterr().err
    other = write_esc50_subset(tmp_path, ("siren",), 1, (1,))
    assert main([*base, "--esc50", str(other)]) == 2
    assert "does not know the label(s) ['siren']" in capsys.readouterr().err
    from models.checkpoint import load_checkpoint

    known = load_checkpoint(trained_checkpoint)[1].labels[0]
    clips = sorted(esc50_root.glob("audio/*"))[:2]  # two files: one file linked twice is refused
    for split, clip in zip(("train", "test"), clips, strict=True):  # split folders given whole: read
        (tmp_path / "split" / split / known).mkdir(parents=True)  # as train --data reads them
        (tmp_path / "split" / split / known / clip.name).symlink_to(clip)
    split_folders = [
        "evaluate",
        "--checkpoint",
        str(trained_checkpoint),
        "--folders",
        str(tmp_path / "split"),
    ]
    assert main([*split_folders, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_examples"] == 2
    (tmp_path / "split" / "train" / known / clips[0].name).unlink()  # test/ alone is no split layout:
    (tmp_path / "split" / "train" / known).rmdir()  # its folder name is taken as a class
    (tmp_path / "split" / "train").rmdir()
    assert main(split_folders) == 2
    assert "point at the split to score, e.g. DIR/test" in capsys.readouterr().err
    ok = [*base, "--esc50", str(held_out_csv)]
    assert main([*ok, "--window-s", "0.5", "--seed", "3"]) == 2  # never silently ignored
    assert capsys.readouterr().err.strip() == "streamd: error: --seed, --window-s: only with --streaming"
    for extra, wrong in (("--num-folds", "--num-folds: only with --folders"), ("--label-csv", "--label-csv")):
        assert main([*ok, extra, "3"]) == 2
        assert wrong in capsys.readouterr().err
    folders = ["evaluate", "--checkpoint", str(trained_checkpoint), "--folders", str(tmp_path)]
    assert main([*folders, "--audio-dir", str(tmp_path)]) == 2
    assert "--audio-dir: only with --esc50" in capsys.readouterr().err
    assert main([*ok, "--streaming", "--seed", "-1"]) == 2
    assert "--seed at least 0" in capsys.readouterr().err
    for gap in (["nan", "nan"], ["0", "inf"], ["2", "1"], ["-1", "1"], ["1e5", "1e5"]):
        assert main([*ok, "--streaming", "--gap-s", *gap]) == 2
        assert "--gap-s MIN MAX: seconds with 0 <= MIN <= MAX <= 60, got" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main([*ok, "--cache-dir", str(tmp_path / "file")]) == 2
    assert f"--cache-dir {tmp_path / 'file'}: exists and is not a folder" in capsys.readouterr().err


def test_streaming_replay_matches_offline_reference(
    trained_checkpoint: Path, held_out_csv: Path, esc50_root: Path, tmp_path, capsys
):
    args = ["evaluate", "--checkpoint", str(trained_checkpoint), "--esc50", str(held_out_csv), "--streaming"]
    args += ["--audio-dir", str(esc50_root / "audio")]
    args += ["--clips", "4", "--hops", "1.0", "2.5", "--gap-s", "1", "2", "--seed", "3", "--json"]
    (tmp_path / "daemon").mkdir()
    for stale in ("soundscape3.wav", "soundscape3.json", "notes.json"):  # an earlier run's, and the user's
        (tmp_path / "daemon" / stale).write_text("{}")
    assert main([*args, "--out", str(tmp_path / "daemon")]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "daemon").iterdir()) == [
        "notes.json",
        "soundscape0.json",
        "soundscape0.wav",
        "streaming.json",
    ]
    daemon = json.loads(capsys.readouterr().out)
    assert main([*args, "--out", str(tmp_path / "offline"), "--offline"]) == 0
    offline = json.loads(capsys.readouterr().out)
    assert [r["hop_s"] for r in daemon] == [1.0, 2.5]
    for d, o in zip(daemon, offline, strict=True):
        assert d["windows"] == o["windows"] > 0
        assert d["scored_windows"] == o["scored_windows"]
        assert d["window_accuracy"] == pytest.approx(o["window_accuracy"])
        assert d["onset_delays_s"] == pytest.approx(o["onset_delays_s"], abs=1e-6)
        for latency, delay in zip(d["onset_latencies_s"], d["onset_delays_s"], strict=True):
            assert (latency is None) == (delay is None)
            assert latency is None or delay <= latency < delay + 2.0  # plus the daemon's processing time
        assert d["events"] == 4
    assert daemon[0]["windows"] > daemon[1]["windows"]  # a shorter hop gives more windows
    wave, rate = sf.read(tmp_path / "daemon" / "soundscape0.wav")
    truth = json.loads((tmp_path / "daemon" / "soundscape0.json").read_text())
    assert rate == 16000 and len(truth["events"]) == 4
    assert truth["duration_s"] == pytest.approx(wave.size / rate)
    offline_wave, _ = sf.read(tmp_path / "offline" / "soundscape0.wav")
    np.testing.assert_array_equal(wave, offline_wave)  # the seed fixes the soundscape
    held = len(read_esc50(held_out_csv, audio_dir=esc50_root / "audio").clips)
    more = [*args[: args.index("--clips")], "--clips", str(held + 5), "--hops", "2.5", "--offline"]
    assert main(more) == 0
    assert f"--clips {held + 5}: the chosen folds hold {held} clips" in capsys.readouterr().err


def _link_folders(root: Path, csv_path: Path, audio: Path) -> Path:
    clips = read_esc50(csv_path, audio_dir=audio)
    for clip in clips.clips:
        folder = root / clips.labels[clip.targets[0]]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / clip.path.name).symlink_to(clip.path)
    return root


def test_folder_and_datafile_datasets(
    trained_checkpoint: Path, held_out_csv: Path, esc50_root: Path, tmp_path, capsys
):
    audio = esc50_root / "audio"
    expected = read_esc50(held_out_csv, audio_dir=audio)
    folders = _link_folders(tmp_path / "folders", held_out_csv, audio)
    base = ["evaluate", "--checkpoint", str(trained_checkpoint), "--cache-dir", str(tmp_path / "c"), "--json"]
    assert main([*base, "--folders", str(folders), "--num-folds", "2", "--folds", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["num_examples"] == len(expected.clips) // 2
    # the shipped model (trained on ESC-50 folds 1-4) on one's own folders: their fold numbers are not its
    # training folds, but these folders link ESC-50 clips it trained on, known by their bytes
    shipped = Path(__file__).resolve().parents[2] / "streamd" / "default_models" / "default.safetensors"
    own = ["evaluate", "--checkpoint", str(shipped), "--cache-dir", str(tmp_path / "c"), "--json"]
    assert main([*own, "--folders", str(folders), "--num-folds", "2"]) == 0
    scored = len(expected.clips)
    said = f"all {scored} clips scored are clips the checkpoint trained on: not held out"
    assert capsys.readouterr().err == f"streamd: warning: {said}\n"

    labels_csv = tmp_path / "class_labels_indices.csv"
    labels_csv.write_text(
        "index,mid,display_name\n" + "".join(f"{i},/m/{i},{n}\n" for i, n in enumerate(CATEGORIES))
    )
    datafile = tmp_path / "eval.json"
    entries = [
        {"wav": str(c.path), "labels": f"/m/{CATEGORIES.index(expected.labels[c.targets[0]])}"}
        for c in expected.clips
    ]
    datafile.write_text(json.dumps({"data": entries}))
    assert main([*base, "--datafiles", str(datafile), "--label-csv", str(labels_csv)]) == 0
    from_json = json.loads(capsys.readouterr().out)
    assert main([*base, "--esc50", str(held_out_csv), "--audio-dir", str(audio)]) == 0
    from_csv = json.loads(capsys.readouterr().out)
    assert from_json["accuracy"] == from_csv["accuracy"] and from_json["num_examples"] == 12
    assert from_json["confusion_matrix"] == from_csv["confusion_matrix"]
    assert main([*base, "--datafiles", str(datafile)]) == 2
    assert "--datafiles needs --label-csv" in capsys.readouterr().err


def test_multi_label_evaluation(held_out_csv: Path, esc50_root: Path, tmp_path: Path) -> None:
    import torch

    from models.common import FeatureConfig, ModelInfo, Normalization
    from models.registry import build_model
    from training import metrics
    from training.clips import ClipSet
    from training.evaluate import evaluate_clip_set

    single = read_esc50(held_out_csv, audio_dir=esc50_root / "audio")
    clips = [
        type(c)(c.path, (c.targets[0], (c.targets[0] + 1) % 3) if i % 3 == 0 else c.targets, c.fold)
        for i, c in enumerate(single.clips)
    ]
    clip_set = ClipSet(clips, single.labels, multi_label=True)
    config = {"num_classes": 3, "num_mel_bins": 64, "channels": [8, 16]}
    torch.manual_seed(0)
    model = build_model("resnet_cnn", config).eval()
    info = ModelInfo(
        "resnet_cnn",
        config,
        list(reversed(single.labels)),
        FeatureConfig(num_mel_bins=64),
        Normalization(target_frames=300),
        multi_label=True,
    )
    report = evaluate_clip_set(model, info, clip_set, tmp_path / "ml")
    scores = clip_scores(model, info, clip_set, None)
    truth = np.zeros((len(clips), 3))
    for i, c in enumerate(clips):  # the model's label order is reversed: targets are re-indexed by name
        for t in c.targets:
            truth[i, info.labels.index(single.labels[t])] = 1
    assert report["mAP"] == pytest.approx(metrics.mean_average_precision(truth, scores))
    assert report["macro_f1"] == pytest.approx(metrics.macro_f1(truth, scores, multi_label=True))
    assert (tmp_path / "ml" / "confusion.png").exists()
    with pytest.raises(ValueError, match="is single-label, the model is not"):
        evaluate_clip_set(model, info, single)


def test_class_folders_with_unusable_files_are_evaluated_without_them(
    trained_checkpoint: Path, esc50_root: Path, tmp_path, capsys
) -> None:
    """As `train --data` does, evaluate --folders leaves out files that cannot be decoded (with a warning)
    instead of stopping on the first; --folds without --num-folds is one clear line."""
    rows = [r for r in read_esc50_rows(esc50_root) if r["category"] in ("dog", "rooster")][:6]
    root = tmp_path / "folders"
    for row in rows:
        (root / row["category"]).mkdir(parents=True, exist_ok=True)
        (root / row["category"] / row["filename"]).symlink_to(esc50_root / "audio" / row["filename"])
    (root / "dog" / "empty.wav").write_bytes(b"")
    (root / "rooster" / "notes.wav").write_text("not audio")
    args = ["evaluate", "--checkpoint", str(trained_checkpoint), "--folders", str(root)]
    assert main([*args, "--cache-dir", str(tmp_path / "c"), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["num_examples"] == len(rows)
    assert "streamd: warning: 2 unusable file(s) left out, e.g. " in out.err
    assert "note: " not in out.err  # 5-s clips, a 5-s model: nothing is cut
    long_clip = root / "dog" / "long.wav"
    wave, rate = sf.read(str(esc50_root / "audio" / rows[0]["filename"]), dtype="float32")
    sf.write(long_clip, np.concatenate([wave, wave])[: rate * 7], rate)  # not silence: that is left out
    assert main([*args, "--cache-dir", str(tmp_path / "c"), "--json"]) == 0
    assert "note: 1 clip(s) are longer than the model's 5-s window" in capsys.readouterr().err
    model, info = load_checkpoint(trained_checkpoint)  # one that trained on the long clip: --held-out
    info.extra[KEY] = record([long_clip])  # leaves it out, and its note with it (it counted it anyway)
    knows_long = save_checkpoint(tmp_path / "knows_long.safetensors", model, info)
    held = ["evaluate", "--checkpoint", str(knows_long), "--folders", str(root), "--held-out"]
    assert main([*held, "--cache-dir", str(tmp_path / "c"), "--json"]) == 0
    err = capsys.readouterr().err
    assert "--held-out: 1 clip(s) the checkpoint trained on left out" in err and "longer than" not in err
    long_clip.unlink()
    assert main([*args, "--folds", "1"]) == 2
    assert "--folds: these class folders have no folds (give --num-folds" in capsys.readouterr().err
    (root / "rain").mkdir()  # a class whose only file is unusable, and one without audio: both left out,
    (root / "rain" / "broken.wav").write_text("not audio")  # as train --data leaves them out
    (root / "siren").mkdir()
    (root / "siren" / "readme.txt").write_text("")
    assert main([*args, "--cache-dir", str(tmp_path / "c"), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["num_examples"] == len(rows)
    assert "warning: class 'rain': none of its 1 file(s) is usable; left out" in out.err
    assert f"warning: {root / 'siren'}: no audio files (" in out.err
    assert "warning: 1 file(s) left out: not audio by their extension (e.g." in out.err  # siren's readme
    # rain's one (broken) file is in fold 1: in fold 3 the class has no clip, and is simply not there
    fold_3 = ["--num-folds", "3", "--folds", "3", "--cache-dir", str(tmp_path / "c"), "--json"]
    assert main([*args, *fold_3]) == 0
    assert "rain" not in capsys.readouterr().err
    for name in ("dog", "rooster"):
        for clip in (root / name).iterdir():
            clip.unlink()
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 2
    assert "error: folders: none of its 1 file(s) is usable" in capsys.readouterr().err  # rain's


def read_esc50_rows(esc50_root: Path) -> list[dict[str, str]]:
    import csv

    with (esc50_root / "meta" / "esc50.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _data_config(path: Path, csv_path: Path, audio: Path, data: str, mode: str) -> Path:
    path.write_text(
        f'[experiment]\nmode = "{mode}"\n[data]\nreader = "esc50"\ncsv_path = "{csv_path}"\n'
        f'audio_dir = "{audio}"\n{data}\n[model]\narch = "resnet_cnn"\n[model.config]\nchannels = [8, 16]\n'
    )
    return path


def test_a_config_scores_its_own_folds_and_warns_of_clips_the_model_trained_on(
    trained_checkpoint: Path, held_out_csv: Path, esc50_root: Path, tmp_path, capsys
) -> None:
    audio = esc50_root / "audio"
    base = ["evaluate", "--checkpoint", str(trained_checkpoint), "--cache-dir", str(tmp_path / "c")]
    single = _data_config(tmp_path / "single.toml", held_out_csv, audio, "val_folds = [4]", "single")
    assert main([*base, "--config", str(single)]) == 0
    out = capsys.readouterr()
    assert "- examples: 6" in out.out  # fold 4 only: the config's held-out fold, not its 12 clips
    assert "scoring the config's val_folds: fold(s) [4]" in out.err
    three = _data_config(tmp_path / "three.toml", held_out_csv, audio, "folds = [3]", "full")
    assert main([*base, "--config", str(three)]) == 0
    assert "- examples: 6" in capsys.readouterr().out  # the config's [data] folds
    assert main([*base, "--config", str(three), "--folds", "4"]) == 2
    assert "folds [4] have no clips (the dataset has folds [3])" in capsys.readouterr().err
    seen_csv = write_esc50_subset(tmp_path / "seen", CATEGORIES, 2, (1, 2))  # the checkpoint's own folds
    seen = _data_config(tmp_path / "seen.toml", seen_csv, audio, "", "full")
    other_csv, other_audio = _renamed_copy(seen_csv, audio, tmp_path / "other")  # another data set (its
    other = _data_config(tmp_path / "other.toml", other_csv, other_audio, "", "full")  # names) sharing folds
    # it records the clips it trained on: they are told by their bytes, whatever the data set's name
    for data in (["--config", str(seen)], ["--config", str(other)]):
        assert main([*base, *data]) == 0
        err = capsys.readouterr().err
        assert "all 12 clips scored are clips the checkpoint trained on: not held out" in err
    assert main([*base, "--esc50", str(seen_csv), "--audio-dir", str(audio), "--folds", "2"]) == 0
    assert "all 6 clips scored are clips the checkpoint trained on" in capsys.readouterr().err
    # an older checkpoint records its training folds only: they are compared where they are the data's
    model, info = load_checkpoint(trained_checkpoint)
    del info.extra[KEY]
    older = ["evaluate", "--checkpoint", str(save_checkpoint(tmp_path / "older.safetensors", model, info))]
    older += ["--cache-dir", str(tmp_path / "c")]
    assert main([*older, "--config", str(seen)]) == 0
    err = capsys.readouterr().err
    assert "the checkpoint trained on fold(s) [1, 2]" in err and "not held out" in err
    assert main([*older, "--config", str(other)]) == 0
    out = capsys.readouterr()
    assert "- examples: 12" in out.out and "warning" not in out.err  # its folds are not the checkpoint's
    # the same warning for --esc50 (it was given only with --config): a shipped model on its own folds
    assert main([*older, "--esc50", str(seen_csv), "--audio-dir", str(audio), "--folds", "2"]) == 0
    assert "the checkpoint trained on fold(s) [2]" in capsys.readouterr().err
    assert main([*older, "--esc50", str(other_csv), "--audio-dir", str(other_audio)]) == 0
    assert "warning" not in capsys.readouterr().err
    # ESC-50's own clips in a CSV of another name (ESC-10, one fold): still ESC-50's folds
    esc10_csv = seen_csv.with_name("esc10.csv")
    esc10_csv.write_text(seen_csv.read_text())
    assert main([*older, "--esc50", str(esc10_csv), "--audio-dir", str(audio), "--folds", "2"]) == 0
    assert "the checkpoint trained on fold(s) [2]" in capsys.readouterr().err


def _renamed_copy(csv_path: Path, audio: Path, dest: Path) -> tuple[Path, Path]:
    """The clips of an ESC-50-style CSV copied under names of another data set (not ESC-50's naming), with
    their CSV: ``(csv, audio folder)``."""
    (dest / "audio").mkdir(parents=True)
    lines = csv_path.read_text().splitlines()
    rows = [lines[0]]
    for line in lines[1:]:
        name, rest = line.split(",", 1)
        (dest / "audio" / f"own_{name}").write_bytes((audio / name).read_bytes())
        rows.append(f"own_{name},{rest}")
    (dest / "other.csv").write_text("\n".join(rows) + "\n")
    return dest / "other.csv", dest / "audio"


def test_evaluate_scores_in_the_precision_every_command_chooses(
    trained_checkpoint: Path, held_out_csv: Path, esc50_root: Path, tmp_path, capsys, monkeypatch
) -> None:
    """evaluate loads its model as classify and replay do: `--precision` (default auto) decides how the
    clips are scored, so the commands agree on the same files."""
    audio = esc50_root / "audio"
    base = ["evaluate", "--checkpoint", str(trained_checkpoint), "--esc50", str(held_out_csv)]
    base += ["--audio-dir", str(audio), "--cache-dir", str(tmp_path / "c"), "--json"]
    model, info = load_checkpoint(trained_checkpoint)
    clips = read_esc50(held_out_csv, audio_dir=audio)
    import training.evaluate

    used: list[str] = []  # the precision each scoring ran in (the metrics alone may not tell them apart)
    real = training.evaluate.clip_scores
    monkeypatch.setattr(
        training.evaluate, "clip_scores", lambda *a, **kw: used.append(kw["precision"]) or real(*a, **kw)
    )
    for precision in ("fp32", "bf16"):
        assert main([*base, "--precision", precision]) == 0
        assert used[-1] == precision
        report = json.loads(capsys.readouterr().out)
        scores = clip_scores(model, info, clips, None, precision=precision)
        expected = metrics.mean_average_precision(
            np.eye(len(info.labels))[[info.labels.index(clips.labels[c.targets[0]]) for c in clips.clips]],
            scores,
        )
        assert report["mAP"] == pytest.approx(expected, abs=1e-9), precision
    from models.precision import choose_precision

    assert main(base) == 0  # default: auto, as classify and replay choose it on this machine
    assert used[-1] == choose_precision("auto", "cpu", info.extra).precision


def test_an_esc50_row_without_a_filename_or_listed_twice_is_one_line_naming_it(
    trained_checkpoint: Path, held_out_csv: Path, esc50_root: Path, tmp_path, capsys
) -> None:
    """An empty filename was taken as the audio folder itself ("audio file .../audio does not exist"), and
    a row listed twice was scored twice: each is refused in one line naming the CSV line."""
    header, first, *rest = held_out_csv.read_text().splitlines()
    bad = tmp_path / "c.csv"
    bad.write_text("\n".join([header, first, "," + rest[0].split(",", 1)[1], *rest[1:]]) + "\n")
    args = ["evaluate", "--checkpoint", str(trained_checkpoint), "--esc50", str(bad)]
    args += ["--audio-dir", str(esc50_root / "audio"), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 2
    assert capsys.readouterr().err == f"streamd: error: {bad}:3: empty filename\n"
    bad.write_text("\n".join([header, first, "", *rest, first]) + "\n")  # a blank line is a line too
    assert main(args) == 2
    name, line = first.split(",")[0], len(rest) + 4
    assert capsys.readouterr().err == (
        f"streamd: error: {bad}:{line}: {name} is listed again (first on line 2): one row per clip\n"
    )
