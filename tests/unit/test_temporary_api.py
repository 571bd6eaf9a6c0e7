"""The cheap guess, made before Prefect is imported, whether a Prefect API is configured (and so
whether kbackup starts its temporary API while it imports the rest)."""

from __future__ import annotations

from pathlib import Path

from kbackup.temporary_api import api_maybe_configured


def test_an_api_url_in_the_environment_is_configured(tmp_path: Path) -> None:
    assert api_maybe_configured({"PREFECT_API_URL": "http://prefect:4200/api", "PREFECT_HOME": str(tmp_path)})


def test_no_url_and_no_profiles_file_is_not_configured(tmp_path: Path) -> None:
    assert not api_maybe_configured({"PREFECT_HOME": str(tmp_path)})
    assert not api_maybe_configured({"PREFECT_API_URL": "", "PREFECT_HOME": str(tmp_path)})


def test_a_profile_naming_an_api_url_counts_as_configured(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text(
        'active = "remote"\n\n[profiles.remote]\nPREFECT_API_URL = "http://prefect:4200/api"\n'
    )
    assert api_maybe_configured({"PREFECT_HOME": str(tmp_path)})
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text('active = "local"\n\n[profiles.local]\n')
    assert not api_maybe_configured({"PREFECT_HOME": str(tmp_path), "PREFECT_PROFILES_PATH": str(elsewhere)})
