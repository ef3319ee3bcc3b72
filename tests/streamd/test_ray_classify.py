"""``classify --windows --ray`` on a real local two-node Ray cluster (head + worker, small object stores)
gives the local run's windows and scores (within 1e-5), with a corrupt file among good ones reported and
the rest completed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.paths import REPO
from support.process import run_streamd

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

TOLERANCE = 1e-5
OBJECT_STORE_BYTES = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node on this machine, two logical CPUs each; streamd importable on both."""
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "RAY_AUTH_MODE")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved["PYTHONPATH"]) if p)
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a test cluster on 127.0.0.1 only
    head = {"num_cpus": 2, "object_store_memory": OBJECT_STORE_BYTES, "include_dashboard": False}
    c = Cluster(initialize_head=True, head_node_args=head)
    try:
        c.add_node(num_cpus=2, object_store_memory=OBJECT_STORE_BYTES)
        c.wait_for_nodes(timeout=60)
        yield c
    finally:
        c.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def rows_by_window(path: Path) -> dict[tuple[str, int], dict]:
    return {(r["file"], r["window"]): r for r in map(json.loads, path.read_text().splitlines())}


@pytest.mark.slow
def test_ray_cluster_equals_local_run(tmp_path, cluster, esc50, small_checkpoint):
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(200))
    paths = [*esc50.clips(3), corrupt, *esc50.clips(5)[3:]]
    common = ["classify", "--windows", "--format", "jsonl", "--no-progress", "--checkpoint", small_checkpoint]
    common += ["--hop-s", "1.0", "--top-k", "50", *paths]
    local = run_streamd(*common, "--out", tmp_path / "local.jsonl", timeout=300)
    on_ray = run_streamd(
        *common,
        *("--out", tmp_path / "ray.jsonl", "--ray", "--ray-address", cluster.address, "--ray-actors", "2"),
        timeout=300,
    )
    for result in (local, on_ray):
        assert result.returncode == 1, result.describe()
        errors = [line for line in result.stderr_lines if line.startswith("streamd: error:")]
        assert len(errors) == 1 and str(corrupt) in errors[0], result.describe()
        assert "Traceback" not in result.stderr, result.describe()
    mine, theirs = rows_by_window(tmp_path / "local.jsonl"), rows_by_window(tmp_path / "ray.jsonl")
    assert {f for f, _ in mine} == {str(p) for p in paths if p != corrupt}
    assert mine.keys() == theirs.keys()
    worst = 0.0
    for key, row in mine.items():
        other = theirs[key]
        assert (row["t_start"], row["t_end"]) == (other["t_start"], other["t_end"])
        scores = {item["label"]: item["score"] for item in other["labels"]}
        assert {item["label"] for item in row["labels"]} == scores.keys()
        worst = max(worst, *(abs(item["score"] - scores[item["label"]]) for item in row["labels"]))
    assert worst <= TOLERANCE
    done = [json.loads(line) for line in (tmp_path / "ray.jsonl.progress.jsonl").read_text().splitlines()]
    assert [d["file"] for d in done[1:]] == [str(p) for p in paths if p != corrupt]
