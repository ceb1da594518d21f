"""`model: tiny`: what it resolves to, and that every machine builds the same weights and tokenizers."""

import filecmp

import pytest
from safetensors.torch import load_file

from curation.config import CurationConfig
from curation.scores.openclip import OpenClipScorer
from curation.tiny_models import CACHE_ENV, resolve_tiny, tiny_folder, uses_tiny


def tiny_config(**sections) -> CurationConfig:
    data = CurationConfig().model_dump()
    data["clip"].update(enabled=True, model="tiny")
    data["caption"]["enabled"] = True
    for kind in ("coca", "vblip", "llm"):
        data["caption"][kind]["model"] = "tiny"
    for section, values in sections.items():
        data["caption"][section].update(values)
    return CurationConfig.model_validate(data)


def test_tiny_values_become_local_folders_the_real_loaders_read():
    config = resolve_tiny(tiny_config())
    assert config.clip.model == str(tiny_folder("clip"))
    assert config.clip.aesthetic.weights == str(tiny_folder("clip") / "aesthetic.safetensors")  # not LAION's
    assert config.caption.coca.model == f"local-dir:{tiny_folder('coca')}"
    assert config.caption.vblip.model == str(tiny_folder("vblip")) and config.caption.llm.model == str(
        tiny_folder("llm")
    )
    assert not uses_tiny(config)
    scorer = OpenClipScorer(config.clip.model_copy(update={"device": "cpu"}))
    assert scorer.width == 32 and scorer.aesthetic is not None


def test_stages_that_do_not_run_and_served_models_are_left_alone():
    config = tiny_config(vblip={"enabled": False}, llm={"backend": "http", "http": {"url": "http://127.0.0.1:1/v1"}})
    resolved = resolve_tiny(config)
    assert resolved.caption.vblip.model == "tiny"  # vblip is off: nothing built for it
    assert resolved.caption.llm.model == "tiny"  # the name a server knows its model by
    off = CurationConfig.model_validate({**config.model_dump(), "clip": {**config.clip.model_dump(), "enabled": False}})
    assert resolve_tiny(off).clip.model == "tiny"


@pytest.mark.parametrize("kind", ["coca", "vblip", "llm"])
def test_every_machine_builds_the_same_model(kind, tmp_path, monkeypatch):
    """Each node of a cluster builds its own copy: same seed, same weights, same tokenizer files."""
    folders = []
    for machine in ("a", "b"):
        monkeypatch.setenv(CACHE_ENV, str(tmp_path / machine))
        folders.append(tiny_folder(kind))
    first, second = folders
    assert first != second and (first / "complete").is_file()
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    for name in names:
        if name.endswith(".safetensors"):
            a, b = load_file(first / name), load_file(second / name)
            assert a.keys() == b.keys() and all(a[key].equal(b[key]) for key in a)
        elif not name.endswith(".json") or "config" not in name:  # configs may name their folder
            assert filecmp.cmp(first / name, second / name, shallow=False), name
