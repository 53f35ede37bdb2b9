"""With PostgreSQL the Pulumi state defaults to the database; an installation whose state is still
in its data directory is never started afresh beside it (every instance would look new)."""

import pytest

from clawdet.cloud import CloudTarget
from clawdet.errors import UserFacingError
from clawdet.reconciler.stacks import Stacks
from clawdet.settings import Settings
from tests.fixtures.provisioning import require_toolchain

TARGET = CloudTarget(
    sandbox=False,
    hcloud_token="t",
    hcloud_endpoint="https://api.hetzner.cloud/v1",
    cloudflare_token="t",
    cloudflare_base_url="https://api.cloudflare.com/client/v4",
    zone_id="0123456789abcdef0123456789abcdef",
    base_domain="clawdet.example",
    health_url_template="https://{fqdn}/healthz",
)


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
            "postgresql://u:p@db/c?sslmode=verify-full",
            "postgres://u:p@db/c?sslmode=verify-full&table=pulumi_state",
        ),
    ],
)
def test_postgres_holds_the_state_by_default(tmp_path, database_url, backend):
    assert settings(tmp_path, DATABASE_URL=database_url).pulumi_backend_url == backend
    assert settings(tmp_path).pulumi_backend_url == f"file://{tmp_path / 'pulumi-state'}"


def test_state_left_in_the_data_dir_stops_a_start_against_the_database(tmp_path):
    require_toolchain()
    earlier = tmp_path / "pulumi-state" / ".pulumi" / "stacks" / "clawdet-instance"
    earlier.mkdir(parents=True)
    moved = settings(tmp_path, DATABASE_URL="postgresql://u:p@127.0.0.1:5432/clawdet")
    Stacks(moved, TARGET)  # an empty folder holds nothing to lose
    (earlier / "alice.json").write_text("{}")
    with pytest.raises(UserFacingError, match="Pulumi state of earlier operations") as refused:
        Stacks(moved, TARGET)
    assert f"PULUMI_BACKEND_URL=file://{tmp_path / 'pulumi-state'}" in refused.value.action
    Stacks(settings(tmp_path, PULUMI_BACKEND_URL=f"file://{tmp_path / 'pulumi-state'}"), TARGET)
