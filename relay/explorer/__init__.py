"""The explorer: a web page on the relayer's HTTP API where a user pastes a message id, a source
transaction or a task id and watches the message's journey live; tasks and feeds beside it. Plain
HTML + JS + CSS in static/ (no front-end build step), JSON and server-sent events from routes.py."""

from relay.explorer.routes import Explorer, add_explorer

__all__ = ["Explorer", "add_explorer"]
