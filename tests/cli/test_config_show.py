"""``golem config show [--json]``: each setting with its value and source, the
paths in use, credentials redacted; a bad setting is the usual error."""

from __future__ import annotations

import json

from tests.conftest import GolemEnv, assert_ok, run_golem

P = "GOLEM_REQUESTOR_"


def _show(golem_env: GolemEnv, **env: str) -> dict:  # type: ignore[type-arg]
    done = run_golem(golem_env, "config", "show", "--json", extra_env=env)
    assert_ok(done)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_sources_values_and_paths(golem_env: GolemEnv) -> None:
    # conftest sets BASE_DIR and DISCOVERY_URL; the rest are defaults.
    shown = _show(golem_env)
    settings = shown["settings"]
    assert settings["discovery_url"] == {
        "value": "http://127.0.0.1:9",
        "source": "environment",
        "variable": f"{P}DISCOVERY_URL",
        "derived_from": None,
    }
    assert settings["environment"]["value"] == "production"
    assert settings["environment"]["source"] == "default"
    assert settings["base_dir"]["value"] == str(golem_env.base_dir)
    assert settings["db_path"] == {
        "value": str(golem_env.db_path),
        "source": "default",
        "variable": f"{P}DB_PATH",
        "derived_from": f"{P}BASE_DIR",
    }
    paths = {p["what"]: p for p in shown["paths"] if p["what"] != "ssh_key"}
    assert paths["database"]["path"] == str(golem_env.db_path)
    assert paths["known_hosts"]["path"] == str(golem_env.ssh_dir / "known_hosts")
    assert paths["ssh_config"]["path"] == str(golem_env.ssh_dir / "config")
    keys = [p["path"] for p in shown["paths"] if p["what"] == "ssh_key"]
    assert keys[0] == str(golem_env.home / ".ssh" / "id_ed25519")
    assert keys[-1] == str(golem_env.ssh_dir / "id_rsa")
    assert not golem_env.db_path.exists()  # showing the settings creates nothing

    db = golem_env.home / "elsewhere.db"
    shown = _show(golem_env, **{f"{P}DB_PATH": str(db), f"{P}ENVIRONMENT": "development"})
    assert shown["settings"]["db_path"]["source"] == "environment"
    assert shown["settings"]["db_path"]["derived_from"] is None
    assert shown["settings"]["environment"] == {
        "value": "development",
        "source": "environment",
        "variable": f"{P}ENVIRONMENT",
        "derived_from": None,
    }


def test_credentials_in_the_discovery_url_are_redacted(golem_env: GolemEnv) -> None:
    url = "http://alice:s3cret@127.0.0.1:9001/?token=t0ken"
    for args in (("--json",), ()):
        done = run_golem(golem_env, "config", "show", *args, extra_env={f"{P}DISCOVERY_URL": url})
        assert_ok(done)
        assert "s3cret" not in done.stdout and "t0ken" not in done.stdout
        assert "alice" not in done.stdout
        assert "http://***@127.0.0.1:9001/?token=***" in done.stdout


def test_the_table_names_the_variable_of_each_source(golem_env: GolemEnv) -> None:
    done = run_golem(golem_env, "config", "show")
    assert_ok(done)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("db_path"))
    assert str(golem_env.db_path) in line and f"default (inside {P}BASE_DIR)" in line
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("discovery_url"))
    assert f"environment ({P}DISCOVERY_URL)" in line


def test_a_bad_setting_is_the_usual_error(golem_env: GolemEnv) -> None:
    done = run_golem(golem_env, "config", "show", extra_env={f"{P}ENVIRONMENT": "bogus"})
    assert done.returncode == 2
    assert done.stderr.startswith(f"Error: {P}ENVIRONMENT='bogus'")
    done = run_golem(golem_env, "config", "show", "--json", extra_env={f"{P}ENVIRONMENT": "bogus"})
    assert done.returncode == 2 and done.stdout == ""
    assert json.loads(done.stderr)["error"]["code"] == "config"
