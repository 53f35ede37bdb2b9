"""With PostgreSQL the Pulumi state defaults to the database; an installation whose state is still
in its data directory is never started afresh beside it (every instance would look new)."""

import pytest

from clawdet.errors import UserFacingError
from clawdet.reconciler.stacks import Stacks
from clawdet.settings import Settings
from tests.fixtures.cloud import unreached_target
from tests.fixtures.provisioning import require_toolchain

TARGET = unreached_target()


def settings(tmp_path, **env) -> Settings:
    return Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), **env}, dotenv=False)


@pytest.mark.parametrize(
    ("database_url", "backend"),
    [
        (
            "postgresql://u:p@127.0.0.1:5432/clawdet",
            "postgres://u:p@127.0.0.1:5432/clawdet?sslmode=disable&table=pulumi_state",
        ),
        (
            "postgresql://u:p@db.internal/clawdet",
            "postgres://u:p@db.internal/clawdet?sslmode=require&table=pulumi_state",
        ),
        (
            "postgresql://u:p@db/c?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            "postgres://u:p@db/c?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&table=pulumi_state",
        ),
    ],
)
def test_postgres_holds_the_state_by_default(tmp_path, database_url, backend):
    assert settings(tmp_path, DATABASE_URL=database_url).pulumi_backend_url == backend
    assert settings(tmp_path).pulumi_backend_url == f"file://{tmp_path / 'pulumi-state'}"


def test_an_installation_with_state_in_its_data_dir_keeps_it_there(tmp_path):
    """Upgrading never starts afresh beside earlier state (every instance would look new and be
    made again): the default stays the folder, and an explicit database backend is refused."""
    require_toolchain()
    earlier = tmp_path / "pulumi-state" / ".pulumi" / "stacks" / "clawdet-instance"
    earlier.mkdir(parents=True)
    database = {"DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/clawdet"}
    assert settings(tmp_path, **database).pulumi_backend_url.startswith("postgres://")  # nothing kept yet
    (earlier / "alice.json.gz").write_bytes(b"state")
    kept = settings(tmp_path, **database)
    assert kept.pulumi_backend_url == f"file://{tmp_path / 'pulumi-state'}"
    Stacks(kept, TARGET)
    explicit = settings(tmp_path, **database, PULUMI_BACKEND_URL="postgres://u:p@127.0.0.1:5432/clawdet")
    with pytest.raises(UserFacingError, match="Pulumi state of earlier operations") as refused:
        Stacks(explicit, TARGET)
    assert "unset PULUMI_BACKEND_URL" in refused.value.action


def test_the_engine_never_sees_the_database_password_in_its_backend_url(tmp_path):
    require_toolchain()
    stacks = Stacks(settings(tmp_path, DATABASE_URL="postgresql://u:s3cr%40t@127.0.0.1:5432/clawdet"), TARGET)
    assert (
        stacks.env["PULUMI_BACKEND_URL"]
        == "postgres://u@127.0.0.1:5432/clawdet?sslmode=disable&table=pulumi_state"
    )
    assert stacks.env["PGPASSWORD"] == "s3cr@t"
