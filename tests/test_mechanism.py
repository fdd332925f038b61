"""bench/mechanism.py's measurements (bench/toy_mechanism.py) on hand-computed values, and the
pairing's observation hook."""

import numpy as np
import pytest
import torch

from bench.toy_mechanism import (Hubs, chance_agreement, gallery_of, naive_agreement, pair_agreement,
                                 soft_label_separation, toy_subtypes)


def test_pair_agreement_and_chance_by_hand():
    student_sub = np.array([0, 0, 1, 2])
    student_labels = np.array([0, 0, 0, 1])
    gallery_sub = np.array([0, 1, 1, 2, 0])
    gallery_labels = np.array([0, 0, 0, 1, 1])
    # partners 0, 1, 2, 3: sub-types 0, 1, 1, 2 against 0, 0, 1, 2 -> 3 of 4 agree
    assert pair_agreement(np.array([0, 1, 2, 3]), student_sub, gallery_sub) == 0.75
    # class 0's gallery is 1/3 sub-type 0, 2/3 sub-type 1; class 1's is 1/2 sub-type 2:
    # students: 1/3, 1/3, 2/3, 1/2 -> mean 11/24
    assert chance_agreement(student_labels, student_sub, gallery_labels, gallery_sub) == pytest.approx(11 / 24)


def test_hubs_by_hand():
    # class 0: students 0-3 with partners 5, 5, 5, 6; class 1: students 4-5 with partners 7, 8
    labels = np.array([0, 0, 0, 0, 1, 1])
    student_sub = np.array([0, 1, 2, 0, 1, 1])
    gallery_sub = np.array([0, 0, 0, 0, 0, 2, 1, 1, 0])
    hubs = Hubs.of(np.array([5, 5, 5, 6, 7, 8]), labels, student_sub, gallery_sub)
    assert hubs.distinct == [2, 2] and hubs.largest == [3, 1] and hubs.students == [4, 2]
    # (student sub-type, partner sub-type): (0,2) (1,2) (2,2) (0,1) (1,1) (1,0)
    assert hubs.subtypes == [[0, 1, 1], [1, 1, 1], [0, 0, 1]]
    assert hubs.text().startswith("partners 2-2 per class of 2-4 students, largest hub 1-3")


def test_the_mechanism_reads_the_sub_types_of_the_gallery_the_profile_pairs_from():
    assert gallery_of("paper") == "train+val"  # options.ms_gallery: all (held out: test stays out)
    assert gallery_of("bench") == gallery_of("demo") == "train"


def test_soft_label_separation_by_hand():
    # temperature 1 and logits log(p): the soft labels are p itself
    p = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.3, 0.7]])
    labels, subtypes = np.array([0, 0, 0, 0]), np.array([0, 0, 1, 1])
    between, within = soft_label_separation(np.log(p), labels, subtypes, temperature=1.0)
    # sub-type means (0.7, 0.3) and (0.3, 0.7): L1 0.8; spreads 0.2, 0.2, 0, 0 -> 0.1
    assert (between, within) == pytest.approx((0.8, 0.1))
    # a temperature flattens: logits 3 log(p) at T=3 give the same soft labels
    assert soft_label_separation(3 * np.log(p), labels, subtypes) == pytest.approx((0.8, 0.1))


def test_sub_types_come_from_the_builds_own_recipe(mini_toy):
    from ackd_bench.data.dataset import ShardDataset
    from ackd_bench.data.recipe import Recipe
    from ackd_bench.data.toy import ToyGenerator

    rgb = ShardDataset(mini_toy, "rgb", "train")
    generator = ToyGenerator(Recipe.from_dict(rgb.manifest.recipe, "mini toy"))
    first = rgb.source_ids()[0].split("/")
    assert toy_subtypes(rgb)[0] == generator.scene("rgb", int(rgb.labels[0]), int(first[3])).subtype
    assert len(toy_subtypes(rgb)) == len(rgb)
    # the naive pairing redraws each epoch: over many epochs it agrees as often as chance
    ms = ShardDataset(mini_toy, "ms", "train")
    rgb_sub, ms_sub = toy_subtypes(rgb), toy_subtypes(ms)
    assert naive_agreement(rgb, ms, rgb_sub, ms_sub, seed=0, epochs=200) == \
        pytest.approx(chance_agreement(rgb.labels, rgb_sub, ms.labels, ms_sub), abs=0.01)


def test_observed_pairings_see_ssms_table_and_each_dynm_rematch(monkeypatch):
    from types import SimpleNamespace

    from ackd_bench.train import pairing

    galleries = [np.array([0, 1, 2])]
    # the student's logits agree with gallery sample 2's, so DynM moves both students there
    gallery_logits = torch.tensor([[5.0, -5.0], [0.0, 0.0], [-5.0, 5.0]])
    monkeypatch.setattr(pairing, "split_outputs", lambda *a, **k: {"logits": torch.tensor([[-5.0, 5.0]] * 2)})
    task = SimpleNamespace(module=SimpleNamespace(backbone=None), rgb_split=None, rt=None,
                           rgb_train=SimpleNamespace(labels=np.array([0, 0])))
    table = pairing.SemBridgePairing(np.array([0, 1]), [2], gallery_logits, galleries, gamma=3.0, batch_size=4)
    with pairing.observed_pairings() as tables:
        for epoch in range(4):
            table.for_epoch(epoch, task)
    assert [(e, p.tolist()) for e, p in tables] == [(0, [0, 1]), (2, [2, 2])]
    table.for_epoch(4, task)  # outside the block: not observed
    assert len(tables) == 2 and not pairing._OBSERVERS


def test_a_derived_profile_changes_only_the_options_and_schedule_it_names(tmp_path):
    from ackd_bench.train.profiles import load_profile
    from bench.variants import Variant, derived_profile

    assert derived_profile("demo", {}, tmp_path) == "demo"  # nothing changed: the profile itself
    path = derived_profile("paper", {"dynm_divergence": "student-teacher"}, tmp_path, schedule="demo")
    derived, paper, demo = load_profile(path), load_profile("paper"), load_profile("demo")
    assert derived["options"] == {**paper["options"], "dynm_divergence": "student-teacher"}
    assert derived["student"]["epochs"] == demo["student"]["epochs"] and derived["seed"] == demo["seed"]
    assert derived["student"]["loss_weights"] == paper["student"]["loss_weights"]
    variant = Variant.parse("no-ot1=demo+dynm_assignment=argmin/ot1", tmp_path)
    assert variant.ablation == ("ot1",) and load_profile(variant.profile)["options"]["dynm_assignment"] == "argmin"
