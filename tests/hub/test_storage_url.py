"""The storage URL picks the adapter: ``sqlite:///PATH`` (SQLAlchemy's spelling), a plain path, memory;
the data folder's default is the same ``hub.db`` as before URLs existed; a bad URL names the field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloud_hub import cli
from cloud_hub._exceptions import ConfigError, InputError
from cloud_hub.config import DATABASE_ENV, HubConfig, database_from_toml, init_hub, resolve_database
from cloud_hub.forwarding import load_config
from cloud_hub.storage import Store, open_storage, sqlite_path, sqlite_url
from cloud_hub.storage.sqlite import SQLiteStorage


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///hub.db", "hub.db"),
        ("sqlite:///data/hub.db", "data/hub.db"),
        ("sqlite:////var/lib/storesync/hub.db", "/var/lib/storesync/hub.db"),
        ("sqlite://", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_urls_name_the_file(url: str, path: str):
    assert sqlite_path(url) == path


@pytest.mark.parametrize("path", ["hub.db", "data/hub.db", "/var/lib/storesync/hub.db"])
def test_sqlite_url_round_trips_a_path(path: str):
    assert sqlite_path(sqlite_url(path)) == path


@pytest.mark.parametrize("url", ["sqlite://host/hub.db", "sqlite:///hub.db?mode=ro", "mysql://h/db", "hub://x"])
def test_a_bad_storage_url_is_an_input_error_naming_the_field(url: str):
    with pytest.raises(InputError) as info:
        open_storage(url)
    assert info.value.field == "database" and url.split("://")[0] in info.value.message


def test_open_storage_by_url_and_by_plain_path_is_the_same_file(tmp_path: Path):
    db = open_storage(sqlite_url(tmp_path / "hub.db"))
    assert isinstance(db, SQLiteStorage) and db.path == str(tmp_path / "hub.db")
    with db.transaction() as tx:
        tx.insert_store(Store("S1", "UTC", "2026-11-22T09:00:00.000Z"))
    db.close()
    again = open_storage(tmp_path / "hub.db")
    with again.snapshot() as tx:
        assert tx.get_store("S1") is not None
    again.close()


def test_the_data_folder_default_is_hub_db_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLOUD_HUB_ADMIN_TOKEN", raising=False)
    config = HubConfig(data_dir=Path("data"))
    assert config.storage_url == "sqlite:///data/hub.db"
    hub = init_hub(config)
    try:
        assert isinstance(hub.storage, SQLiteStorage) and hub.storage.path == os.path.join("data", "hub.db")
    finally:
        hub.close()
    assert (tmp_path / "data" / "hub.db").is_file()
    absolute = HubConfig(data_dir=tmp_path / "abs")
    assert absolute.storage_url == f"sqlite:///{tmp_path}/abs/hub.db"
    assert sqlite_path(absolute.storage_url) == str(tmp_path / "abs" / "hub.db")


def test_an_explicit_database_url_wins_over_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CLOUD_HUB_ADMIN_TOKEN", raising=False)
    other = tmp_path / "elsewhere.db"
    hub = init_hub(HubConfig(data_dir=tmp_path / "data", database=sqlite_url(other)))
    try:
        assert isinstance(hub.storage, SQLiteStorage) and hub.storage.path == str(other)
    finally:
        hub.close()
    assert other.is_file() and not (tmp_path / "data" / "hub.db").exists()


def test_the_database_comes_from_the_flag_then_the_env_then_hub_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    toml = tmp_path / "hub.toml"
    toml.write_text(
        '[storage]\ndatabase = "postgresql://h/from-toml"\n\n[[sinks]]\nname = "x"\nkind = "jsonl"\npath = "e.jsonl"\n'
    )
    monkeypatch.delenv(DATABASE_ENV, raising=False)
    assert resolve_database(None, None) is None
    assert resolve_database(None, toml) == "postgresql://h/from-toml"
    monkeypatch.setenv(DATABASE_ENV, "postgresql://h/from-env")
    assert resolve_database(None, toml) == "postgresql://h/from-env"
    assert resolve_database("sqlite:///flag.db", toml) == "sqlite:///flag.db"
    assert [s.name for s in load_config(toml, tmp_path).sinks] == ["x"]  # the sink loader accepts [storage]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[storage]\ndatabse = "x"\n', "unknown field 'databse'"),
        ("[storage]\ndatabase = 5\n", "database must be a storage URL"),
        ('storage = "x"\n', "[storage] must be a table"),
    ],
)
def test_a_bad_storage_table_names_the_field(tmp_path: Path, text: str, words: str):
    toml = tmp_path / "hub.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError) as info:
        database_from_toml(toml)
    assert words in info.value.message and str(toml) in info.value.message


def test_cli_database_flag_reaches_the_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.delenv(DATABASE_ENV, raising=False)
    target = tmp_path / "chosen.db"
    assert cli.main(["migrate", "--data-dir", str(tmp_path / "data"), "--database", sqlite_url(target)]) == 0
    assert capsys.readouterr().out.strip() == "sqlite: schema version 3 of 3; applied now: 1, 2, 3"
    assert target.is_file() and not (tmp_path / "data" / "hub.db").exists()
    assert cli.main(["migrate", "--data-dir", str(tmp_path / "data")]) == 2  # only init creates a (SQLite) hub
    assert "is not a hub data folder" in capsys.readouterr().err
    assert not (tmp_path / "data" / "hub.db").exists()
    assert cli.main(["init", "--data-dir", str(tmp_path / "data")]) == 0
    capsys.readouterr()
    assert cli.main(["migrate", "--data-dir", str(tmp_path / "data")]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (tmp_path / "data" / "hub.db").is_file()
    assert cli.main(["migrate", "--database", "mysql://h/db"]) == 2
    assert "storage URL scheme 'mysql' is not supported" in capsys.readouterr().err
