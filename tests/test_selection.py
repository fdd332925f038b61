"""Capped, class-balanced subsets (M2S-GL) and the BigEarthNet CORINE table."""

from ackd_bench.data.selection import balance_multilabel, cap_per_class, selection_rank
from ackd_bench.data.shards import SampleRef


def _ranked(ids, salt="s"):
    return sorted(ids, key=lambda i: selection_rank(i, salt))


def test_cap_per_class_keeps_the_lowest_ranked_and_is_stable():
    refs = [SampleRef(f"a/{i}", i % 2) for i in range(10)]
    kept = cap_per_class(refs, 3, "s")
    assert [r.source_id for r in kept if r.label == 0] == _ranked([f"a/{i}" for i in range(0, 10, 2)])[:3]
    assert len(kept) == 6 and cap_per_class(refs, None, "s") == refs
    # adding a file can only displace the one now ranked just below the cap
    grown = cap_per_class(refs + [SampleRef("a/new", 0)], 3, "s")
    assert len({r.source_id for r in kept} - {r.source_id for r in grown}) <= 1


def test_balance_multilabel_fills_rare_classes_first():
    # class 2 is rare (2 carriers); class 0 is common (6 carriers), two of them shared with class 2
    refs = [SampleRef(f"p/{i}", 0, (0,)) for i in range(4)] + [SampleRef("p/r1", 0, (0, 2)),
                                                              SampleRef("p/r2", 0, (0, 2))]
    chosen = {r.source_id: r for r in balance_multilabel(refs, 3, cap=3, salt="s")}
    # both rare carriers are drawn for class 2 and count towards class 0's cap of 3: one more for class 0
    assert chosen["p/r1"].label == 2 and chosen["p/r2"].label == 2 and chosen["p/r1"].multilabel == (0, 2)
    assert len(chosen) == 3
    assert [sid for sid, r in chosen.items() if r.label == 0] == _ranked([f"p/{i}" for i in range(4)])[:1]
    # without a cap everything that carries a class is kept once
    assert len(balance_multilabel(refs, 3, cap=None, salt="s")) == 6


def test_corine_table_matches_torchgeo():
    from torchgeo.datasets.bigearthnet import BigEarthNet, BigEarthNetV2 as TorchgeoV2

    from ackd_bench.data.sources.bigearthnet import CLC_CLASSES

    assert [name for _, name in CLC_CLASSES] == BigEarthNet.class_sets[43]
    # every code torchgeo maps to the 19 classes is ours, with the 43->19 conversion torchgeo uses
    ours = {code: index for index, (code, _) in enumerate(CLC_CLASSES)}
    for code, class19 in TorchgeoV2.clc_codes.items():
        assert class19 in [v for k, v in BigEarthNet.label_converter.items() if k == ours[code]]
