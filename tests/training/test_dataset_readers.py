"""The three dataset readers on real ESC-50 clips, and the fbank cache on re-encoded copies of them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from esc50_subset import esc50_rows, small_esc50_rows, write_esc50_subset

from models.common import FeatureConfig
from training.cache import cached_fbanks, clip_fbank
from training.readers import (
    DatasetError,
    read_class_folders,
    read_dataset,
    read_esc50,
    read_json_datafiles,
)

CATEGORIES = ("dog", "rain", "crying_baby")


def test_esc50_reader_full_metadata(esc50_root: Path) -> None:
    rows = esc50_rows()
    clip_set = read_esc50(esc50_root / "meta" / "esc50.csv")
    assert len(clip_set.clips) == len(rows)
    assert len(clip_set.labels) == 50 and not clip_set.multi_label
    for row, clip in zip(rows[:50], clip_set.clips[:50], strict=True):
        assert clip.path == esc50_root / "audio" / row["filename"]
        assert clip_set.labels[clip.targets[0]] == row["category"]
        assert clip.fold == int(row["fold"])
    assert clip_set.folds() == sorted({int(r["fold"]) for r in rows})


def test_esc50_reader_fold_filter_keeps_label_indices(tmp_path: Path, esc50_root: Path) -> None:
    csv_path = write_esc50_subset(tmp_path, CATEGORIES, 2, (1, 2, 3))
    clip_set = read_esc50(csv_path, audio_dir=esc50_root / "audio", folds=[2, 3])
    assert {c.fold for c in clip_set.clips} == {2, 3}
    assert len(clip_set.clips) == len(CATEGORIES) * 2 * 2
    full = read_esc50(esc50_root / "meta" / "esc50.csv")
    assert clip_set.labels == ["dog", "rain", "crying_baby"]  # ESC-50 targets 0, 10, 20 become 0, 1, 2
    by_path = {c.path: full.labels[c.targets[0]] for c in full.clips}
    for clip in clip_set.clips:
        assert clip_set.labels[clip.targets[0]] == by_path[clip.path]


def test_a_csv_of_esc50s_own_clips_is_esc50_whatever_it_is_called(tmp_path: Path, esc50_root: Path) -> None:
    """ESC-10 or one fold in a CSV of another name keeps ESC-50's name (so its folds are compared with a
    model's training folds); a CSV whose file names are not ESC-50's, or disagree with its rows, is
    its own data set."""
    audio = esc50_root / "audio"
    csv_path = write_esc50_subset(tmp_path, CATEGORIES, 1, (1, 2))
    assert read_esc50(csv_path, audio_dir=audio).name == "esc50"
    lines = csv_path.read_text().splitlines()
    name, fold, rest = lines[1].split(",", 2)
    for row, why in ((f"own_{name},{fold},{rest}", "not ESC-50's naming"), (f"{name},9,{rest}", "fold 9")):
        other = tmp_path / why.replace(" ", "_") / "mine.csv"
        other.parent.mkdir()
        other.write_text("\n".join([lines[0], row, *lines[2:]]) + "\n")
        if row.startswith("own_"):
            (other.parent / f"own_{name}").write_bytes((audio / name).read_bytes())
            audio_dir = other.parent
            for line in lines[2:]:  # the others beside it
                (audio_dir / line.split(",")[0]).write_bytes((audio / line.split(",")[0]).read_bytes())
        else:
            audio_dir = audio
        assert read_esc50(other, audio_dir=audio_dir).name == "mine", why


def test_esc50_reader_category_filters(esc50_root: Path) -> None:
    csv_path = esc50_root / "meta" / "esc50.csv"
    kept = read_esc50(csv_path, categories=["cat", "dog", "rain"])
    assert kept.labels == ["dog", "cat", "rain"]  # ESC-50 targets 0, 5, 10 in their order
    assert len(kept.clips) == 3 * 32  # 8 clips per class and fold, folds 1-4
    dropped = read_esc50(csv_path, exclude_categories=["cat", "dog"])
    assert len(dropped.labels) == 48 and not {"cat", "dog"} & set(dropped.labels)
    assert len(dropped.clips) == 48 * 32
    with pytest.raises(DatasetError, match=r"categories: unknown categor\(ies\) \['kat'\]"):
        read_esc50(csv_path, categories=["kat"])
    with pytest.raises(DatasetError, match="no rows left"):
        read_esc50(csv_path, categories=["dog"], exclude_categories=["dog"])


def test_esc50_reader_errors(tmp_path: Path, esc50_root: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,fold,category\nx.flac,1,dog\n")
    with pytest.raises(DatasetError, match="missing column"):
        read_esc50(bad)
    bad.write_text("filename,fold,target,category\nnope.flac,1,0,dog\n")
    with pytest.raises(DatasetError, match=r"nope\.flac does not exist"):
        read_esc50(bad, audio_dir=esc50_root / "audio")
    bad.write_text("filename,fold,target,category\nnope.flac,one,0,dog\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: column 'fold'"):
        read_esc50(bad)
    with pytest.raises(DatasetError, match="no such metadata file"):
        read_esc50(tmp_path / "absent.csv")
    (tmp_path / "aud" / "sub").mkdir(parents=True)  # a row naming a folder is not said to be missing
    bad.write_text("filename,fold,target,category\nsub,1,0,dog\n")
    with pytest.raises(DatasetError, match=r"audio file .*sub is a folder, not a file$"):
        read_esc50(bad, audio_dir=tmp_path / "aud")
    bad.write_text("filename,fold,target,category\nx.flac,1,0,dog\ny.flac,1,0\n")  # a short row
    with pytest.raises(DatasetError, match=r"bad.csv:3: no 'category' value: the row has fewer fields"):
        read_esc50(bad)
    bad.write_text("filename,fold,target,category\nx.flac,1,0,\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: empty category"):
        read_esc50(bad)


def test_esc50_audio_is_beside_the_csvs_folder_whatever_the_working_folder(
    esc50_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--esc50 esc50.csv`` given from inside meta/ looked for ./audio (the parent of "." is "."),
    not ../audio as the help says."""
    monkeypatch.chdir(esc50_root / "meta")
    clips = read_esc50(Path("esc50.csv"), folds=[1]).clips
    assert len(clips) == 400 and all(Path(c.path).is_file() for c in clips)


def _write_reencoded(rows: list[dict], root: Path, esc50_root: Path) -> dict[Path, Path]:
    """Real clips re-encoded as 44.1 kHz stereo WAV or 8 kHz FLAC in class folders; copy -> original."""
    made = {}
    for i, row in enumerate(rows):
        source = esc50_root / "audio" / row["filename"]
        wave, rate = sf.read(source, dtype="float32")
        folder = root / row["category"]
        folder.mkdir(parents=True, exist_ok=True)
        if i % 2 == 0:
            stereo = np.stack([wave, wave], axis=1)
            target = folder / (Path(row["filename"]).stem + ".wav")
            sf.write(target, soxr.resample(stereo, rate, 44100), 44100, subtype="FLOAT")
        else:
            target = folder / "nested" / (Path(row["filename"]).stem + ".flac")
            target.parent.mkdir(exist_ok=True)
            sf.write(target, soxr.resample(wave, rate, 8000), 8000)
        made[target] = source
    return made


def test_class_folder_reader_and_any_rate_fbanks(tmp_path: Path, esc50_root: Path) -> None:
    rows = small_esc50_rows(CATEGORIES, 2, (1,))
    made = _write_reencoded(rows, tmp_path / "data", esc50_root)
    (tmp_path / "data" / "notes").mkdir()
    (tmp_path / "data" / "notes" / "readme.txt").write_text("not audio")
    clip_set = read_class_folders(tmp_path / "data", num_folds=2)
    assert clip_set.labels == sorted(CATEGORIES)  # the folder without audio is not a class
    assert {c.path for c in clip_set.clips} == set(made)
    for clip in clip_set.clips:
        assert clip.path.parent.name in (clip_set.labels[clip.targets[0]], "nested")
    for label in range(len(CATEGORIES)):
        assert sorted(c.fold for c in clip_set.clips if c.targets == (label,)) == [1, 2]

    cfg = FeatureConfig()
    copies = cached_fbanks(clip_set.clips, cfg, tmp_path / "cache", 498)
    originals = cached_fbanks([type(c)(made[c.path], c.targets) for c in clip_set.clips], cfg, None, 498)
    assert copies.shape == originals.shape == (len(made), 498, 128)
    wav_rows = [i for i, c in enumerate(clip_set.clips) if c.path.suffix == ".wav"]
    # 44.1 kHz stereo back to 16 kHz mono: the same spectrum up to resampling error
    assert np.median(np.abs(copies[wav_rows] - originals[wav_rows])) < 0.1
    assert len(list((tmp_path / "cache").glob("*.npy"))) == len(made)


def test_fbank_cache_survives_parallel_writers(tmp_path: Path, esc50_root: Path) -> None:
    """Runs side by side filling one cache (folds trained in parallel) neither fail nor leave debris."""
    from concurrent.futures import ThreadPoolExecutor

    path = esc50_root / "audio" / small_esc50_rows(CATEGORIES, 1, (1,))[0]["filename"]
    cfg = FeatureConfig()
    expected = clip_fbank(path, cfg, None)
    for attempt in range(3):
        cache = tmp_path / f"cache{attempt}"
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(clip_fbank, [path] * 16, [cfg] * 16, [cache] * 16))
        assert all(np.array_equal(r, expected) for r in results)
        assert [p.name for p in cache.iterdir()] == [next(cache.glob("*.npy")).name]  # one entry, no .tmp


def test_class_folder_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset folder"):
        read_class_folders(tmp_path / "absent")
    (tmp_path / "a.wav").write_bytes(b"")
    with pytest.raises(DatasetError, match="is a file, not a dataset folder"):
        read_class_folders(tmp_path / "a.wav")
    with pytest.raises(DatasetError, match="relative paths are taken from the current directory"):
        read_class_folders(Path("no-such-folder-here"))  # says where a relative path was looked up
    (tmp_path / "empty" / "dog").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no class folders with audio"):
        read_class_folders(tmp_path / "empty")


def _label_csv(path: Path, names: list[str]) -> Path:
    lines = ["index,mid,display_name"] + [f'{i},/m/{i:03d},"{n}"' for i, n in enumerate(names)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_json_datafile_reader(tmp_path: Path, esc50_root: Path) -> None:
    rows = small_esc50_rows(CATEGORIES, 1, (1, 2))
    label_csv = _label_csv(tmp_path / "class_labels_indices.csv", list(CATEGORIES))
    (tmp_path / "clips").mkdir()
    data: dict[int, list[dict]] = {1: [], 2: []}
    for row in rows:
        local = tmp_path / "clips" / row["filename"]
        os.symlink(esc50_root / "audio" / row["filename"], local)
        wav = f"clips/{row['filename']}" if row["fold"] == "1" else str(local)
        data[int(row["fold"])].append({"wav": wav, "labels": f"/m/{CATEGORIES.index(row['category']):03d}"})
    data[2][0]["labels"] += ",/m/002"
    files = []
    for fold, entries in data.items():
        files.append(tmp_path / f"train_{fold}.json")
        files[-1].write_text(json.dumps({"data": entries}))
    clip_set = read_json_datafiles(files, label_csv)
    assert clip_set.labels == list(CATEGORIES)
    assert clip_set.multi_label  # one clip has two labels
    assert [c.fold for c in clip_set.clips] == [1] * 3 + [2] * 3
    assert clip_set.clips[0].path == tmp_path / "clips" / rows[0]["filename"]
    assert clip_set.clips[3].targets == (CATEGORIES.index(rows[3]["category"]), 2)
    y = clip_set.targets()
    assert y.shape == (6, 3) and y.sum() == 7
    single = read_json_datafiles(files[0], label_csv)
    assert not single.multi_label and single.targets().tolist() == [0, 1, 2]

    with pytest.raises(DatasetError, match="multi_label is false"):
        read_json_datafiles(files, label_csv, multi_label=False)
    files[0].write_text(json.dumps({"data": [{"wav": "clips/x.wav", "labels": "/m/999"}]}))
    with pytest.raises(DatasetError, match=r"unknown label\(s\) \['/m/999'\]"):
        read_json_datafiles(files[0], label_csv)
    files[0].write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_json_datafiles(files[0], label_csv)


def test_read_dataset_dispatch(tmp_path: Path, esc50_root: Path) -> None:
    csv_path = write_esc50_subset(tmp_path, CATEGORIES, 1, (1,))
    clip_set = read_dataset("esc50", csv_path=csv_path, audio_dir=esc50_root / "audio")
    assert len(clip_set.clips) == 3
    with pytest.raises(DatasetError, match="unknown dataset reader"):
        read_dataset("kaggle")
    with pytest.raises(DatasetError, match=r"unknown option\(s\) \['csv'\]"):
        read_dataset("esc50", csv=csv_path)
    with pytest.raises(DatasetError, match=r"missing option\(s\) \['root'\]"):
        read_dataset("folders")


def test_text_files_from_spreadsheets_and_binary_files(tmp_path: Path, esc50_root: Path) -> None:
    """A byte-order mark (as spreadsheet programs write it) is dropped; a file that is not UTF-8 text,
    a directory or a datafile of bytes are one line naming the file."""
    csv_path = write_esc50_subset(tmp_path, CATEGORIES, 1, (1,))
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    plain = read_esc50(csv_path, audio_dir=esc50_root / "audio")
    assert read_esc50(bom, audio_dir=esc50_root / "audio").clips == plain.clips
    binary = tmp_path / "audio.csv"
    binary.write_bytes(b"RIFF\x00\xff\xfe\x80" * 16)
    with pytest.raises(DatasetError, match=r"audio.csv: not a UTF-8 text metadata file \(byte \d+"):
        read_esc50(binary)
    with pytest.raises(DatasetError, match="is a directory, not a metadata file"):
        read_esc50(tmp_path)
    datafile = tmp_path / "data.json"
    datafile.write_bytes(b"\xff\xfe\x00{")
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n0,/m/dog,dog\n")
    with pytest.raises(DatasetError, match=r"data\.json: not a UTF-8 text datafile"):
        read_json_datafiles([datafile], labels)


def test_fbank_cache_entries_of_an_older_reader_are_not_served(
    tmp_path: Path, esc50_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache entry is keyed by the reader's version too: when what ``read_audio`` gives for a file changes
    (a truncated WAV refused since version 2), features an older reader cached are computed again."""
    import training.cache as cache_module

    path = esc50_root / "audio" / small_esc50_rows(CATEGORIES, 1, (1,))[0]["filename"]
    cfg = FeatureConfig()
    cache = tmp_path / "cache"
    monkeypatch.setattr(cache_module, "READER_VERSION", 1)
    old = clip_fbank(path, cfg, cache)
    (entry,) = cache.glob("*.npy")
    np.save(entry, np.zeros_like(old))  # what the older reader is taken to have given
    assert not np.any(clip_fbank(path, cfg, cache))  # the same reader is served its own entry
    monkeypatch.undo()
    assert np.array_equal(clip_fbank(path, cfg, cache), old)  # the current reader is not
    assert len(list(cache.glob("*.npy"))) == 2
