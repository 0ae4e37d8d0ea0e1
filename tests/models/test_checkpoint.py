"""Checkpoint files: atomic writes, weights_only loads, clear errors for missing, partial, corrupted or
foreign files, RNG states that round-trip."""

import os
import random

import numpy as np
import pytest
import torch

from exprflow.errors import ExprflowInputError
from exprflow.training.checkpoint import FORMAT_KEY, read_checkpoint, rng_state, set_rng_state, write_checkpoint


def _checkpoint(step: int = 3) -> dict:
    return {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "loops": {"fit": {"x": 1}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3}]}], "global_step": step,
            "history": [(0, 1.5), (1, 1.25)]}


def test_round_trip_leaves_no_temporary_file(tmp_path):
    path = write_checkpoint(_checkpoint(), tmp_path / "ck" / "flow.ckpt")
    loaded = read_checkpoint(path)
    assert torch.equal(loaded["state_dict"]["w"], torch.arange(6.0).reshape(2, 3))
    assert loaded["global_step"] == 3 and loaded[FORMAT_KEY] == 1
    assert [p.name for p in path.parent.iterdir()] == ["flow.ckpt"]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = write_checkpoint(_checkpoint(step=5), tmp_path / "flow.ckpt")
    with pytest.raises(Exception):
        write_checkpoint({**_checkpoint(step=9), "bad": lambda: 0}, path)  # a function cannot be saved
    assert read_checkpoint(path)["global_step"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["flow.ckpt"]


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = write_checkpoint(_checkpoint(), tmp_path / "flow.ckpt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExprflowInputError, match="corrupted or only partly written") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "--overwrite" in str(info.value)


def test_garbage_and_pickled_code_are_refused(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(256))
    with pytest.raises(ExprflowInputError, match="corrupted"):
        read_checkpoint(garbage)
    code = tmp_path / "code.ckpt"
    torch.save({FORMAT_KEY: 1, "obj": random.Random(0)}, code)  # an arbitrary Python object, not tensors
    with pytest.raises(ExprflowInputError, match="pickled code"):
        read_checkpoint(code)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(ExprflowInputError, match="No checkpoint at"):
        read_checkpoint(tmp_path / "nope.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ExprflowInputError, match="not an exprflow training checkpoint"):
        read_checkpoint(foreign)
    partial = tmp_path / "partial.ckpt"
    torch.save({FORMAT_KEY: 1, "state_dict": {}}, partial)
    with pytest.raises(ExprflowInputError, match="incomplete"):
        read_checkpoint(partial)


def test_rng_states_round_trip():
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = rng_state()
    first = (torch.rand(4), np.random.rand(3), np.random.randn(), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_rng_state(state)
    again = (torch.rand(4), np.random.rand(3), np.random.randn(), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2] and first[3] == again[3]


def test_rng_state_given_as_a_view_is_restored_from_its_own_bytes():
    """A row of a gathered (ranks x bytes) tensor is a view; torch.set_rng_state alone would ignore its
    offset and read rank 0's bytes (or crash)."""
    torch.manual_seed(5)
    mine = rng_state()
    expected = torch.rand(3)
    torch.manual_seed(6)
    other = rng_state()
    stacked = {k: torch.stack([other[k], mine[k]]) for k in mine}
    set_rng_state({k: v[1] for k, v in stacked.items()})
    assert torch.equal(torch.rand(3), expected)


def test_resume_from_a_corrupted_checkpoint_fails_before_training(tmp_path, counts_adata):
    from exprflow.models import StateFlow

    path = tmp_path / "flow.ckpt"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    model = StateFlow(counts_adata, backbone_kwargs={"hidden": 8, "depth": 1})
    with pytest.raises(ExprflowInputError, match="flow.ckpt is corrupted"):
        model.train(max_steps=5, batch_size=16, progress_bar=False, checkpoint_dir=str(tmp_path), resume=True)
