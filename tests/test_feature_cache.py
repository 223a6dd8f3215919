"""Feature cache: round trip, atomic writes under interruption, corruption, concurrency."""

from __future__ import annotations

import json
import multiprocessing as mp
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from bench import feature_cache as fc
from bench.feature_cache import CacheCorruptionWarning, FeatureCache, feature_key


def _items(n: int, dim: int = 16, seed: int = 0, prefix: str = "k") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        feature_key("ident", "id", "", f"{prefix}{i}"): rng.normal(size=dim).astype(np.float32)
        for i in range(n)
    }


def test_put_get_round_trip(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    items = _items(5)
    half = {k: v.astype(np.float16) for k, v in _items(2, seed=1, prefix="h").items()}
    cache.put_many(items, backbone="alexnet")
    cache.put_many(half, backbone="timm/resnet18")
    got = cache.get_many([*items, *half, "0" * 64])
    assert set(got) == set(items) | set(half)
    for k, v in {**items, **half}.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
    info = cache.info()
    assert info["entries"] == 7 and info["bytes"] > 0
    assert info["backbones"]["alexnet"]["entries"] == 5
    assert info["backbones"]["timm/resnet18"]["entries"] == 2
    assert cache.clear("alexnet") == 5
    assert set(cache.get_many([*items, *half])) == set(half)
    assert cache.clear() == 2 and cache.info()["entries"] == 0


def test_default_root_follows_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LEUKOBENCH_CACHE", str(tmp_path / "c"))
    assert FeatureCache().dir == tmp_path / "c" / "features"


def test_key_depends_on_every_part() -> None:
    base = feature_key("a", "id", "", "d")
    assert len(base) == 64
    others = [
        feature_key("b", "id", "", "d"),
        feature_key("a", "shift:dx=1", "", "d"),
        feature_key("a", "id", "mask[0,0,1,1]", "d"),
        feature_key("a", "id", "", "e"),
    ]
    assert len({base, *others}) == 5


def test_interrupted_write_leaves_no_entry(tmp_path: Path, monkeypatch) -> None:
    cache = FeatureCache(tmp_path)
    items = _items(3)

    def interrupted(src, dst):  # Ctrl-C between writing the temp file and renaming it
        raise KeyboardInterrupt

    monkeypatch.setattr(fc.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.put_many(items)
    monkeypatch.undo()
    assert cache.get_many(items) == {}
    assert not [p for p in (tmp_path / "features").rglob("*") if p.is_file()]
    cache.put_many(items)  # the next run simply writes it
    assert set(cache.get_many(items)) == set(items)


def _pack_of(cache: FeatureCache, key: str) -> Path:
    cache.get_many([key])
    return cache._index[key][0].pack


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_corrupt_entry_is_reported_and_dropped(tmp_path: Path, damage: str) -> None:
    cache = FeatureCache(tmp_path)
    items = _items(2)
    bad, good = list(items)
    cache.put_many({bad: items[bad]})  # one pack each
    cache.put_many({good: items[good]})
    path = _pack_of(cache, bad)
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[-3] ^= 0xFF
    elif damage == "truncate":
        blob = blob[:-8]
    else:
        blob = bytearray(b"not a cache entry")
    path.write_bytes(bytes(blob))
    fresh = FeatureCache(tmp_path)  # another run: finds the damage when it reads
    with pytest.warns(CacheCorruptionWarning, match="corrupt|unreadable"):
        got = fresh.get_many(items)
    assert set(got) == {good}
    assert not path.exists()
    assert fresh.corrupt == ([] if damage == "garbage" else [bad])  # garbage: keys unknown
    assert set(FeatureCache(tmp_path).get_many(items)) == {good}  # reported once, then gone


def test_bad_entry_is_cut_out_of_its_pack(tmp_path: Path) -> None:
    """The pack is rewritten without the bad entry; its neighbours stay cached."""
    cache = FeatureCache(tmp_path)
    items = _items(3)
    cache.put_many(items, backbone="alexnet")
    keys = list(items)
    slot = _pack_of(cache, keys[1]) and cache._index[keys[1]][0]
    blob = bytearray(slot.pack.read_bytes())
    blob[slot.offset] ^= 0x01
    slot.pack.write_bytes(bytes(blob))
    with pytest.warns(CacheCorruptionWarning, match="corrupt"):
        got = FeatureCache(tmp_path).get_many(items)
    assert set(got) == {keys[0], keys[2]}
    again = FeatureCache(tmp_path)
    assert set(again.get_many(items)) == {keys[0], keys[2]} and not again.corrupt
    assert again.info()["backbones"]["alexnet"]["entries"] == 2


def _edit_header(path: Path, edit) -> None:
    """Rewrite a pack's header JSON through ``edit`` (its CRC left as it was)."""
    blob = path.read_bytes()
    (hlen,) = struct.unpack("<I", blob[4:8])
    header = json.loads(blob[12 : 12 + hlen])
    edit(header)
    raw = json.dumps(header, separators=(",", ":")).encode()
    path.write_bytes(blob[:4] + struct.pack("<I", len(raw)) + blob[8:12] + raw + blob[12 + hlen :])


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h["entries"][0].__setitem__(4, ">f4"),  # one bit: "<f4" -> ">f4"
        lambda h: h["entries"][0].__setitem__(4, "<i4"),  # same size, not a float
        lambda h: h["entries"][0].__setitem__(4, "|O"),  # object arrays
        lambda h: (  # two entries swap places: each CRC still matches its payload
            h["entries"][0][1:4],
            h["entries"][1].__setitem__(slice(1, 4), h["entries"][0][1:4]),
        ),
    ],
    ids=["endianness", "int-dtype", "object-dtype", "swapped-entries"],
)
def test_a_damaged_pack_header_is_caught_and_recomputed(tmp_path: Path, edit) -> None:
    cache = FeatureCache(tmp_path)
    items = _items(3)
    cache.put_many(items, backbone="alexnet")
    path = _pack_of(cache, next(iter(items)))
    _edit_header(path, edit)
    with pytest.warns(CacheCorruptionWarning, match="unreadable.*header checksum"):
        assert FeatureCache(tmp_path).get_many(items) == {}
    assert not path.exists()  # reported once, then gone


def _v1_pack(path: Path, items: dict[str, np.ndarray], entry_dtype: str | None = None) -> None:
    """A pack as the previous version wrote it (``LBP1``: no header CRC)."""
    entries, payloads, at = [], [], 0
    for key, arr in items.items():
        payload = arr.tobytes()
        entries.append([key, at, len(payload), zlib.crc32(payload), entry_dtype or arr.dtype.str,
                        list(arr.shape)])  # fmt: skip
        payloads.append(payload)
        at += len(payload)
    header = json.dumps({"backbone": "alexnet", "entries": entries}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        fc.PACK_MAGIC_V1 + struct.pack("<I", len(header)) + header + b"".join(payloads)
    )


def test_packs_of_the_previous_version_are_read_and_checked(tmp_path: Path) -> None:
    items = _items(3)
    _v1_pack(tmp_path / "features" / "packs" / f"old{fc.PACK_SUFFIX}", items)
    got = FeatureCache(tmp_path).get_many(items)
    assert all(np.array_equal(got[k], v) for k, v in items.items())
    bad = tmp_path / "features" / "packs" / f"bad{fc.PACK_SUFFIX}"
    _v1_pack(bad, _items(2, prefix="b"), entry_dtype=">f4")  # no header CRC: the dtype check
    with pytest.warns(CacheCorruptionWarning, match="not a little-endian float"):
        assert FeatureCache(tmp_path).get_many(_items(2, prefix="b")) == {}
    assert not bad.exists()


def test_a_folder_named_like_a_pack_is_ignored(tmp_path: Path, recwarn) -> None:
    cache = FeatureCache(tmp_path)
    items = _items(2)
    cache.put_many(items)
    (tmp_path / "features" / "packs" / f"stray{fc.PACK_SUFFIX}").mkdir()
    assert set(FeatureCache(tmp_path).get_many(items)) == set(items)
    assert not [w for w in recwarn if issubclass(w.category, CacheCorruptionWarning)]


def test_one_pack_per_batch(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put_many(_items(64), backbone="alexnet")
    cache.put_many(_items(64, seed=1, prefix="b"), backbone="alexnet")
    files = [p for p in (tmp_path / "features").rglob("*") if p.is_file()]
    assert len(files) == 2 and all(p.suffix == fc.PACK_SUFFIX for p in files)
    assert cache.info()["packs"] == 2 and cache.count([*_items(64)]) == 64


def _legacy_entry(array: np.ndarray, backbone: str) -> bytes:
    """An entry file as versions before packs wrote it (MAGIC, header length, JSON, payload)."""
    payload = np.ascontiguousarray(array).tobytes()
    header = json.dumps(
        {"backbone": backbone, "dtype": array.dtype.str, "shape": list(array.shape),
         "crc32": zlib.crc32(payload)},
        separators=(",", ":"),
    ).encode()  # fmt: skip
    return fc.MAGIC + struct.pack("<I", len(header)) + header + payload


def test_entries_of_earlier_versions_are_still_read(tmp_path: Path) -> None:
    """One-file-per-key entries (before packs): read, counted, cleared, checked."""
    cache = FeatureCache(tmp_path)
    old = _items(3, prefix="old")
    for key, vec in old.items():
        path = cache._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_legacy_entry(vec, "alexnet"))
    new = _items(2, prefix="new")
    cache.put_many(new, backbone="alexnet")
    got = cache.get_many([*old, *new])
    assert all(np.array_equal(got[k], v) for k, v in {**old, **new}.items())
    assert cache.count([*old, *new]) == 5 and cache.info()["entries"] == 5
    first = next(iter(old))
    cache._path(first).write_bytes(b"garbage")
    with pytest.warns(CacheCorruptionWarning, match="corrupt"):
        assert first not in FeatureCache(tmp_path).get_many(old)
    assert cache.clear("alexnet") == 4
    assert cache.info()["entries"] == 0


def test_cleared_elsewhere_is_noticed(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    items = _items(4)
    cache.put_many(items, backbone="alexnet")
    assert len(cache.get_many(items)) == 4
    assert FeatureCache(tmp_path).clear("alexnet") == 4  # another process
    assert cache.get_many(items) == {} and cache.count(items) == 0


def _writer(root: str, seed: int, n: int) -> int:
    cache = FeatureCache(root)
    shared = _items(n, dim=256)  # identical in both processes
    own = _items(n, dim=256, seed=seed + 10, prefix=f"p{seed}-")
    for _ in range(3):
        cache.put_many(shared, backbone="shared")
        cache.put_many(own, backbone=f"own{seed}")
        cache.get_many(shared)
    return len(cache.get_many({**shared, **own}))


def test_two_concurrent_writers(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        counts = pool.starmap(_writer, [(str(tmp_path), 1, 150), (str(tmp_path), 2, 150)])
    assert counts == [300, 300]
    cache = FeatureCache(tmp_path)
    shared = _items(150, dim=256)
    got = cache.get_many(shared)
    assert all(np.array_equal(got[k], v) for k, v in shared.items())
    assert cache.info()["entries"] == 450 and not cache.corrupt


def test_pack_writes_finish_short_gathered_writes(tmp_path, monkeypatch) -> None:
    """A short ``writev`` (allowed by POSIX) still leaves a whole, readable pack."""
    import os

    import bench.feature_cache as fc

    def short_writev(fd, bufs):  # the first buffer and half of the second, as a short write
        return os.write(fd, bytes(bufs[0])) + os.write(fd, bytes(bufs[1])[: len(bufs[1]) // 2])

    monkeypatch.setattr(fc.os, "writev", short_writev)
    cache = FeatureCache(tmp_path)
    vecs = {f"k{i}": np.arange(i, i + 50, dtype=np.float32) for i in range(5)}
    cache.put_many(vecs, "bb")
    fresh = FeatureCache(tmp_path)
    got = fresh.get_many(list(vecs))
    assert set(got) == set(vecs)
    for key, vec in vecs.items():
        np.testing.assert_array_equal(got[key], vec)
