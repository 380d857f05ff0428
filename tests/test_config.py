"""Settings precedence: defaults < config file < env < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctir_es.config import Settings, load_settings
from ctir_es.errors import ConfigError


def test_defaults_work_offline(tmp_path: Path) -> None:
    s = load_settings(env={}, config_file=tmp_path / "absent.toml")
    assert s.text_model == "all-MiniLM-L6-v2" and s.es_url is None
    assert s.store.name == "products.db"


def test_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('text_model = "from-file"\nbatch_size = 8\n[elasticsearch]\nurl = "http://file:9200"\n'
                   'api_key = "secret"\n')
    s = load_settings(env={"CTIR_ES_TEXT_MODEL": "from-env"}, config_file=cfg)
    assert s.text_model == "from-env" and s.batch_size == 8
    assert s.es_url == "http://file:9200" and s.es_options == {"api_key": "secret"}
    s2 = s.with_overrides(text_model="from-flag", store=None)
    assert s2.text_model == "from-flag" and s2.store == s.store


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch_sise = 8\n")
    with pytest.raises(ConfigError, match="unknown setting 'batch_sise'"):
        load_settings(env={}, config_file=cfg)
    cfg.write_text("batch_size = 'many'\n")
    with pytest.raises(ConfigError, match="bad value"):
        load_settings(env={}, config_file=cfg)
    cfg.write_text("not toml [")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(env={}, config_file=cfg)


def test_use_images_switch() -> None:
    assert Settings().use_images
    assert not Settings(clip_weights="none").use_images


def test_vector_index_reaches_the_embedded_store(tmp_path: Path) -> None:
    from ctir_es.search import open_store

    s = load_settings(env={"CTIR_ES_VECTOR_INDEX": "sq8", "CTIR_ES_STORE": str(tmp_path / "s.db")},
                      config_file=tmp_path / "absent.toml")
    assert open_store(s).vector_index == "sq8"  # type: ignore[attr-defined]


def test_models_dir_from_the_config_file_reaches_the_encoders(tmp_path: Path) -> None:
    from ctir_es.encoders.registry import EncoderConfig

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'models_dir = "{(tmp_path / "mine").as_posix()}"\n')
    s = load_settings(env={}, config_file=cfg)
    assert EncoderConfig.from_settings(s).resolved_models_dir == tmp_path / "mine"
