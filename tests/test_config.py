from pathlib import Path

import pytest
import yaml

from curation.config import CurationConfig
from curation.config_io import ConfigError, load_config, parse_override, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_svd_yaml_spells_out_the_defaults():
    assert load_config(CurationConfig, CONFIGS / "curation" / "svd.yaml") == CurationConfig()


@pytest.mark.parametrize("path", sorted((CONFIGS / "train").glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_training_configs_load(path):
    from svd.train.config import TrainConfig

    config = load_config(TrainConfig, path)
    config.model.resolved_parameterisation()
    if path.name == "svd_image_to_video.yaml":  # SVD's size, in landscape, portrait and square
        assert [(b.height, b.width) for b in config.data.buckets] == [(576, 1024), (1024, 576), (768, 768)]


@pytest.mark.parametrize("name", ["svd.yaml", "tiny.yaml"])
def test_shipped_curation_configs_load(name):
    config = load_config(CurationConfig, CONFIGS / "curation" / name)
    assert config.split.enabled


def test_file_values_and_defaults(tmp_path):
    config = load_config(
        CurationConfig, write(tmp_path, "split:\n  min_seconds: 3\ncaption:\n  vblip:\n    num_frames: 4\n")
    )
    assert config.split.min_seconds == 3.0
    assert config.split.max_seconds == 10.0  # untouched keys keep their defaults
    assert config.caption.vblip.num_frames == 4
    assert config.caption.coca.model == "coca_ViT-L-14"


def test_overrides_are_typed_like_yaml(tmp_path):
    config = load_config(
        CurationConfig,
        write(tmp_path, "split:\n  min_seconds: 3\n"),
        [
            "split.min_seconds=1.5",
            "motion.enabled=false",
            "caption.vblip.num_frames=16",
            "ray.address=ray://head:10001",
        ],
    )
    assert config.split.min_seconds == 1.5
    assert config.motion.enabled is False
    assert config.caption.vblip.num_frames == 16
    assert config.ray.address == "ray://head:10001"


def test_later_overrides_win():
    config = load_config(CurationConfig, None, ["split.max_seconds=20", "split.max_seconds=30"])
    assert config.split.max_seconds == 30


def test_override_to_null():
    assert load_config(CurationConfig, None, ["filter.max_text_area=null"]).filter.max_text_area is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.b=3", (["a", "b"], 3)),
        ("a=x=y", (["a"], "x=y")),
        ("a.b=[1, 2]", (["a", "b"], [1, 2])),
        ("a=", (["a"], None)),
        ("a=[unclosed", (["a"], "[unclosed")),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("split:\n  min_secs: 3\n", "run.yaml: unknown key split.min_secs; did you mean split.min_seconds?"),
        ("spilt:\n  enabled: true\n", "run.yaml: unknown key spilt; did you mean split?"),
        ("split:\n  min_seconds: soon\n", "run.yaml: split.min_seconds: Input should be a valid number"),
        ("split:\n  min_seconds: -1\n", "run.yaml: split.min_seconds: Input should be greater than 0"),
        ("split: 3\n", "run.yaml: split: Input should be a valid dictionary"),
        ("split:\n  min_seconds: [1\n", "run.yaml: invalid YAML at line"),
        ("- a\n- b\n", "run.yaml: expected a mapping of sections at the top level, got list"),
    ],
)
def test_bad_file_gives_one_line_naming_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_config(CurationConfig, write(tmp_path, text))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_several_problems_are_counted_on_one_line(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(CurationConfig, write(tmp_path, "split:\n  min_seconds: x\n  max_seconds: y\n"))
    assert str(error.value).endswith("(and 1 more problem)")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file"):
        load_config(CurationConfig, tmp_path / "nope.yaml")


def test_empty_file_means_defaults(tmp_path):
    assert load_config(CurationConfig, write(tmp_path, "")) == CurationConfig()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("split.min_secs=3", "--set split.min_secs=3: unknown key split.min_secs; did you mean split.min_seconds?"),
        ("split.min_seconds=soon", "--set split.min_seconds=soon: split.min_seconds: Input should be a valid number"),
        ("split.min_seconds.x=1", "--set split.min_seconds.x=1: split.min_seconds is a value, not a section"),
        ("split.min_seconds", "--set split.min_seconds: expected KEY=VALUE"),
        ("=3", "--set =3: expected KEY=VALUE"),
    ],
)
def test_bad_override_names_the_argument(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(CurationConfig, None, [override])
    assert message in str(error.value)


def test_saved_config_reloads_identically(tmp_path):
    config = load_config(CurationConfig, None, ["split.min_seconds=2.5", "ray.address=auto"])
    save_config(config, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["split"]["min_seconds"] == 2.5
    assert load_config(CurationConfig, tmp_path / "config.yaml") == config
