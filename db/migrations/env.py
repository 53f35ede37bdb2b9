from alembic import context

from db.engine import make_engine
from db.models import Base

config = context.config


PULUMI_STATE_TABLE = "pulumi_state"  # the engine's, in the same PostgreSQL database by default


def ours(_object, name, type_, reflected, _compare_to) -> bool:
    return not (type_ == "table" and reflected and name == PULUMI_STATE_TABLE)


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_object=ours,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
