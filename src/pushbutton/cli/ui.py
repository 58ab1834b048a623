"""`pb ui`: the live web dashboard of the project's store. Registered by cli/main.py."""
from __future__ import annotations

import click


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but 127.0.0.1 is reachable from other machines "
                   "(every request still needs the token).")
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in a web browser.")
@click.option("--store", "store_path", type=click.Path(file_okay=False, exists=True),
              help="The project (folder holding .pushbutton/) to show [default: the one here "
                   "or above].")
def ui(port, host, open_browser, store_path):
    """Serve a live dashboard of every experiment: progress, failures, results, tasks.

    Prints its address with a token (http://127.0.0.1:PORT/?token=...); every request needs
    the token, actions (cancel, retry, report) are POSTs checked against it.
    """
    from pathlib import Path

    from pushbutton.core.errors import PushbuttonError
    from pushbutton.store.database import find_root
    from pushbutton.ui.server import LOOPBACK, serve
    root = find_root(Path(store_path) if store_path else Path.cwd())
    if root is None:
        where = store_path or "here or above"
        raise PushbuttonError(f"no pushbutton store at {where}; run `pb run SPEC.toml` first "
                              "or give --store PROJECT_FOLDER")
    if host not in LOOPBACK:
        click.secho(f"warning: --host {host} makes the dashboard reachable from other "
                    "machines; every request needs the token in the address below (keep it "
                    "secret; the connection is plain HTTP)", fg="yellow", err=True)

    def ready(address):
        click.echo(f"pb ui: {address}", err=False)
        import sys
        sys.stdout.flush()
        if open_browser:
            import webbrowser
            webbrowser.open(address)
    try:
        serve(root, host=host, port=port, ready=ready)
    except OSError as e:
        raise PushbuttonError(f"pb ui cannot listen on {host}:{port}: {e.strerror or e}; "
                              "give another --port (0: a free one)") from None
    except KeyboardInterrupt:
        pass


COMMANDS = [ui]
