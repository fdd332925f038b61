from collections import Counter

from ackd_bench.data.build import plan_shards
from ackd_bench.data.shards import SampleRef
from ackd_bench.data.splits import assign_split, split_position

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def _refs(per_class):
    return [SampleRef(f"c{c}/img_{i:04d}.tif", c) for c, n in enumerate(per_class) for i in range(n)]


def _assignment(plans):
    return {ref.source_id: plan.split for plan in plans for ref in plan.refs}


def test_split_is_a_pure_function_of_salt_and_id():
    assert assign_split("River/River_1.tif", "s", FRACTIONS) == assign_split("River/River_1.tif", "s", FRACTIONS)
    # sha256("s\x00River/River_1.tif"), first 8 bytes big-endian / 2**64, computed by hand with hashlib
    import hashlib

    digest = hashlib.sha256(b"s\x00River/River_1.tif").digest()
    assert split_position("River/River_1.tif", "s") == int.from_bytes(digest[:8], "big") / 2**64
    positions = {sid: split_position(sid, "other-salt") for sid in ("a", "b", "c")}
    assert positions != {sid: split_position(sid, "s") for sid in ("a", "b", "c")}


def test_rebuild_gives_identical_plan():
    refs = _refs([50, 70, 30])
    first = plan_shards(refs, "ms", "salt", FRACTIONS, max_samples=16)
    second = plan_shards(list(reversed(refs)), "ms", "salt", FRACTIONS, max_samples=16)
    assert first == second
    assert max(len(p.refs) for p in first) == 16


def test_adding_a_sample_moves_no_other():
    refs = _refs([200, 200, 200])
    before = _assignment(plan_shards(refs, "ms", "salt", FRACTIONS, max_samples=64))
    after = _assignment(plan_shards(refs + [SampleRef("c1/img_new.tif", 1)], "ms", "salt", FRACTIONS, max_samples=64))
    assert set(after) - set(before) == {"c1/img_new.tif"}
    assert all(after[sid] == split for sid, split in before.items())


def test_every_class_is_split_by_the_fractions():
    refs = _refs([2000, 2000])
    assignment = _assignment(plan_shards(refs, "ms", "salt", FRACTIONS, max_samples=512))
    for c in (0, 1):
        counts = Counter(split for sid, split in assignment.items() if sid.startswith(f"c{c}/"))
        for split, fraction in FRACTIONS.items():
            assert abs(counts[split] / 2000 - fraction) < 0.03
