"""generate.backend 'folder': your own images become candidates keyed by their bytes."""

import pytest

from constructed import figure
from synthlora.backends.folder import FolderError, FolderGenerator, folder_plan


def test_keys_follow_bytes_so_adding_a_file_leaves_the_other_shots_alone(tmp_path):
    figure(1, size=32).save(tmp_path / "b.png")
    figure(2, size=32).save(tmp_path / "c.png")
    before = {s["source_file"]: s for s in folder_plan(tmp_path)["shots"]}
    figure(3, size=32).save(tmp_path / "a.png")  # sorts first
    (tmp_path / "notes.txt").write_text("not an image")
    after = {s["source_file"]: s for s in folder_plan(tmp_path)["shots"]}
    assert len(after) == 3
    for path, shot in before.items():
        assert after[path] == shot, "an unchanged file keeps its whole shot, not just its key"
    figure(4, size=32).save(tmp_path / "b.png")  # replaced: a new key
    assert folder_plan(tmp_path)["shots"][1]["key"] != before[str(tmp_path / "b.png")]["key"]


def test_generator_returns_the_file_and_refuses_a_stale_plan(tmp_path):
    figure(1, size=32).save(tmp_path / "a.png")
    shot = folder_plan(tmp_path)["shots"][0]
    image, extra = FolderGenerator().generate(shot)
    assert image.size == (32, 32) and extra == {"source": "folder", "origin": str(tmp_path / "a.png")}
    figure(2, size=32).save(tmp_path / "a.png")
    with pytest.raises(FolderError, match="changed since the plan was made"):
        FolderGenerator().generate(shot)


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FolderError, match=r"generate\.folder: .*nope is not a directory"):
        folder_plan(tmp_path / "nope")
    with pytest.raises(FolderError, match="holds no .png"):
        folder_plan(tmp_path)


def test_identical_files_are_one_shot_and_the_copies_are_listed(tmp_path):
    figure(1, size=32).save(tmp_path / "a.png")
    (tmp_path / "b_copy.png").write_bytes((tmp_path / "a.png").read_bytes())
    figure(2, size=32).save(tmp_path / "c.png")
    plan = folder_plan(tmp_path)
    assert [s["source_file"] for s in plan["shots"]] == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    assert plan["identical_files"] == {plan["shots"][0]["key"]: [str(tmp_path / "b_copy.png")]}


def test_an_unusable_file_fails_its_shot_naming_the_file(tmp_path):
    from synthlora.backends.base import ShotFailed

    (tmp_path / "notes.png").write_text("not an image")
    shot = folder_plan(tmp_path)["shots"][0]
    with pytest.raises(ShotFailed, match=r"notes\.png: not a picture"):
        FolderGenerator().generate(shot)
