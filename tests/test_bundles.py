"""What becomes a bundle, how it is named, and grants that never ship when they are wrong."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from proxy.bundle_server import FolderBundles
from proxy.bundles import (
    BundleError,
    build_bundle,
    folder_revision,
    git_revision,
    opa_bundle_config,
    policy_files,
    validate_grants,
)
from proxy.devstack.install import default_cache_dir, ensure_opa

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    return shutil.copytree(REPO / "policies", tmp_path / "policies")


def test_the_bundle_holds_policies_and_grants_not_schemas_tests_or_hidden_files(
    policies: Path,
) -> None:
    (policies / ".regal").mkdir()
    (policies / ".regal" / "config.yaml").write_text("rules: {}\n", encoding="utf-8")
    names = {path.relative_to(policies).as_posix() for path in policy_files(policies)}
    assert names == {"authz.rego", "audit_access.rego", "data.json"}


def test_the_revision_follows_what_opa_loads_and_nothing_else(policies: Path) -> None:
    revision = folder_revision(policies)
    assert len(revision) == 16 and revision == folder_revision(policies)
    with (policies / "authz_test.rego").open("a", encoding="utf-8") as test:
        test.write("\n# a test changes no decision\n")
    (policies / "schemas" / "notes.json").write_text("{}", encoding="utf-8")
    assert folder_revision(policies) == revision
    data = json.loads((policies / "data.json").read_text(encoding="utf-8"))
    (policies / "data.json").write_text(json.dumps(data), encoding="utf-8")  # re-spaced
    assert folder_revision(policies) != revision


def test_moving_bytes_between_a_name_and_a_file_changes_the_revision(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "a.rego").write_text("bc", encoding="utf-8")
    (two / "a.regob").write_text("c", encoding="utf-8")
    assert folder_revision(one) != folder_revision(two)


@pytest.mark.parametrize(
    ("grant", "where"),
    [
        ({"guardrails": ["fullscan"]}, "guardrails/0"),
        ({"read": {"lables": ["Person"]}}, "neo4j/read"),
        ({"row_limit": -1}, "row_limit"),
    ],
)
def test_grants_that_do_not_match_the_schema_are_refused_with_their_place(
    policies: Path, grant: dict[str, object], where: str
) -> None:
    data = json.loads((policies / "data.json").read_text(encoding="utf-8"))
    data["cyphergate"]["grants"]["dags"]["broken"] = {"databases": {"neo4j": grant}}
    (policies / "data.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match=r"does not match schemas/grants\.json") as error:
        validate_grants(policies)
    assert where in str(error.value)


def test_unreadable_grants_are_refused(policies: Path) -> None:
    (policies / "data.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleError, match="cannot read the grants"):
        validate_grants(policies)


def test_the_committed_grants_validate() -> None:
    validate_grants(REPO / "policies")


def test_opas_configuration_verifies_signatures_and_logs_decisions() -> None:
    config = opa_bundle_config(
        service_url="http://127.0.0.1:1/bucket", resource="b.tar.gz", s3=True, public_key="PEM"
    )
    (bundle,) = config["bundles"].values()
    assert config["keys"][bundle["signing"]["keyid"]] == {"key": "PEM", "algorithm": "RS256"}
    assert config["services"][bundle["service"]]["credentials"] == {
        "s3_signing": {"environment_credentials": {}}
    }
    assert config["decision_logs"] == {"console": True}
    assert (
        "signing"
        not in opa_bundle_config(service_url="http://x", resource="b")["bundles"]["cyphergate"]
    )


def test_a_file_git_ignores_but_opa_would_load_leaves_the_folder_without_a_commit(
    tmp_path: Path,
) -> None:
    """``policy build`` names the commit as the bundle's revision only when the folder is that
    commit; a file .gitignore hides from ``git status`` but the bundle would carry (here a Rego
    module that grants, generated beside the committed ones) is not in it."""
    policies = shutil.copytree(REPO / "policies", tmp_path / "policies")
    (tmp_path / ".gitignore").write_text("generated/\n", encoding="utf-8")

    def git(*arguments: str) -> str:
        command = ["git", "-C", str(tmp_path), "-c", "user.name=ci", "-c", "user.email=ci@x"]
        return subprocess.run(
            [*command, *arguments], capture_output=True, text=True, check=True
        ).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "policies")
    assert git_revision(policies) == git("rev-parse", "HEAD")
    (policies / "generated").mkdir()
    (policies / "generated" / "grant.rego").write_text(
        "package cyphergate.authz\n\nallow := true\n", encoding="utf-8"
    )
    assert "generated/grant.rego" in {
        path.relative_to(policies).as_posix() for path in policy_files(policies)
    }
    with pytest.raises(BundleError, match=r"generated/grant\.rego"):
        git_revision(policies)


def test_a_file_that_links_out_of_the_folder_never_ships(policies: Path, tmp_path: Path) -> None:
    """A symbolic link in a policy pull request (Git keeps only the path it names) would put
    whatever the build machine holds there into the signed bundle: here grants of the
    runner's own, but a credentials file as much, under a name OPA reads as data."""
    outside = tmp_path / "runner" / "grants.json"
    outside.parent.mkdir()
    shutil.move(policies / "data.json", outside)
    (policies / "data.json").symlink_to(outside)
    output = tmp_path / "bundle.tar.gz"
    with pytest.raises(BundleError, match=r"data\.json links out of"):
        build_bundle(ensure_opa(default_cache_dir()), policies, output, revision="r1")
    assert not output.exists()
    # The folder server (policy serve) does not serve it either, and keeps answering.
    work = tmp_path / "work"
    work.mkdir()
    assert FolderBundles(ensure_opa(default_cache_dir()), policies, work).current() is None


@pytest.mark.parametrize("name", ["cyphergate/grants/dags/data.json", "more/data.yaml", "x.json"])
def test_data_anywhere_but_data_json_is_refused(policies: Path, name: str) -> None:
    """opa build merges every folder's data.json (or data.yaml) into the data at the folder's
    path, and OPA over a folder every JSON file: a grant there was never checked against the
    schema, so one whose guardrails were a string instead of a list guarded nothing."""
    place = policies / name
    place.parent.mkdir(parents=True, exist_ok=True)
    grant = {"databases": {"neo4j": {"read": {"labels": ["*"]}, "guardrails": "full_scan"}}}
    place.write_text(json.dumps({"sneaky": grant}), encoding="utf-8")
    with pytest.raises(BundleError, match=f"{name}: only data.json"):
        validate_grants(policies)


def test_grants_a_rego_module_defines_are_checked_as_data_jsons_are(
    policies: Path, tmp_path: Path
) -> None:
    """A module may add to data.cyphergate.grants as data.json does (its package is the path):
    the grants the bundle serves are checked, not only the file."""
    (policies / "more.rego").write_text(
        "package cyphergate.grants.dags\n\n"
        'sneaky := {"databases": {"neo4j": {"read": {"labels": ["*"]},\n'
        '  "guardrails": "full_scan"}}}\n',
        encoding="utf-8",
    )
    output = tmp_path / "bundle.tar.gz"
    with pytest.raises(BundleError, match="sneaky/databases/neo4j/guardrails"):
        build_bundle(ensure_opa(default_cache_dir()), policies, output, revision="r1")
    assert not output.exists()


def test_an_output_that_is_no_regular_file_is_refused_and_left_as_it_was(
    policies: Path, tmp_path: Path
) -> None:
    """Found by review: the bundle was renamed over whatever ``--output`` named, so a pipe
    became a file (and, run as root, ``--output /dev/null`` would replace the device node)."""
    pipe = tmp_path / "bundle.pipe"
    os.mkfifo(pipe)
    with pytest.raises(BundleError, match="not a regular file"):
        build_bundle(ensure_opa(default_cache_dir()), policies, pipe, revision="r1")
    assert stat.S_ISFIFO(pipe.lstat().st_mode)
