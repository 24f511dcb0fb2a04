"""Shipped weights: listed in SHA256SUMS, described by a card with the same digest, small, loadable safely."""

import hashlib
import json

from safetensors import safe_open

from cgmbench.weights import shipped, shipped_dir


def test_sha256sums_cards_and_size_budget():
    folder = shipped_dir()
    files = sorted(p.name for p in folder.glob("*.safetensors"))
    sums = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert sorted(sums) == files and len(files) >= 8
    total = 0
    for name in files:
        data = (folder / name).read_bytes()
        total += len(data)
        digest = hashlib.sha256(data).hexdigest()
        assert digest == sums[name], name
        card = json.loads((folder / name.replace(".safetensors", ".json")).read_text())
        assert card["sha256"] == digest, name
        assert shipped(name)[1] == digest
        with safe_open(str(folder / name), "pt") as f:  # a plain tensor file, no pickle
            assert len(list(f.keys())) > 0
    assert total <= 30 * 1024 * 1024, f"shipped weights take {total / 2**20:.1f} MiB, over the 30 MB budget"
