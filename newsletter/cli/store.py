"""`newsletter store`: the PostgreSQL store's schema, and moving a workspace in and out of it."""

from __future__ import annotations

import typer

from newsletter.cli.common import ConfigOption, load

app = typer.Typer(
    help="The PostgreSQL store: create or upgrade its schema, move a workspace in and out.",
    no_args_is_help=True,
)


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Create or upgrade the store's tables, saying each step applied.

    Example: NEWSLETTER_STORE_URL=postgresql://localhost/newsletter newsletter store migrate
    """
    from newsletter.store import migrations, pg, redact

    cfg = load(config)
    url = pg.url_of(cfg)
    with pg.connect(url) as conn, pg.errors(url, "cannot migrate the store"):
        applied = migrations.migrate(conn)
        current = migrations.versions(conn)
    where = redact(url)
    if not applied:
        typer.echo(f"{where}: schema already current ({_versions(current)})")
        return
    for step in applied:
        typer.echo(f"applied {step}")
    typer.echo(f"{where}: schema now at {_versions(current)}")


@app.command()
def status(config: ConfigOption = None) -> None:
    """Say which store this workspace uses and whether its schema is current.

    Example: newsletter store status
    """
    from newsletter.store import migrations, pg, redact, uses_postgres

    cfg = load(config)
    if not uses_postgres(cfg):
        typer.echo(f"files store: lists in {cfg.subscribers_dir}, state in {cfg.state_dir}")
        return
    url = pg.url_of(cfg)
    with pg.connect(url) as conn, pg.errors(url, "cannot read the store's schema"):
        todo = migrations.pending(conn)
        current = migrations.versions(conn)
    typer.echo(f"PostgreSQL store {redact(url)}: schema {_versions(current) or 'empty'}")
    if todo:
        typer.echo(f"{len(todo)} step(s) to apply: run `newsletter store migrate`")


def _versions(current: dict[str, int]) -> str:
    return ", ".join(f"{c} {v}" for c, v in sorted(current.items()))


@app.command()
def push(config: ConfigOption = None) -> None:
    """Copy this workspace's lists and suppressions into the PostgreSQL store (safe to repeat).

    Example: NEWSLETTER_STORE_URL=postgresql://db.example.org/newsletter newsletter store push
    """
    from newsletter.store import push as pushing
    from newsletter.store.lists import transaction

    cfg = load(config)
    with transaction(cfg, "cannot push the workspace") as conn:
        lines = pushing.push(conn, cfg)
    for line in lines:
        typer.echo(line)


@app.command()
def pull(config: ConfigOption = None) -> None:
    """Write the PostgreSQL store's lists and suppressions back to CSV files in subscribers/.

    Example: newsletter store pull && git diff subscribers/
    """
    from newsletter.store import push as pushing
    from newsletter.store.lists import transaction

    cfg = load(config)
    with transaction(cfg, "cannot pull the lists") as conn:
        lines = pushing.pull(conn, cfg)
    for line in lines:
        typer.echo(line)
